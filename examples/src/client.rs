//! A minimal HTTP/1.1 client over one connection (hyper), for the demo and the tests.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// A bare HTTP/1.1 connection (one per task in concurrency tests).
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

/// What a client received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Status.
    pub status: u16,
    /// Content-Type.
    pub content_type: Option<String>,
    /// Every body byte.
    pub body: Vec<u8>,
}

impl Conn {
    /// Connect to `addr`.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { sender, addr })
    }

    /// POST JSON to `path` and read the whole response.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: &serde_json::Value,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Received> {
        self.sender.ready().await.map_err(std::io::Error::other)?;
        let mut req = http::Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json")
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).map_err(std::io::Error::other)?;
        let resp = self.sender.send_request(req).await.map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes().to_vec();
        Ok(Received { status, content_type, body })
    }
}
