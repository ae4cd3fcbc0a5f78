//! Who may change anything: every mutating request (POST) carries the daemon's bearer token
//! and a JSON body. GET stays open on the endpoint's own address, unless
//! `http.token_for_reads` (an endpoint on a LAN address): then every request but `/healthz`
//! carries the token.
//!
//! Every host-mode container shares the host's loopback, and a browser page can send a form
//! POST to 127.0.0.1 without a preflight; neither has the token (mode 0600 in the state
//! directory), and a form cannot send `application/json` without a preflight either.

use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::App;
use super::{Body, error};
use crate::state_dir::TOKEN_FILE;

/// `Ok` when the request may change something; else the 401/403/415 answer (returned as
/// is, once per refused request: its size does not matter).
#[allow(clippy::result_large_err)]
pub fn mutation(app: &App, headers: &HeaderMap) -> Result<(), Response<Body>> {
    bearer(app, headers, "this request changes something")?;
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    Ok(())
}

/// With `http.token_for_reads`: `Ok` when a read carries the token.
#[allow(clippy::result_large_err)]
pub fn read(app: &App, headers: &HeaderMap) -> Result<(), Response<Body>> {
    if !app.state.config().http.token_for_reads {
        return Ok(());
    }
    bearer(
        app,
        headers,
        "this endpoint requires the token for reads (http.token_for_reads)",
    )
}

/// The bearer token, or the 401/403 answer.
#[allow(clippy::result_large_err)]
fn bearer(app: &App, headers: &HeaderMap, why: &str) -> Result<(), Response<Body>> {
    let token_path = app.state.state_dir.path().join(TOKEN_FILE);
    let given = match headers.get(AUTHORIZATION) {
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                format!(
                    "{why} and needs netmoded's token: send \
                     \"Authorization: Bearer <token>\", the token being the contents of {} \
                     (readable by root; advisor reads it itself)",
                    token_path.display()
                ),
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"netmoded\""),
            );
            return Err(r);
        }
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim),
    };
    match given {
        Some(t) if same(t.as_bytes(), app.token.as_bytes()) => {}
        Some(_) => {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!(
                    "wrong token: it is the contents of {}",
                    token_path.display()
                ),
            ));
        }
        None => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "the Authorization header must be \"Bearer <token>\"",
            ));
        }
    }
    Ok(())
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
    }
}
