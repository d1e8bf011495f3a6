//! The journal shipping its own sealed segments (`JournalConfig::ship_to`): uploaded
//! byte for byte and removed locally once verified; a name taken by other bytes is
//! never overwritten and the local file is kept; a store that is down leaves the
//! segment in the spool and shows as backlog and failures.
#![cfg(feature = "ship")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiroku::journal::{Durability, Journal, JournalConfig};
use kiroku::ship::{ObjectLocation, ShipScope, Shipper, ShipperConfig};
use kiroku_schemas::AuditRecord;
use kiroku_schemas::checkpoint::NoteSigner;

fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(format!("01a2ship-0000-7000-8000-{i:012}"), kiroku_schemas::Timestamp::now());
    r.http.method = "POST".into();
    r.http.route = "/v1/chat/completions".into();
    r.attributes.insert("pad".into(), "x".repeat(300));
    r
}

fn segs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_segments_are_shipped_byte_for_byte_and_removed_locally() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let to = ObjectLocation::open(&format!("file://{}", store_dir.display())).unwrap();
    let cfg = JournalConfig::new(dir.path().join("spool"), NoteSigner::generate("t").unwrap())
        .durability(Durability::Buffered)
        .segment_max_bytes(4096)
        .ship_to(to, ShipperConfig { interval: Duration::from_millis(50), ..ShipperConfig::default() });
    let journal = Journal::open(cfg).unwrap();
    let chain_dir = journal.chain_dir().to_owned();
    let chain = journal.chain_id();
    for i in 0..40 {
        journal.append(record(i)).await.unwrap();
    }
    let report = journal.shutdown().await.unwrap();
    let m = journal.ship_metrics().unwrap();
    assert!(m.shipped >= 2, "{m:?}");
    assert_eq!(m.conflicts, 0);
    assert_eq!(segs(&chain_dir), Vec::<PathBuf>::new(), "every sealed segment removed after upload");
    let shipped = files_under(&store_dir.join("spool").join(chain.to_string()));
    assert_eq!(shipped.len() as u64, m.shipped);
    // What arrived is a complete, verifying chain of 40 records.
    let mut records = 0;
    let mut state = kiroku_schemas::segment::ChainState::genesis(chain);
    for f in &shipped {
        let opts = kiroku_schemas::segment::VerifyOptions {
            chain_id: Some(chain),
            previous: Some(state.clone()),
            ..kiroku_schemas::segment::VerifyOptions::sealed()
        };
        let r = kiroku_schemas::segment::verify_segment(std::fs::File::open(f).unwrap(), &opts).unwrap();
        records += r.records;
        state = r.end;
    }
    assert_eq!(records, 40);
    assert_eq!(report.next_seq, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_name_is_never_overwritten_and_the_local_file_stays() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let cfg = JournalConfig::new(&spool, NoteSigner::generate("t").unwrap()).durability(Durability::Buffered);
    let journal = Journal::open(cfg).unwrap();
    let chain = journal.chain_id();
    journal.append(record(0)).await.unwrap();
    let sealed = journal.shutdown().await.unwrap().sealed.unwrap();
    let name = sealed.file_name().unwrap().to_str().unwrap().to_owned();

    let store_dir = dir.path().join("store");
    let taken = store_dir.join("spool").join(chain.to_string()).join(&name);
    std::fs::create_dir_all(taken.parent().unwrap()).unwrap();
    std::fs::write(&taken, b"someone else's bytes").unwrap();

    let to = ObjectLocation::open(&format!("file://{}", store_dir.display())).unwrap();
    let shipper = Shipper::spawn(ShipScope::Spool(spool), to, ShipperConfig::default()).unwrap();
    let (result, m) = tokio::task::spawn_blocking(move || (shipper.drain(), shipper.metrics())).await.unwrap();
    let result = result.unwrap();
    assert_eq!(result.len(), 1);
    let msg = result[0].to_string();
    assert!(msg.contains("conflict") && msg.contains(&name) && msg.contains("not overwritten"), "{msg}");
    assert_eq!(m.conflicts, 1);
    assert_eq!(m.shipped, 0);
    assert!(sealed.exists(), "the local segment is kept");
    assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's bytes");
}

#[test]
fn a_store_that_is_down_leaves_segments_in_the_spool_as_backlog() {
    kiroku::ship::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sealed = rt.block_on(async {
        let journal = Journal::open(
            JournalConfig::new(&spool, NoteSigner::generate("t").unwrap()).durability(Durability::Buffered),
        )
        .unwrap();
        journal.append(record(0)).await.unwrap();
        journal.shutdown().await.unwrap().sealed.unwrap()
    });
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("down")
        .with_endpoint(format!("http://{dead}"))
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("k")
        .with_secret_access_key("s")
        .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
        .build()
        .unwrap();
    let to = ObjectLocation::from_store(Arc::new(store), "fleet", "s3://down/fleet").unwrap();
    let cfg = ShipperConfig {
        interval: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..ShipperConfig::default()
    };
    let shipper = Shipper::spawn(ShipScope::Spool(spool), to, cfg).unwrap();
    shipper.wake();
    let deadline = Instant::now() + Duration::from_secs(30);
    while shipper.metrics().failures < 2 {
        assert!(Instant::now() < deadline, "no failed attempt recorded: {:?}", shipper.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = shipper.metrics();
    assert_eq!(m.backlog, 1, "{m:?}");
    assert_eq!(m.shipped, 0);
    assert!(sealed.exists(), "never removed while it is not uploaded");
    shipper.stop();
}
