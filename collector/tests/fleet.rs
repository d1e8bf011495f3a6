//! A fleet on a real S3-compatible server (moto's server mode, installed by
//! scripts/test.sh into .venv-fleet and started here on 127.0.0.1): three `kiroku proxy`
//! processes ship their sealed segments, a conflicting upload is refused and reported,
//! two compactors share the archive in the store (one SIGKILLed while it holds a chain,
//! its chain taken over after its lease expires), and the archive holds every record
//! exactly once, verifies, and reads the same in DuckDB (httpfs) and Apache Spark.

mod support;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{dated_spool, days_ago, repo, text};

use kiroku_examples::client::Conn;
use kiroku_schemas::checkpoint::NoteSigner;

const BUCKET: &str = "kiroku-fleet";

fn fleet_python() -> PathBuf {
    let p = repo().join(".venv-fleet/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs the fleet venv (moto, pyspark, duckdb httpfs)",
        p.display()
    );
    p
}

/// moto's S3-compatible server on a free loopback port; killed on drop.
struct S3Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request without auth (moto does not check signatures): status and the
/// whole response (head and body).
fn raw_http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    raw_http_with(addr, method, path, &[])
}

fn raw_http_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    try_http(addr, method, path, headers).unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

fn try_http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(s, "{method} {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, out))
}

