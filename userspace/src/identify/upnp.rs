//! The UPnP device description a device points at in its SSDP LOCATION:
//! friendlyName, manufacturer, modelName, modelNumber, deviceType.
//!
//! Fetched only from the device that announced it (the LOCATION's host must
//! be the announcing IP literally: no names, no redirects), over plain
//! HTTP/1.1 with hyper, with a size cap and a total time limit so a huge or
//! trickling document cannot stall anything. Parsed with quick-xml, which
//! never expands DTD entities (no billion laughs): unknown entity
//! references are dropped.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use quick_xml::events::Event;
use serde::{Deserialize, Serialize};

use super::text::{self, MAX_TEXT};

/// Largest description read.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest a fetch may take, connection to last byte.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(3);

/// What the description says about the (root) device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpnpDescription {
    pub friendly_name: Option<String>,
    pub manufacturer: Option<String>,
    pub model_name: Option<String>,
    pub model_number: Option<String>,
    pub device_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpnpError {
    /// The LOCATION is not `http://<literal IP>[:port]/path`.
    BadLocation,
    /// The LOCATION points somewhere other than the announcing device.
    NotFromDevice,
    Connect(String),
    Http(String),
    Status(u16),
    /// The document is larger than [`MAX_BODY`].
    TooLarge,
    /// The fetch took longer than [`TOTAL_TIMEOUT`].
    Timeout,
    Xml(String),
}

impl fmt::Display for UpnpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpnpError::BadLocation => {
                write!(f, "LOCATION is not an http:// URL with an IP address")
            }
            UpnpError::NotFromDevice => {
                write!(f, "LOCATION points away from the announcing device")
            }
            UpnpError::Connect(e) => write!(f, "cannot connect: {e}"),
            UpnpError::Http(e) => write!(f, "HTTP error: {e}"),
            UpnpError::Status(s) => write!(f, "HTTP status {s}"),
            UpnpError::TooLarge => write!(f, "description larger than {MAX_BODY} bytes"),
            UpnpError::Timeout => write!(f, "description not received within {TOTAL_TIMEOUT:?}"),
            UpnpError::Xml(e) => write!(f, "bad XML: {e}"),
        }
    }
}

impl std::error::Error for UpnpError {}

/// Fetches and parses the description at `location`, only if its host is
/// `announced_from`.
pub async fn fetch_description(
    location: &str,
    announced_from: IpAddr,
) -> Result<UpnpDescription, UpnpError> {
    let (addr, path) = parse_location(location)?;
    if addr.ip() != announced_from {
        return Err(UpnpError::NotFromDevice);
    }
    let body = tokio::time::timeout(TOTAL_TIMEOUT, fetch(addr, &path))
        .await
        .map_err(|_| UpnpError::Timeout)??;
    parse_description(&body)
}

/// `http://192.0.2.30:49152/setup.xml` → (192.0.2.30:49152, "/setup.xml").
pub fn parse_location(location: &str) -> Result<(SocketAddr, String), UpnpError> {
    let bad = || UpnpError::BadLocation;
    let rest = location
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &location[7..])
        .ok_or_else(bad)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let ip: IpAddr = host.parse().map_err(|_| bad())?;
    let port: u16 = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => 80,
    };
    let path = if path.is_empty() || !path.starts_with('/') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if path.len() > 1024 || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad());
    }
    Ok((SocketAddr::new(ip, port), path))
}

/// Aborts the connection task when the fetch ends or is cancelled.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn fetch(addr: SocketAddr, path: &str) -> Result<Vec<u8>, UpnpError> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| UpnpError::Connect(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| UpnpError::Http(e.to_string()))?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(
            hyper::header::USER_AGENT,
            "iot-inspector (UPnP description)",
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| UpnpError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| UpnpError::Http(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(UpnpError::Status(resp.status().as_u16()));
    }
    let declared = resp
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(UpnpError::TooLarge);
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UpnpError::Http(e.to_string()))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > MAX_BODY {
                return Err(UpnpError::TooLarge);
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf)
}

/// Field of the root device a text belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    FriendlyName,
    Manufacturer,
    ModelName,
    ModelNumber,
    DeviceType,
}

/// Parses a description document. The first occurrence of each field is
/// the root device's (embedded devices come after it).
pub fn parse_description(xml: &[u8]) -> Result<UpnpDescription, UpnpError> {
    let xml = &xml[..xml.len().min(MAX_BODY)];
    let text = String::from_utf8_lossy(xml);
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut d = UpnpDescription::default();
    let mut current: Option<Field> = None;
    let mut value = String::new();
    let mut truncated = 0;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| UpnpError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) => {
                current = match e.local_name().as_ref() {
                    "friendlyName" => Some(Field::FriendlyName),
                    "manufacturer" => Some(Field::Manufacturer),
                    "modelName" => Some(Field::ModelName),
                    "modelNumber" => Some(Field::ModelNumber),
                    "deviceType" => Some(Field::DeviceType),
                    _ => None,
                };
                value.clear();
            }
            // Text past twice the bound is dropped unread (it is cut anyway).
            Event::Text(e) if current.is_some() && value.len() < MAX_TEXT * 2 => {
                value.push_str(&e.xml10_content());
            }
            Event::CData(e) if current.is_some() && value.len() < MAX_TEXT * 2 => {
                value.push_str(&e.into_inner());
            }
            Event::GeneralRef(e) if current.is_some() => {
                // Character references and the five predefined entities
                // only; anything declared in a DTD stays unexpanded.
                if let Ok(Some(c)) = e.resolve_char_ref() {
                    value.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&e) {
                    value.push_str(s);
                }
            }
            Event::End(_) => {
                if let Some(field) = current.take() {
                    let v = text::bounded_str(value.trim(), MAX_TEXT, &mut truncated);
                    let slot = match field {
                        Field::FriendlyName => &mut d.friendly_name,
                        Field::Manufacturer => &mut d.manufacturer,
                        Field::ModelName => &mut d.model_name,
                        Field::ModelNumber => &mut d.model_number,
                        Field::DeviceType => &mut d.device_type,
                    };
                    if slot.is_none() && !v.is_empty() {
                        *slot = Some(v);
                    }
                }
                value.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests;
