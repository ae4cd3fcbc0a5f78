//! netmoded's errors, typed by the layer they come from. Every I/O error carries what was
//! being done and to what; nothing is passed around as a bare `String`.
//!
//! - [`Error`]: what a command (and the daemon's start) can fail with; it maps to the exit code.
//! - [`DockerError`]: the engine did not answer, or answered with an error status.
//! - [`TrafficError`]: a sender or the sink (`traffic/`) could not do its job.
//! - [`ProbeError`]: a probe run or cell could not complete (`probe/`).
//! - [`ApplyError`]: a mode change could not be carried out (`apply/`).
//! - [`NetlinkError`]: a netlink request failed (`sys/`); [`StateError`]: the state directory
//!   or an atomic write failed (`state_dir`). Both point down: the layers above wrap them.
//! - [`RequestError`]: an API request that is refused; it maps to an HTTP status.

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

    #[error("{0}")]
    State(#[from] StateError),

    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("docker: {0}")]
    Docker(#[from] DockerError),

    #[error("{0}")]
    Netlink(#[from] NetlinkError),

    #[error("probe: {0}")]
    Probe(#[from] ProbeError),

    #[error("{0}")]
    Usage(String),

    /// A task the daemon cannot go on without ended or panicked (systemd restarts it).
    #[error("task {0} ended")]
    TaskEnded(&'static str),
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

/// A netlink request (rtnetlink or sock_diag) failed.
#[derive(Debug, thiserror::Error)]
#[error("netlink: {what}: {reason}")]
pub struct NetlinkError {
    pub what: &'static str,
    pub reason: String,
}

/// The state directory, or a file written atomically, failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state directory {path} is in use by another netmoded (pid {pid})")]
    Locked { path: PathBuf, pid: String },
}

impl StateError {
    /// An I/O error with what was being done and to which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StateError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

impl From<bollard::errors::Error> for Error {
    fn from(e: bollard::errors::Error) -> Self {
        Error::Docker(e.into())
    }
}

/// The Docker engine could not be reached, or refused what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine answered with an error status (404: no such container or image).
    #[error("engine answered {status}: {message}")]
    Api { status: u16, message: String },
    /// No answer: socket missing, connection refused, timeout; the innermost cause.
    #[error("{0}")]
    Unreachable(String),
    /// A stream (events, wait) ended without the answer it should carry.
    #[error("{0}")]
    Ended(String),
}

impl DockerError {
    /// The engine answered: it is up, the request itself was refused.
    pub fn answered(&self) -> bool {
        matches!(self, DockerError::Api { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, DockerError::Api { status: 404, .. })
    }
}

impl From<bollard::errors::Error> for DockerError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match e {
            B::DockerResponseServerError {
                status_code,
                message,
            } => DockerError::Api {
                status: status_code,
                message,
            },
            other => DockerError::Unreachable(describe_error(&other)),
        }
    }
}

/// A sender or the sink could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// A socket operation failed; `what` names it and the peer.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The peer (a netmode sink, an iperf3 server) said something we cannot use.
    #[error("{0}")]
    Protocol(String),
    /// A target URL that cannot be used (`netmode://HOST:PORT`, `iperf3://HOST:PORT`).
    #[error("{target:?}: {reason}")]
    Target { target: String, reason: String },
}

impl TrafficError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrafficError {
        let what = what.into();
        move |source| TrafficError::Io { what, source }
    }
}