impl S3Server {
    fn start() -> Self {
        // Port 0: moto binds a free port itself and says which. Picking one here and handing
        // it over left a window in which another test's listener could take it.
        let mut child = Command::new(repo().join(".venv-fleet/bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server (scripts/test.sh installs it)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let addr: SocketAddr = loop {
            let Some(Ok(line)) = lines.next() else {
                let exit = child.wait();
                panic!("moto_server ended without saying its address ({exit:?}): {said:?}");
            };
            if let Some(at) = line.split("Running on http://").nth(1) {
                break at.trim().parse().unwrap_or_else(|e| panic!("moto_server address {line:?}: {e}"));
            }
            said.push(line);
        };
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        // Ready means it answers HTTP, not merely that its port accepts.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match try_http(addr, "GET", "/", &[]) {
                Ok((status, _)) if status != 0 => break,
                answer => {
                    assert!(Instant::now() < deadline, "moto_server on {addr} does not answer: {answer:?}")
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let server = Self { child, addr };
        assert_eq!(raw_http(addr, "PUT", &format!("/{BUCKET}")).0, 200, "create bucket");
        server
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Keys under `prefix`.
    fn keys(&self, prefix: &str) -> Vec<String> {
        self.keys_in(BUCKET, prefix)
    }

    /// Keys under `prefix` in `bucket`.
    fn keys_in(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) =
            raw_http(self.addr, "GET", &format!("/{bucket}?list-type=2&max-keys=1000&prefix={prefix}"));
        assert_eq!(status, 200, "{body}");
        body.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>").map(|(k, _)| k.to_owned())).collect()
    }

    fn get(&self, key: &str) -> Vec<u8> {
        kiroku::ship::install_crypto_provider();
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("kiroku-test")
            .with_secret_access_key("kiroku-test-secret")
            .build()
            .unwrap();
        let loc = kiroku::ship::ObjectLocation::from_store(std::sync::Arc::new(store), "", "test").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(kiroku::ship::get_object(&loc, key)).unwrap().expect(key).bytes.to_vec()
    }

    /// The environment every client of the store gets (standard AWS variables).
    fn env(&self, c: &mut Command) {
        c.env("AWS_ACCESS_KEY_ID", "kiroku-test")
            .env("AWS_SECRET_ACCESS_KEY", "kiroku-test-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env_remove("AWS_PROFILE");
    }
}

fn kiroku_s3(s3: &S3Server, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiroku"));
    c.args(args);
    s3.env(&mut c);
    c.output().unwrap()
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
}

fn start_proxy(s3: &S3Server, spool: &Path, key: &Path, upstream: SocketAddr) -> Proxy {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiroku"));
    c.args(["proxy", "--listen", "127.0.0.1:0", "--upstream", &format!("http://{upstream}")])
        .args(["--durability", "batched", "--segment-max-age", "1"])
        .args(["--ship", &format!("s3://{BUCKET}/fleet")])
        .arg("--spool")
        .arg(spool)
        .arg("--key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    s3.env(&mut c);
    let mut child = c.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.split_whitespace().nth(4).unwrap().parse().unwrap_or_else(|e| panic!("{first}: {e}"));
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Proxy { child, addr }
}

fn terminate(mut p: Proxy) {
    assert!(Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status().unwrap().success());
    let exit = p.child.wait().unwrap();
    assert!(exit.success(), "proxy exited with {exit}");
}

fn sealed_left(spool: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for chain in std::fs::read_dir(spool).unwrap().flatten() {
        if let Ok(rd) = std::fs::read_dir(chain.path()) {
            out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "seg")));
        }
    }
    out
}

fn read_with(engine: &str, s3: &S3Server) -> serde_json::Value {
    let mut c = Command::new(fleet_python());
    c.arg(repo().join("tests/interop/fleet_read.py")).args([engine, &s3.endpoint(), BUCKET, "archive"]);
    s3.env(&mut c);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{engine}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{engine}: {e}: {}", text(&out)))
}

#[test]
fn three_writers_ship_two_compactors_share_the_archive_and_every_record_lands_exactly_once() {
    let _ = fleet_python();
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::generate("kiroku-fleet-test").unwrap();
    let key = dir.path().join("signer.key");
    signer.save(&key).unwrap();
    let vkey = dir.path().join("signer.vkey");
    std::fs::write(&vkey, signer.verifier().to_key_text()).unwrap();
    let vkey_s = vkey.display().to_string();

    // Three writers behind one upstream, each sealing (and shipping) a segment per second.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(kiroku_examples::sample::serve(
            listener,
            kiroku_examples::sample::router(),
            std::future::pending(),
        ));
        addr
    });
    let spools: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("spool-{i}"))).collect();
    let proxies: Vec<Proxy> = spools.iter().map(|s| start_proxy(&s3, s, &key, upstream)).collect();
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..3 {
        for (i, p) in proxies.iter().enumerate() {
            let model = if i == 1 { "sample-large" } else { "sample-small" };
            rt.block_on(async {
                let mut conn = Conn::connect(p.addr).await.unwrap();
                for n in 0..15 {
                    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": format!("writer {i} round {round} request {n}")}]});
                    let r = conn.post_json("/v1/chat/completions", &body, &[]).await.unwrap();
                    assert_eq!(r.status, 200);
                }
            });
            *sent.entry(model.to_owned()).or_default() += 15;
        }
        std::thread::sleep(Duration::from_millis(1300));
    }
    let total: u64 = sent.values().sum();
    for p in proxies {
        terminate(p);
    }
    // Shipped and verified, so removed locally; nothing left behind.
    for s in &spools {
        assert_eq!(sealed_left(s), Vec::<PathBuf>::new(), "{}", s.display());
    }
    let shipped = s3.keys("fleet/spool/");
    assert!(shipped.len() >= 6, "expected several segments per writer, got {shipped:?}");

    // A conflicting upload: another file under a name already taken is refused and
    // reported; the stored object is not touched and the local file is kept.
    let victim = shipped[0].clone();
    let original = s3.get(&victim);
    let rel = victim.strip_prefix("fleet/spool/").unwrap();
    let fake = dir.path().join("impostor").join(rel);
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::write(&fake, b"not the segment that was shipped").unwrap();
    let impostor = dir.path().join("impostor").display().to_string();
    let to = format!("s3://{BUCKET}/fleet");
    let ship_impostor = || kiroku_s3(&s3, &["ship", "--spool", &impostor, "--to", &to]);
    let out = ship_impostor();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("CONFLICT") && text(&out).contains("not overwritten"), "{}", text(&out));
    assert!(fake.exists(), "the local file is kept");
    assert_eq!(s3.get(&victim), original, "the stored segment is not overwritten");
    // The same bytes again are fine (a retried upload).
    std::fs::write(&fake, &original).unwrap();
    let out = ship_impostor();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!fake.exists(), "removed once its upload is verified");

    // Two compactors on the same store. A stops (as if hung, then dies) after writing
    // its second Parquet file and before committing it, holding that chain's lease.
    let spool_url = format!("s3://{BUCKET}/fleet");
    let archive_url = format!("s3://{BUCKET}/archive");
    let compact_args =
        ["compact", "--spool", &spool_url, "--archive", &archive_url, "--pubkey", &vkey_s, "--lease-ttl", "3"];
    let mut a = Command::new(env!("CARGO_BIN_EXE_kiroku"));
    a.args(compact_args).env("KIROKU_TEST_PAUSE_AT", "after_parquet:2").stdout(Stdio::null()).stderr(Stdio::piped());
    s3.env(&mut a);
    let mut a = a.spawn().unwrap();
    let mut err = BufReader::new(a.stderr.take().unwrap()).lines();
    let paused = err.by_ref().map_while(Result::ok).find(|l| l.contains("kiroku-test-pause"));
    assert!(paused.is_some(), "compactor A never reached its pause point");
    std::thread::spawn(move || err.map_while(Result::ok).for_each(drop));

    let b = kiroku_s3(&s3, &compact_args);
    assert!(b.status.success(), "{}", text(&b));
    assert!(text(&b).contains("leased by another compactor"), "B must leave A's chain alone: {}", text(&b));
    let _ = a.kill();
    let _ = a.wait();

    // Before the lease expires the chain stays A's; after, B takes it over.
    std::thread::sleep(Duration::from_secs(4));
    let b2 = kiroku_s3(&s3, &compact_args);
    assert!(b2.status.success(), "{}", text(&b2));
    assert!(!text(&b2).contains("another compactor"), "{}", text(&b2));
    assert_eq!(s3.keys("fleet/spool/"), Vec::<String>::new(), "every shipped segment compacted");
    let again = kiroku_s3(&s3, &compact_args);
    assert!(text(&again).contains("compacted 0 segment(s), 0 record(s)"), "{}", text(&again));

    // The archive in the store verifies and holds every record once.
    let v = kiroku_s3(&s3, &["verify", "--archive", &archive_url, "--pubkey", &vkey_s, "--json"]);
    assert!(v.status.success(), "{}", text(&v));
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["records"], total);
    assert_eq!(v["chains"], 3);

    for engine in ["duckdb", "spark"] {
        let r = read_with(engine, &s3);
        assert_eq!(r["rows"], total, "{engine}: {r}");
        assert_eq!(r["distinct_record_ids"], total, "{engine}: {r}");
        let by_model: BTreeMap<String, u64> = serde_json::from_value(r["by_model"].clone()).unwrap();
        assert_eq!(by_model, sent, "{engine}");
        assert!(!r["dates"].as_array().unwrap().is_empty(), "{engine}: Hive partition column");
    }
}

