//! netmoded's one error type. Every I/O error carries what was being done and to which path.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file that cannot be used; `Display` names file, line, column and key.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),

    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("state directory {path} is in use by another netmoded (pid {pid})")]
    StateDirLocked { path: PathBuf, pid: String },

    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("docker: {0}")]
    Docker(String),

    #[error("netlink: {what}: {reason}")]
    Netlink { what: &'static str, reason: String },

    #[error("probe: {0}")]
    Probe(String),

    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Shorthand for the `Io` variant.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Process exit code: 78 (EX_CONFIG) for configuration errors, 64 (EX_USAGE) for a bad
    /// command line, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 78,
            Error::Usage(_) => 64,
            _ => 1,
        }
    }
}

impl From<bollard::errors::Error> for Error {
    fn from(e: bollard::errors::Error) -> Self {
        Error::Docker(crate::docker::describe_error(&e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
