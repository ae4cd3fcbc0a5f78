//! A thin layer over the Docker engine API (bollard). bollard runs on tokio; every call here
//! is wrapped in `async_compat::Compat`, which drives it on one small tokio thread while the
//! daemon's own loop stays on smol.

pub mod inventory;
pub mod raw;
pub mod watch;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use async_compat::Compat;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, EventMessage, RestartPolicy,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RenameContainerOptions, StopContainerOptionsBuilder,
    TagImageOptionsBuilder,
};
use futures_lite::{Stream, StreamExt};

use crate::error::DockerError;

/// What every call of the Docker layer returns: its errors are the engine's, never more.
pub type Result<T, E = DockerError> = std::result::Result<T, E>;

/// What the engine says about itself.
#[derive(Debug, Clone)]
pub struct EngineVersion {
    /// `docker` or `podman` (`engine_name`).
    pub engine: &'static str,
    pub server: String,
    pub api: String,
}

impl EngineVersion {
    /// The engine's major version (`5` of Podman's "5.4.2"), 0 when it cannot be read.
    pub fn major(&self) -> u32 {
        self.server
            .split('.')
            .next()
            .and_then(|m| m.trim_start_matches('v').parse().ok())
            .unwrap_or(0)
    }
}

/// Which engine a `/version` answer comes from: Podman names its first component "Podman
/// Engine" (Docker "Engine"); anything else speaking Docker's API is taken for Docker.
pub fn engine_name(v: &bollard::models::SystemVersion) -> &'static str {
    let podman = v
        .components
        .iter()
        .flatten()
        .any(|c| c.name.to_ascii_lowercase().contains("podman"))
        || v.platform
            .as_ref()
            .is_some_and(|p| p.name.to_ascii_lowercase().contains("podman"));
    if podman { "podman" } else { "docker" }
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    /// For the raw JSON requests of a mode change (`raw`).
    socket: std::path::PathBuf,
    timeout: Duration,
    version: EngineVersion,
}

impl Engine {
    /// Connect to the engine's unix socket and agree on an API version (an older engine,
    /// like Debian's 20.10 with API 1.41, refuses a client that asks for more).
    /// What the engine says about itself is kept: [`Engine::version`].
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Engine> {
        let path = socket.to_string_lossy();
        let docker = Docker::connect_with_unix(
            &path,
            timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )?;
        let docker = Compat::new(docker.negotiate_version()).await?;
        let v = Compat::new(docker.version()).await?;
        let version = EngineVersion {
            engine: engine_name(&v),
            server: v.version.unwrap_or_else(|| "unknown".into()),
            api: v.api_version.unwrap_or_else(|| "unknown".into()),
        };
        Ok(Engine {
            docker,
            socket: socket.to_path_buf(),
            timeout,
            version,
        })
    }

    /// What the engine said about itself when netmode connected.
    pub fn version(&self) -> &EngineVersion {
        &self.version
    }

    /// Connect to the first of `sockets` whose engine answers; with it, the socket. The
    /// error names every socket tried (the last one's error in full).
    pub async fn connect_first(
        sockets: &[std::path::PathBuf],
        timeout: Duration,
    ) -> Result<(Engine, std::path::PathBuf)> {
        let mut last = None;
        for socket in sockets {
            match Engine::connect(socket, timeout).await {
                Ok(engine) => return Ok((engine, socket.clone())),
                Err(e) => last = Some(e),
            }
        }
        let tried: Vec<String> = sockets.iter().map(|s| s.display().to_string()).collect();
        Err(match last {
            Some(e) if sockets.len() == 1 => e,
            Some(e) => DockerError::Unreachable(format!(
                "no engine answers at {}: {}",
                tried.join(" or "),
                e.to_string().trim_start_matches("docker: ")
            )),
            None => DockerError::Unreachable("no engine socket to try".into()),
        })
    }