#[test]
fn a_store_that_is_down_is_reported_at_startup_without_printing_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::generate("kiroku-fleet-test").unwrap();
    let key = dir.path().join("signer.key");
    signer.save(&key).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kiroku"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9", "--ship", "s3://nowhere/fleet"])
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .arg("--key")
        .arg(&key)
        .env("AWS_ACCESS_KEY_ID", "AKIAFLEETTESTKEY")
        .env("AWS_SECRET_ACCESS_KEY", "fleet-secret-never-printed")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://{dead}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("s3://nowhere/fleet"), "{t}");
    assert!(!t.contains("fleet-secret-never-printed"), "credentials must never be printed: {t}");
}

#[test]
fn retention_on_the_store_with_object_lock_keeps_locked_versions() {
    const LOCKED: &str = "kiroku-locked";
    let s3 = S3Server::start();
    let (status, body) =
        raw_http_with(s3.addr, "PUT", &format!("/{LOCKED}"), &[("x-amz-bucket-object-lock-enabled", "true")]);
    assert_eq!(status, 200, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let now = kiroku_schemas::Timestamp::now();
    let days = [days_ago(now, 400), days_ago(now, 399), days_ago(now, 10), days_ago(now, 0)];
    let per_day = 30;
    dated_spool(dir.path(), &days, per_day);
    let vkey = dir.path().join("signer.vkey").display().to_string();
    let (spool_url, archive_url) = (format!("s3://{LOCKED}/fleet"), format!("s3://{LOCKED}/archive"));
    let ship =
        kiroku_s3(&s3, &["ship", "--spool", &dir.path().join("spool").display().to_string(), "--to", &spool_url]);
    assert!(ship.status.success(), "{}", text(&ship));

    let compact = |retain: &str| {
        kiroku_s3(
            &s3,
            &["compact", "--spool", &spool_url, "--archive", &archive_url, "--pubkey", &vkey, "--retain", retain]
                .iter()
                .copied()
                .chain(["--object-lock", "governance"])
                .collect::<Vec<_>>(),
        )
    };
    let out = compact("365d");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("seq 0..{}", 2 * per_day)), "{}", text(&out));

    // Every Parquet file was written locked for the period, the manifest was not.
    // Retention removed the old days from the archive (a delete marker on a versioned,
    // locked bucket); their locked versions stay, and the store refuses to delete them.
    let old = format!("archive/records/date={}/", days[0].date_string());
    let mut c = Command::new(fleet_python());
    c.arg(repo().join("tests/interop/object_lock.py")).args([&s3.endpoint(), LOCKED, "archive", &old]);
    s3.env(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let lock: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let until_year = days_ago(now, -365).date_string()[..4].to_owned();
    let files = lock["files"].as_object().unwrap();
    assert!(!files.is_empty(), "{lock}");
    for (key, l) in files {
        assert_eq!(l["mode"], "GOVERNANCE", "{key}: {lock}");
        assert!(l["until"].as_str().unwrap_or_default().starts_with(&until_year), "{key}: {lock}");
    }
    assert_eq!(lock["manifest_mode"], serde_json::Value::Null, "{lock}");
    assert_eq!(lock["removed_current"], 0, "{lock}");
    assert!(lock["removed_versions"].as_u64().unwrap() > 0, "{lock}");
    assert_eq!(lock["delete_version_error"], "AccessDenied", "a locked version must not be deletable: {lock}");

    // What remains verifies from the cut.
    let v = kiroku_s3(&s3, &["verify", "--archive", &archive_url, "--pubkey", &vkey, "--json"]);
    assert!(v.status.success(), "{}", text(&v));
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["records"], 2 * per_day);

    // Compacted segments go once they were moved to compacted/ longer ago than the
    // period (here one second), and the day-old partition with them.
    std::thread::sleep(Duration::from_secs(2));
    let out = compact("1s");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("shorter than six months"), "{}", text(&out));
    assert!(s3.keys_in(LOCKED, "fleet/compacted/").is_empty(), "{}", text(&out));
    let v = kiroku_s3(&s3, &["verify", "--archive", &archive_url, "--pubkey", &vkey, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], per_day, "only today's records are left");
}
