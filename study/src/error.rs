//! The study's errors, each with what it was doing, and the exit code it maps to.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    #[error("{0}")]
    Usage(String),

    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a study's results ({reason})")]
    Results { path: PathBuf, reason: String },

    /// Docker, netlink, the probe image, the sink: the daemon library's own errors.
    #[error("{0}")]
    Netmode(#[from] netmoded::error::Error),
    #[error("probe: {0}")]
    Probe(#[from] netmoded::error::ProbeError),
    #[error("{0}")]
    Netlink(#[from] netmoded::error::NetlinkError),
    #[error("{0}")]
    State(#[from] netmoded::error::StateError),

    #[error(
        "interrupted after {done} of {total} cells; the probe containers and the sink are removed. \
         Continue with: netmode-study --out {out} --resume (and the same options)",
        out = .out.display()
    )]
    Interrupted {
        done: usize,
        total: usize,
        out: PathBuf,
    },
}

impl StudyError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StudyError::Usage(_) => 64,
            StudyError::Interrupted { .. } => 130,
            _ => 1,
        }
    }
}
