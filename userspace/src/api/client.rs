//! A client for the local API, used by the command line and the rpcd plugin.

use std::path::Path;

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

/// GETs `path` from the daemon listening on `socket` and decodes the JSON.
pub fn get<T: DeserializeOwned>(socket: &Path, path: &str) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(request_async(socket, "GET", path, None))
}

/// POSTs a JSON body to `path` and decodes the JSON answer.
pub fn post<T: DeserializeOwned>(socket: &Path, path: &str, body: &serde_json::Value) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(request_async(socket, "POST", path, Some(body)))
}

pub async fn get_async<T: DeserializeOwned>(socket: &Path, path: &str) -> Result<T> {
    request_async(socket, "GET", path, None).await
}

pub async fn request_async<T: DeserializeOwned>(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<T> {
    let stream = UnixStream::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the daemon at {} (is `iot-inspector run` running? pass --socket if it listens elsewhere)",
            socket.display()
        )
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let bytes = match body {
        Some(b) => Bytes::from(serde_json::to_vec(b)?),
        None => Bytes::new(),
    };
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(bytes))?;
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