/// A probe run, or one of its cells, could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probed container stopped: the run is aborted, not failed.
    #[error("{container} stopped during the probe; probe aborted")]
    TargetStopped { container: String },
    /// The container stopped before its probe started.
    #[error("the container stopped before its probe could start")]
    TargetGone,
    #[error("cannot reach the Docker engine: {0}")]
    Engine(DockerError),
    /// A Docker call on a probe container failed.
    #[error("{what}: {source}")]
    Docker {
        what: String,
        #[source]
        source: DockerError,
    },
    /// A probe sender did not run as it should (never ready, exited, stuck).
    #[error("{0}")]
    Sender(String),
    /// The probe image could not be built.
    #[error("probe image: {what}: {reason}")]
    Image { what: String, reason: String },
    /// The local sink could not be set up.
    #[error("local sink: {what}: {reason}")]
    LocalSink { what: String, reason: String },
    /// Probing is not available (its sink could not be set up).
    #[error("{0}")]
    Unavailable(String),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Netlink(#[from] NetlinkError),
    /// The probe history could not be kept.
    #[error("{0}")]
    State(#[from] StateError),
}

impl ProbeError {
    /// Context for a Docker call on a probe container.
    pub fn docker(what: impl Into<String>) -> impl FnOnce(DockerError) -> ProbeError {
        let what = what.into();
        move |source| ProbeError::Docker { what, source }
    }
}

impl From<DockerError> for ProbeError {
    fn from(e: DockerError) -> Self {
        ProbeError::Engine(e)
    }
}

/// A mode change (apply) that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Refused before anything was changed.
    #[error("{0}")]
    Refused(String),
    /// A Docker call of a step failed.
    #[error("{what}: {source}")]
    Docker {
        what: String,
        #[source]
        source: DockerError,
    },
    /// The new container did not pass verification (exited, restarting, unhealthy).
    #[error("{0}")]
    Verify(String),
    /// netmoded is stopping: the change stopped at its next step, to be settled.
    #[error("netmoded is stopping")]
    Interrupted,
    /// Neither finished nor rolled back, and retrying cannot change that (someone else
    /// removed the old container, or took its name): what is where, for the operator.
    #[error("{0}")]
    Unsettled(String),
    /// The journal found at start cannot be read; it was moved aside.
    #[error(
        "{path}: unreadable ({reason}); moved to {moved}. A change was interrupted and cannot be \
         settled without it: a container it renamed aside is named NAME-netmode-ID \
         (docker ps -a --filter name=-netmode-a); if NAME is gone, rename it back and start it"
    )]
    CorruptJournal {
        path: PathBuf,
        reason: String,
        moved: PathBuf,
    },
    /// The state directory (the journal, the history) failed.
    #[error("{0}")]
    State(#[from] StateError),
}

impl ApplyError {
    /// Context for a Docker call of a step.
    pub fn docker(what: impl Into<String>) -> impl FnOnce(DockerError) -> ApplyError {
        let what = what.into();
        move |source| ApplyError::Docker { what, source }
    }
}

/// Why an API request is refused: each kind has its HTTP status, and the message says what
/// to do instead.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// 400: the request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 404: what it names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 422: it exists, but the request cannot apply to it.
    #[error("{0}")]
    Unprocessable(String),
    /// 409: it conflicts with the current state (already in that mode, a change running).
    #[error("{0}")]
    Conflict(String),
    /// 429: too much is queued already.
    #[error("{0}")]
    Busy(String),
    /// 503: the feature is unavailable right now.
    #[error("{0}")]
    Unavailable(String),
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Invalid(_) => 400,
            RequestError::NotFound(_) => 404,
            RequestError::Unprocessable(_) => 422,
            RequestError::Conflict(_) => 409,
            RequestError::Busy(_) => 429,
            RequestError::Unavailable(_) => 503,
        }
    }
}

/// One line that says what went wrong, down to the root cause (bollard's own messages stop
/// at "error in the hyper legacy client").
pub fn describe_error(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as B;
    match e {
        B::SocketNotFoundError(p) => format!("socket {p} does not exist"),
        B::RequestTimeoutError => "the engine did not answer in time".into(),
        B::DockerResponseServerError {
            status_code,
            message,
        } => format!("engine answered {status_code}: {message}"),
        _ => {
            let mut parts = vec![e.to_string()];
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let m = s.to_string();
                if !parts.iter().any(|p| p.contains(&m)) {
                    parts.push(m);
                }
                source = s.source();
            }
            // The innermost cause is what an operator can act on.
            parts.last().cloned().unwrap_or_default()
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