    /// Ids of the running containers (read from the engine's JSON: a listing is not parsed
    /// into bollard's models, whose states Podman's `stopped` is not among).
    pub async fn running_container_ids(&self) -> Result<Vec<String>> {
        let list = self
            .raw(hyper::Method::GET, "/containers/json", None)
            .await?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Id"].as_str().map(String::from))
            .collect())
    }

    /// Inspect one container; `None` if it no longer exists. Read leniently (`lenient`): a
    /// value the models do not know (a new state, a null where an object was) is dropped and
    /// logged, not a failure of discovery.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerInspectResponse>> {
        let Some(v) = self.inspect_json(id).await? else {
            return Ok(None);
        };
        let (c, dropped) = lenient::<ContainerInspectResponse>(v).map_err(|e| {
            DockerError::Ended(format!("the engine's inspect of {id} cannot be read: {e}"))
        })?;
        if !dropped.is_empty() {
            log::debug!(
                "inspect of {}: left out what bollard's models do not know: {}",
                &id[..id.len().min(12)],
                dropped.join(", ")
            );
        }
        Ok(Some(c))
    }

    /// The driver of a network (`bridge`, `macvlan`, ...), by id or name.
    pub async fn network_driver(&self, network: &str) -> Result<Option<String>> {
        let path = format!("/networks/{}", raw::encode(network));
        Ok(self
            .inspect_at(path)
            .await?
            .and_then(|n| n["Driver"].as_str().map(String::from)))
    }

    /// Container and network events since `since_unix` (seconds): what keeps the inventory
    /// current without polling.
    pub fn events(&self, since_unix: i64) -> impl Stream<Item = Result<EventMessage>> + use<> {
        let mut filters: HashMap<&str, Vec<&str>> = HashMap::new();
        filters.insert("type", vec!["container", "network"]);
        // Podman 4 matches its own names in a filter ("died", "remove"), and reports Docker's
        // ("die") or its own ("remove" for Docker's "destroy"): both spellings are asked for.
        // Docker matches names as strings, so the extra ones cost nothing there.
        filters.insert(
            "event",
            vec![
                "start",
                "die",
                "died",
                "destroy",
                "remove",
                "rename",
                "connect",
                "disconnect",
            ],
        );
        let opts = EventsOptionsBuilder::new()
            .since(&since_unix.to_string())
            .filters(&filters)
            .build();
        compat_stream(self.docker.events(Some(opts))).map(|r| r.map_err(DockerError::from))
    }

    /// The exit codes container `id` stopped with from `since` until now, oldest first, as
    /// its `die` events tell them: after a restart, inspect shows the running container's
    /// exit code (0), not the one it stopped with.
    pub async fn exit_codes(&self, id: &str, since: std::time::SystemTime) -> Result<Vec<i64>> {
        let stamp = |t: std::time::SystemTime| {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
        };
        let mut filters: HashMap<&str, Vec<&str>> = HashMap::new();
        filters.insert("type", vec!["container"]);
        filters.insert("container", vec![id]);
        // Podman 4 matches "died" (its own name) and reports "die".
        filters.insert("event", vec!["die", "died"]);
        let opts = EventsOptionsBuilder::new()
            .since(&stamp(since))
            .until(&stamp(std::time::SystemTime::now()))
            .filters(&filters)
            .build();
        let mut events = std::pin::pin!(compat_stream(self.docker.events(Some(opts))));
        let mut codes = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(e) = events.next().await {
            let e = e?;
            // One death, once, whichever names matched it.
            if !seen.insert(e.time_nano.or(e.time)) {
                continue;
            }
            if let Some(code) = e
                .actor
                .and_then(|a| a.attributes)
                .and_then(|a| a.get("exitCode").and_then(|c| c.parse().ok()))
            {
                codes.push(code);
            }
        }
        Ok(codes)
    }
}

/// Most tries `lenient` makes: each one drops one value.
const LENIENT_TRIES: usize = 32;

