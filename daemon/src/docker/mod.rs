//! A thin layer over the Docker engine API (bollard). bollard runs on tokio; every call here
//! is wrapped in `async_compat::Compat`, which drives it on one small tokio thread while the
//! daemon's own loop stays on smol.

pub mod inventory;
pub mod watch;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_compat::Compat;
use bollard::Docker;
use bollard::models::{ContainerInspectResponse, EventMessage};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures_lite::{Stream, StreamExt};

use crate::error::{Error, Result};

/// What the engine says about itself.
#[derive(Debug, Clone)]
pub struct EngineVersion {
    pub server: String,
    pub api: String,
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connect to the engine's unix socket and agree on an API version (an older engine,
    /// like Debian's 20.10 with API 1.41, refuses a client that asks for more).
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<(Engine, EngineVersion)> {
        let path = socket.to_string_lossy();
        let docker = Docker::connect_with_unix(
            &path,
            timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )?;
        let docker = Compat::new(docker.negotiate_version()).await?;
        let v = Compat::new(docker.version()).await?;
        let version = EngineVersion {
            server: v.version.unwrap_or_else(|| "unknown".into()),
            api: v.api_version.unwrap_or_else(|| "unknown".into()),
        };
        Ok((Engine { docker }, version))
    }

    /// Ids of the running containers.
    pub async fn running_container_ids(&self) -> Result<Vec<String>> {
        let opts = ListContainersOptionsBuilder::new().all(false).build();
        let list = Compat::new(self.docker.list_containers(Some(opts))).await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Inspect one container; `None` if it no longer exists.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        match Compat::new(self.docker.inspect_container(id, None)).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The driver of a network (`bridge`, `macvlan`, ...), by id or name.
    pub async fn network_driver(&self, network: &str) -> Result<Option<String>> {
        match Compat::new(self.docker.inspect_network(network, None)).await {
            Ok(n) => Ok(n.driver),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Container and network events since `since_unix` (seconds): what keeps the inventory
    /// current without polling.
    pub fn events(&self, since_unix: i64) -> impl Stream<Item = Result<EventMessage>> + use<> {
        let mut filters: HashMap<&str, Vec<&str>> = HashMap::new();
        filters.insert("type", vec!["container", "network"]);
        filters.insert(
            "event",
            vec!["start", "die", "destroy", "rename", "connect", "disconnect"],
        );
        let opts = EventsOptionsBuilder::new()
            .since(&since_unix.to_string())
            .filters(&filters)
            .build();
        compat_stream(self.docker.events(Some(opts))).map(|r| r.map_err(Error::from))
    }
}

/// Drive a tokio-based stream from smol: each item is awaited inside the tokio context.
pub fn compat_stream<S: Stream + Send + 'static>(
    s: S,
) -> impl Stream<Item = S::Item> + Send + 'static
where
    S::Item: Send,
{
    futures_lite::stream::unfold(Box::pin(s), |mut s| async move {
        let item = Compat::new(s.next()).await?;
        Some((item, s))
    })
}

pub fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
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
