//! Docker's own JSON, untouched: what a mode change reads and writes.
//!
//! bollard's models follow the newest API (1.5x); an older engine (Debian's 20.10 speaks
//! 1.41) has fields those models no longer carry (`Config.MacAddress` for one), and a
//! round trip through them would silently drop them from a recreated container, as Portainer's
//! recreate froze and lost settings. So the apply path inspects and creates with raw JSON on
//! the engine's own (unversioned) API: whatever the engine reports, it gets back.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

use crate::error::DockerError;

/// One request on the engine's socket; the status and the body. 4xx/5xx become
/// `DockerError::Api` with the engine's message.
pub async fn request(
    socket: &Path,
    timeout: Duration,
    method: hyper::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, DockerError> {
    let what = format!("{method} {path}");
    let work = async {
        let stream = smol::net::unix::UnixStream::connect(socket)
            .await
            .map_err(|e| DockerError::Unreachable(format!("{}: {e}", socket.display())))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(smol_hyper::rt::FuturesIo::new(stream))
                .await
                .map_err(|e| DockerError::Unreachable(format!("{what}: {e}")))?;
        let driver = smol::spawn(async move {
            let _ = conn.await;
        });
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            None => Bytes::new(),
        };
        let req = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, "docker")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| DockerError::Ended(format!("{what}: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| DockerError::Unreachable(format!("{what}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| DockerError::Unreachable(format!("{what}: {e}")))?
            .to_bytes();
        drop(driver);
        let json: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&body).trim().to_string())
            })
        };
        if status >= 400 {
            let message = json["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| json.to_string());
            return Err(DockerError::Api { status, message });
        }
        Ok(json)
    };
    let timer = async {
        async_io::Timer::after(timeout).await;
        Err(DockerError::Unreachable(format!(
            "{what}: no answer within {timeout:?}"
        )))
    };
    futures_lite::future::or(work, timer).await
}

/// Percent-encode a path segment or query value (names and ids are plain, but a name is
/// the user's).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