/// `v` as a `T`, where a value `T` cannot take (an enum's unknown variant, a null or a string
/// where a number or object was) is replaced by null (`None` in bollard's models, where nearly
/// every field is an `Option`), or removed if null does not fit either; the JSON pointers of
/// what was dropped. Engines differ (Podman's `stopped` state, Docker's newer fields): what
/// one of them says that the models do not know must not make a container invisible.
pub fn lenient<T: serde::de::DeserializeOwned>(
    mut v: serde_json::Value,
) -> std::result::Result<(T, Vec<String>), serde_json::Error> {
    use serde_path_to_error::Segment;
    let mut dropped: Vec<String> = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, T>(&v) {
            Ok(t) => return Ok((t, dropped)),
            Err(e) => e,
        };
        let mut pointer = String::new();
        for seg in err.path().iter() {
            match seg {
                Segment::Map { key } => {
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                }
                Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        let already = dropped.last() == Some(&pointer);
        let fixed = match v.pointer_mut(&pointer) {
            // The root itself, or a value already nulled: nothing more to drop here.
            _ if pointer.is_empty() || dropped.len() >= LENIENT_TRIES => false,
            Some(slot) if !already && !slot.is_null() => {
                *slot = serde_json::Value::Null;
                true
            }
            // Null does not fit either: remove the key (its default applies).
            Some(_) => match pointer.rsplit_once('/') {
                Some((parent, key)) => v
                    .pointer_mut(parent)
                    .and_then(|p| p.as_object_mut())
                    .and_then(|o| o.remove(&key.replace("~1", "/").replace("~0", "~")))
                    .is_some(),
                None => false,
            },
            None => false,
        };
        if !fixed {
            return Err(err.into_inner());
        }
        if !already {
            dropped.push(pointer);
        }
    }
}

/// The image id an import's progress message names: `{"status": "sha256:..."}` from Docker,
/// the same with `id` from Podman.
fn imported_id(step: &bollard::models::CreateImageInfo) -> Option<String> {
    [step.id.as_deref(), step.status.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| {
            s.strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .map(str::to_string)
}

/// Containers and images netmoded creates itself (probe containers, the probe image).
impl Engine {
    pub async fn image_exists(&self, name: &str) -> Result<bool> {
        match Compat::new(self.docker.inspect_image(name)).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// `docker import` of a root filesystem tarball, with no name and no Dockerfile changes
    /// (Podman's compatible API takes one at most: containers made from the image set their
    /// entrypoint and environment themselves); the new image's id, which `tag_image` then
    /// names. Unnamed, because an import with a name is not safe with two importers on one
    /// engine: Podman's compatible API (4.3) ignores the `tag` of an import and names every
    /// import `repo:latest`, a name that moves from one import to the next.
    pub async fn import_image(&self, tar: hyper::body::Bytes) -> Result<String> {
        let opts = CreateImageOptionsBuilder::new().from_src("-").build();
        let body = bollard::body_full(tar);
        let mut progress = std::pin::pin!(compat_stream(self.docker.create_image(
            Some(opts),
            Some(body),
            None
        )));
        let mut id = None;
        while let Some(step) = progress.next().await {
            let step = step?;
            if let Some(i) = imported_id(&step) {
                id = Some(i);
            }
        }
        id.ok_or_else(|| DockerError::Ended("the engine named no id for the imported image".into()))
    }

    /// `docker tag ID repo:tag` (the name moves to this image if another holds it).
    pub async fn tag_image(&self, id: &str, repo: &str, tag: &str) -> Result<()> {
        let opts = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        Compat::new(self.docker.tag_image(id, Some(opts))).await?;
        Ok(())
    }

    /// The images of `repo`, each with its `repo:tag` names.
    pub async fn image_tags(&self, repo: &str) -> Result<Vec<Vec<String>>> {
        let filters = HashMap::from([("reference", vec![repo])]);
        let opts = ListImagesOptionsBuilder::new().filters(&filters).build();
        let list = Compat::new(self.docker.list_images(Some(opts))).await?;
        Ok(list.into_iter().map(|i| i.repo_tags).collect())
    }

    pub async fn remove_image(&self, name: &str) -> Result<()> {
        Compat::new(self.docker.remove_image(
            name,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        ))
        .await?;
        Ok(())
    }

    /// Create (not start) a container; returns its id.
    pub async fn create_container(&self, name: &str, body: ContainerCreateBody) -> Result<String> {
        let opts = CreateContainerOptionsBuilder::new().name(name).build();
        Ok(Compat::new(self.docker.create_container(Some(opts), body))
            .await?
            .id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        Compat::new(self.docker.start_container(id, None)).await?;
        Ok(())
    }

    /// Wait for the container to exit; its exit code.
    pub async fn wait_container(&self, id: &str) -> Result<i64> {
        let mut s = std::pin::pin!(compat_stream(self.docker.wait_container(id, None)));
        match s.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e.into()),
            None => Err(DockerError::Ended(format!("wait for {id}: no answer"))),
        }
    }

    /// What the container wrote to stdout.
    pub async fn stdout(&self, id: &str) -> Result<String> {
        let opts = LogsOptionsBuilder::new().stdout(true).stderr(false).build();
        let mut s = std::pin::pin!(compat_stream(self.docker.logs(id, Some(opts))));
        let mut out = String::new();
        while let Some(chunk) = s.next().await {
            if let bollard::container::LogOutput::StdOut { message } = chunk? {
                out.push_str(&String::from_utf8_lossy(&message));
            }
        }
        Ok(out)
    }

    /// `docker rm -f`; a container already gone is not an error.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::new().force(true).build();
        match Compat::new(self.docker.remove_container(id, Some(opts))).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal already in progress"
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Ids of all containers (running or not) carrying `label=value`.
    pub async fn containers_labelled(&self, label: &str, value: &str) -> Result<Vec<String>> {
        let f = format!("{label}={value}");
        let filters = HashMap::from([("label", vec![f.as_str()])]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = Compat::new(self.docker.list_containers(Some(opts))).await?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }
}

/// Operations on users' containers, for recreating one in another mode: each does one
/// Docker call and never removes anything.
impl Engine {
    /// `docker stop`: the container's stop signal, then SIGKILL after `timeout_s` seconds
    /// (`None`: the container's own `StopTimeout`, else the engine's default). A container
    /// that is already stopped is not an error.
    pub async fn stop_container(&self, id: &str, timeout_s: Option<i32>) -> Result<()> {
        let mut b = StopContainerOptionsBuilder::new();
        if let Some(t) = timeout_s {
            b = b.t(t);
        }
        match Compat::new(self.docker.stop_container(id, Some(b.build()))).await {
            Ok(()) => Ok(()),
            // 304: not running.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// `docker rename`.
    pub async fn rename_container(&self, id: &str, name: &str) -> Result<()> {
        let opts = RenameContainerOptions {
            name: name.to_string(),
        };
        Compat::new(self.docker.rename_container(id, opts)).await?;
        Ok(())
    }

    /// One request in the engine's own JSON (`raw`).
    async fn raw(
        &self,
        method: hyper::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        raw::request(&self.socket, self.timeout, method, path, body).await
    }

    /// `docker inspect` as the engine's own JSON (what the apply spec reads, raw: see `raw`);
    /// `None` if gone.
    pub async fn inspect_json(&self, id: &str) -> Result<Option<serde_json::Value>> {
        self.inspect_at(format!("/containers/{}/json", raw::encode(id)))
            .await
    }

    /// The Config of an image, as the engine's JSON (`null` fields where the image sets none).
    pub async fn image_config(&self, image: &str) -> Result<serde_json::Value> {
        let path = format!("/images/{}/json", raw::encode(image));
        let v = self.raw(hyper::Method::GET, &path, None).await?;
        Ok(v["Config"].clone())
    }

    /// The id of image `name` (`sha256:...`), `None` if no such image.
    pub async fn image_id(&self, name: &str) -> Result<Option<String>> {
        match Compat::new(self.docker.inspect_image(name)).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `docker network connect NETWORK ID` with endpoint settings (the engine's JSON).
    pub async fn connect_network(
        &self,
        network: &str,
        id: &str,
        endpoint: serde_json::Value,
    ) -> Result<()> {
        let path = format!("/networks/{}/connect", raw::encode(network));
        let body = serde_json::json!({"Container": id, "EndpointConfig": endpoint});
        self.raw(hyper::Method::POST, &path, Some(&body)).await?;
        Ok(())
    }

    /// Create from a create request in the engine's JSON (Config fields, HostConfig,
    /// NetworkingConfig), sent as it is; returns the id.
    pub async fn create_json(&self, name: &str, body: serde_json::Value) -> Result<String> {
        let path = format!("/containers/create?name={}", raw::encode(name));
        let v = self.raw(hyper::Method::POST, &path, Some(&body)).await?;
        v["Id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| DockerError::Ended(format!("create {name}: no id in {v}")))
    }

    /// `docker inspect --size`: inspect with `SizeRw` (bytes in the writable layer) and
    /// `SizeRootFs`; `None` if gone. The engine walks the layer for this, so it is asked only
    /// when a change is planned.
    pub async fn inspect_sized(&self, id: &str) -> Result<Option<serde_json::Value>> {
        self.inspect_at(format!("/containers/{}/json?size=1", raw::encode(id)))
            .await
    }

    /// A GET that answers 404 for a container that is gone: `None`.
    async fn inspect_at(&self, path: String) -> Result<Option<serde_json::Value>> {
        match self.raw(hyper::Method::GET, &path, None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `docker diff`: the paths the container changed in its writable layer, each with
    /// Docker's kind (0 changed, 1 added, 2 deleted).
    pub async fn changes(&self, id: &str) -> Result<Vec<(u8, String)>> {
        let path = format!("/containers/{}/changes", raw::encode(id));
        let v = self.raw(hyper::Method::GET, &path, None).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| Some((c["Kind"].as_u64()? as u8, c["Path"].as_str()?.to_string())))
            .collect())
    }

    /// Every container, running or not, as the engine's JSON listing.
    pub async fn list_all_json(&self) -> Result<Vec<serde_json::Value>> {
        let v = self
            .raw(hyper::Method::GET, "/containers/json?all=1", None)
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `docker stop` that waits as long as the container's own stop takes: its stop signal,
    /// then SIGKILL after its own stop timeout (the engine's), with `wait` for the answer
    /// instead of the generic request timeout. A container already stopped is not an error.
    pub async fn stop_waiting(&self, id: &str, wait: Duration) -> Result<()> {
        let path = format!("/containers/{}/stop", raw::encode(id));
        match raw::request(&self.socket, wait, hyper::Method::POST, &path, None).await {
            Ok(_) => Ok(()),
            Err(DockerError::Api { status: 304, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `docker commit` of a stopped container (no pause): its writable layer becomes an image
    /// `repo:tag`, labelled; returns the image id.
    pub async fn commit(
        &self,
        id: &str,
        repo: &str,
        tag: &str,
        labels: serde_json::Value,
        wait: Duration,
    ) -> Result<String> {
        let path = format!(
            "/commit?container={}&repo={}&tag={}&pause=0",
            raw::encode(id),
            raw::encode(repo),
            raw::encode(tag)
        );
        let body = serde_json::json!({ "Labels": labels });
        let v = raw::request(&self.socket, wait, hyper::Method::POST, &path, Some(&body)).await?;
        v["Id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| DockerError::Ended(format!("commit {id}: no id in {v}")))
    }

    /// Remove an image by id (its tags with it); an image already gone is not an error, one
    /// still used by a container is (the engine refuses: nothing in use is ever removed).
    pub async fn remove_image_id(&self, id: &str) -> Result<()> {
        self.delete_unless_gone(format!("/images/{}", raw::encode(id)))
            .await
    }

    /// A DELETE for which 404 (already gone) is success.
    async fn delete_unless_gone(&self, path: String) -> Result<()> {
        match self.raw(hyper::Method::DELETE, &path, None).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `docker rm -f -v` of a container netmoded made itself (with the anonymous volumes the
    /// engine made for it, which nobody else holds); already gone is not an error.
    pub async fn remove_own_container_and_volumes(&self, id: &str) -> Result<()> {
        self.delete_unless_gone(format!("/containers/{}?force=1&v=1", raw::encode(id)))
            .await
    }

    /// `docker update --restart`: set a container's restart policy (to keep the engine from
    /// restarting a container set aside, and to give it back afterwards).
    pub async fn set_restart_policy(&self, id: &str, policy: RestartPolicy) -> Result<()> {
        let body = ContainerUpdateBody {
            restart_policy: Some(policy),
            ..Default::default()
        };
        Compat::new(self.docker.update_container(id, body)).await?;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::CreateImageInfo;

    fn info(json: &str) -> CreateImageInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn what_the_models_do_not_know_is_dropped_not_fatal() {
        let v = serde_json::json!({
            "Id": "abc",
            "Name": "/web",
            // Podman's states beside Docker's.
            "State": {"Status": "stopped", "Running": false, "Pid": 0},
            "HostConfig": {"NetworkMode": "bridge", "RestartPolicy": {"Name": "sometimes"}},
            "Config": {"Labels": {"a.b/c~d": "1"}},
            "Mounts": [{"Type": "volume", "Destination": "/data", "RW": "yes"}],
            "NetworkSettings": {"Networks": null},
        });
        let (c, dropped) = lenient::<ContainerInspectResponse>(v).unwrap();
        assert_eq!(c.id.as_deref(), Some("abc"));
        assert_eq!(c.state.as_ref().unwrap().status, None);
        assert_eq!(c.state.as_ref().unwrap().running, Some(false));
        assert_eq!(
            c.host_config.as_ref().unwrap().network_mode.as_deref(),
            Some("bridge")
        );
        assert_eq!(
            c.mounts.as_ref().unwrap()[0].destination.as_deref(),
            Some("/data")
        );
        assert_eq!(
            c.config
                .unwrap()
                .labels
                .unwrap()
                .get("a.b/c~d")
                .map(String::as_str),
            Some("1")
        );
        let mut d = dropped.clone();
        d.sort();
        assert_eq!(
            d,
            [
                "/HostConfig/RestartPolicy/Name",
                "/Mounts/0/RW",
                "/State/Status"
            ],
            "{dropped:?}"
        );
        // What cannot be a container at all stays an error.
        assert!(lenient::<ContainerInspectResponse>(serde_json::json!([1])).is_err());
        assert!(lenient::<ContainerInspectResponse>(serde_json::json!("x")).is_err());
    }

    #[test]
    fn an_import_names_its_image_by_status_or_id() {
        let h = "61fd38803491e9a1818e10fee5ecac2af843614fd6b093e176daf90f3d8e1722";
        // Docker 20.10 and 26.
        let docker = info(&format!(r#"{{"status":"sha256:{h}\n"}}"#));
        assert_eq!(imported_id(&docker), Some(format!("sha256:{h}")));
        // Podman 4.3.
        let podman = info(&format!(
            r#"{{"status":"sha256:{h}","progress":"","progressDetail":{{}},"id":"sha256:{h}"}}"#
        ));
        assert_eq!(imported_id(&podman), Some(format!("sha256:{h}")));
        // Progress lines name no image.
        assert_eq!(
            imported_id(&info(r#"{"status":"Downloading","id":"abc"}"#)),
            None
        );
        assert_eq!(imported_id(&info(r#"{"status":"sha256:12"}"#)), None);
    }
}
