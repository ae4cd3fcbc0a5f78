//! The advisor crate's one error type.

/// Everything the `advisor` CLI can fail on. `exit_code` maps each to the documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "netmoded does not answer at {endpoint} ({reason}); is it running? (set --endpoint or NETMODE_ENDPOINT)"
    )]
    Unreachable { endpoint: String, reason: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("netmoded answered {url} with HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error("netmoded's answer to {url} is not the expected JSON: {reason}")]
    Decode { url: String, reason: String },
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("not authorised: {message}")]
    Unauthorized { message: String },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Probe(String),
    /// A mode change failed and was rolled back: the container runs as before.
    #[error("rolled back: {0}")]
    RolledBack(String),
    /// Nothing was changed: the container belongs to a Compose project; an override file was
    /// written for Compose to apply.
    #[error("not applied: {0}")]
    ComposeOverride(String),
}

impl Error {
    /// Exit codes: 2 usage, 3 daemon not answering, 4 no such container, 5 not authorised
    /// (netmoded's token missing or wrong), 6 a mode change rolled back, 7 not applied (a
    /// Compose override file written instead), 1 anything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Endpoint { .. } => 2,
            Error::Unreachable { .. } => 3,
            Error::NotFound { .. } => 4,
            Error::Unauthorized { .. } => 5,
            Error::RolledBack(_) => 6,
            Error::ComposeOverride(_) => 7,
            Error::Http { .. } | Error::Decode { .. } | Error::Probe(_) => 1,
        }
    }
}
