//! A client for the local API, used by the command line and the rpcd plugin.

use std::path::Path;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

/// GETs `path` from the daemon listening on `socket` and decodes the JSON.
pub fn get<T: DeserializeOwned>(socket: &Path, path: &str) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(get_async(socket, path))
}

pub async fn get_async<T: DeserializeOwned>(socket: &Path, path: &str) -> Result<T> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the daemon at {} (is `iot-inspector run` running? pass --socket if it listens elsewhere)",
            socket.display()
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the daemon answered {status}: {msg}");
    }
    serde_json::from_slice(&body).context("decoding the daemon's answer")
}
