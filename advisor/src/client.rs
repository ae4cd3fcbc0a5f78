//! A small blocking HTTP client for netmoded's local endpoint (plain HTTP on loopback).

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::api::ApiError;
use crate::error::Error;

/// The endpoint `advisor` uses when neither `--endpoint` nor `NETMODE_ENDPOINT` is given.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:9431";

/// Where netmoded keeps its bearer token by default (`<state_dir>/token`).
pub const DEFAULT_TOKEN_FILE: &str = "/var/lib/netmode/token";

pub struct Client {
    endpoint: String,
    agent: ureq::Agent,
    /// The bearer token sent with every request, and where it came from (or why none).
    token: Result<String, String>,
}

impl Client {
    /// `endpoint` like `http://127.0.0.1:9431`; only plain `http://` is served by netmoded.
    pub fn new(endpoint: &str, timeout: Duration) -> Result<Self, Error> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let rest = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| Error::Endpoint {
                endpoint: endpoint.clone(),
                reason: "must start with http:// (netmoded serves plain HTTP on a local address)"
                    .into(),
            })?;
        if rest.is_empty() || rest.contains('/') {
            return Err(Error::Endpoint {
                endpoint: endpoint.clone(),
                reason: "expected http://HOST:PORT with no path".into(),
            });
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A local daemon is never reached through an HTTP proxy from the environment.
            .proxy(None)
            .build()
            .into();
        Ok(Client {
            endpoint,
            agent,
            token: Err("no token file was read".into()),
        })
    }

    /// Read the token requests carry from `path`. With `required`, the file must be readable;
    /// else it may be absent (the daemon's 401 then says what to do).
    pub fn with_token_file(
        mut self,
        path: &std::path::Path,
        required: bool,
    ) -> Result<Self, Error> {
        match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => self.token = Ok(t.trim().to_string()),
            Ok(_) => {
                return Err(Error::Unauthorized {
                    message: format!("{} is empty", path.display()),
                });
            }
            Err(e) if required => {
                return Err(Error::Unauthorized {
                    message: format!("cannot read the token file {}: {e}", path.display()),
                });
            }
            Err(e) => {
                self.token = Err(format!(
                    "{}: {e}; run as root or give --token-file",
                    path.display()
                ))
            }
        }
        Ok(self)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// GET `path` and decode the JSON body; a 404 becomes `Error::NotFound` with the
    /// daemon's message, other non-2xx answers `Error::Http`.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let (status, body) = self.request("GET", path, &[])?;
        self.decode(path, status, &body)
    }

    /// POST a JSON `body` to `path` and decode the JSON answer.
    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, Error> {
        let (status, text) = self.request("POST", path, body)?;
        self.decode(path, status, &text)
    }

    /// GET `path` and return the raw body text (for `--json`, printed as served).
    pub fn get_text(&self, path: &str) -> Result<String, Error> {
        let (status, body) = self.request("GET", path, &[])?;
        self.check(path, status, &body)?;
        Ok(body)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, String), Error> {
        let url = format!("{}{}", self.endpoint, path);
        let result = match method {
            "POST" => {
                let mut req = self
                    .agent
                    .post(&url)
                    .header("content-type", "application/json");
                if let Ok(t) = &self.token {
                    req = req.header("authorization", &format!("Bearer {t}"));
                }
                req.send(body)
            }
            _ => {
                let mut req = self.agent.get(&url);
                if let Ok(t) = &self.token {
                    req = req.header("authorization", &format!("Bearer {t}"));
                }
                req.call()
            }
        };
        let mut resp = result.map_err(|e| Error::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: short_reason(&e),
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| Error::Decode {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        Ok((status, body))
    }

    fn check(&self, path: &str, status: u16, body: &str) -> Result<(), Error> {
        if (200..300).contains(&status) {
            return Ok(());
        }
        let message = serde_json::from_str::<ApiError>(body)
            .map(|e| e.error)
            .unwrap_or_else(|_| body.chars().take(200).collect());
        if status == 404 {
            return Err(Error::NotFound { message });
        }
        if status == 401 || status == 403 {
            let message = match &self.token {
                Ok(_) => message,
                Err(why) => format!("{message} (advisor read no token: {why})"),
            };
            return Err(Error::Unauthorized { message });
        }
        Err(Error::Http {
            url: format!("{}{}", self.endpoint, path),
            status,
            message,
        })
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, status: u16, body: &str) -> Result<T, Error> {
        self.check(path, status, body)?;
        serde_json::from_str(body).map_err(|e| Error::Decode {
            url: format!("{}{}", self.endpoint, path),
            reason: e.to_string(),
        })
    }
}

fn short_reason(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_must_be_plain_http_host_port() {
        let t = Duration::from_secs(1);
        assert!(Client::new("http://127.0.0.1:9431/", t).is_ok());
        let e = Client::new("https://127.0.0.1:9431", t).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("must start with http://"), "{e}");
        let e = Client::new("http://127.0.0.1:9431/v1", t).err().unwrap();
        assert!(e.to_string().contains("no path"), "{e}");
    }
}
