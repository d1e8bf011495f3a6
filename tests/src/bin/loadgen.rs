//! A small HTTP/1.1 load generator for kiroku's benchmarks (loopback only).
//!
//! `loadgen URL --conns N --secs S [--rate R] [--body FILE] [--hold N]`
//!
//! - closed loop (no `--rate`): each connection sends the next request as soon as the
//!   previous response has been read in full; reports requests/s.
//! - open loop (`--rate R`): requests are started at R per second in total, spread
//!   over the connections (tokio timers, 1 ms resolution); latency is measured from
//!   the moment each request is sent.
//! - `--hold N`: open N streaming requests and keep them open (reading slowly) for the
//!   duration, to measure a server's memory with N concurrent streams.
//!
//! Prints one JSON line: requests, errors, requests/s, latency p50/p90/p99/max in µs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

async fn connect(addr: &str) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    Some(tx)
}

async fn one(
    tx: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    uri: &http::Uri,
    host: &str,
    body: &Bytes,
) -> bool {
    if tx.ready().await.is_err() {
        return false;
    }
    let req = http::Request::post(uri.clone())
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(body.clone()));
    let Ok(req) = req else { return false };
    match tx.send_request(req).await {
        Ok(resp) => resp.status().is_success() && resp.into_body().collect().await.is_ok(),
        Err(_) => false,
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let url: http::Uri =
        args.get(1).ok_or("usage: loadgen URL [--conns N] [--secs S] [--rate R] [--body FILE] [--hold N]")?.parse()?;
    let conns: usize = arg(&args, "--conns").map_or(Ok(16), |v| v.parse())?;
    let secs: f64 = arg(&args, "--secs").map_or(Ok(5.0), |v| v.parse())?;
    let rate: Option<f64> = arg(&args, "--rate").map(|v| v.parse()).transpose()?;
    let hold: Option<usize> = arg(&args, "--hold").map(|v| v.parse()).transpose()?;
    let body = Bytes::from(match arg(&args, "--body") {
        Some(f) => std::fs::read(f)?,
        None => br#"{"model":"sample-1","messages":[{"role":"user","content":"hello"}]}"#.to_vec(),
    });
    let host = url.authority().ok_or("URL needs a host:port")?.to_string();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);

    if let Some(n) = hold {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (url, host, body) = (url.clone(), host.clone(), body.clone());
            tasks.push(tokio::spawn(async move {
                let Some(mut tx) = connect(&host).await else { return false };
                if tx.ready().await.is_err() {
                    return false;
                }
                let Ok(req) = http::Request::post(url)
                    .header("host", host.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                else {
                    return false;
                };
                let Ok(resp) = tx.send_request(req).await else { return false };
                let mut b = resp.into_body();
                while Instant::now() < deadline {
                    match tokio::time::timeout(Duration::from_millis(200), b.frame()).await {
                        Ok(Some(Ok(_))) | Err(_) => {}
                        _ => break,
                    }
                }
                true
            }));
        }
        let mut open = 0;
        for t in tasks {
            open += usize::from(t.await.unwrap_or(false));
        }
        println!("{}", serde_json::json!({"held_streams": open}));
        return Ok(());
    }

    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (url, host, body) = (url.clone(), host.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let Some(mut tx) = connect(&host).await else { return (lat, 1) };
            let interval = rate.map(|r| Duration::from_secs_f64(conns as f64 / r));
            let mut next = Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / conns as f64));
            while Instant::now() < deadline {
                if interval.is_some() {
                    tokio::time::sleep_until(next.into()).await;
                }
                let scheduled = Instant::now();
                if one(&mut tx, &url, &host, &body).await {
                    lat.push(scheduled.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                    match connect(&host).await {
                        Some(t) => tx = t,
                        None => break,
                    }
                }
                if let Some(iv) = interval {
                    next += iv;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "requests": all.len(), "errors": errors, "rps": all.len() as f64 / elapsed,
            "p50_us": pct(&all, 0.5), "p90_us": pct(&all, 0.9), "p99_us": pct(&all, 0.99), "max_us": all.last().copied().unwrap_or(0),
        })
    );
    Ok(())
}
