//! What the audit layer adds to one request, in process (no sockets): a 2 KiB request
//! and a 2 KiB response (a 4 KiB exchange) through `AuditLayer` vs the same service
//! bare, both measured in the same run.
//!
//! `cargo bench -p kiroku --bench layer`

use std::convert::Infallible;

use bytes::Bytes;
use divan::Bencher;
use http_body_util::{BodyExt, Full};
use kiroku::{AuditLayer, Durability, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use tower::{Service, ServiceExt};

fn main() {
    divan::main();
}

fn body(n: usize) -> Bytes {
    let mut s = String::from("{\"model\":\"sample-1\",\"messages\":[{\"role\":\"user\",\"content\":\"");
    while s.len() < n - 6 {
        s.push_str("lorem ipsum ");
    }
    s.truncate(n - 6);
    s.push_str("\"}]}");
    while s.len() < n {
        s.push(' ');
    }
    Bytes::from(s)
}

async fn handler<B: http_body::Body<Data = Bytes>>(
    req: http::Request<B>,
) -> Result<http::Response<Full<Bytes>>, Infallible>
where
    B::Error: std::fmt::Debug,
{
    let _ = req.into_body().collect().await;
    let mut r = http::Response::new(Full::new(body(2048)));
    r.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
    Ok(r)
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(body(2048)))
        .expect("valid request")
}

#[divan::bench(sample_count = 200, sample_size = 50)]
fn bare_service(b: Bencher<'_, '_>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let svc = tower::service_fn(handler::<Full<Bytes>>);
    b.bench_local(|| {
        rt.block_on(async {
            let resp = svc.oneshot(request()).await.expect("infallible");
            resp.into_body().collect().await.expect("body").to_bytes().len()
        })
    });
}

#[divan::bench(sample_count = 200, sample_size = 50)]
fn audited_service(b: Bencher<'_, '_>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = rt.block_on(async {
        Journal::open(
            JournalConfig::new(dir.path(), NoteSigner::generate("bench").expect("key"))
                .durability(Durability::Batched(std::time::Duration::from_millis(100))),
        )
        .expect("journal")
    });
    let svc = tower::ServiceBuilder::new()
        .layer(AuditLayer::new(journal.clone()))
        .service(tower::service_fn(handler::<kiroku::RequestBody<Full<Bytes>>>));
    b.bench_local(|| {
        rt.block_on(async {
            let resp = svc.clone().ready().await.expect("ready").call(request()).await.expect("infallible");
            resp.into_body().collect().await.expect("body").to_bytes().len()
        })
    });
    rt.block_on(async { journal.shutdown().await.expect("shutdown") });
}
