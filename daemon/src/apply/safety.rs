//! What a change must not destroy, read from the engine's JSON without I/O: the files a
//! container wrote into its own filesystem (its writable layer, which removing the old
//! container would delete), and the containers that depend on it (which recreating it would
//! stop or cut off). Unit-tested here; `txn::plan` asks the engine and refuses with these.

use serde_json::Value;

/// Files in the container's writable layer: what `docker diff` and `SizeRw` show.
#[derive(Debug, Clone, PartialEq)]
pub struct WritableLayer {
    /// `SizeRw`: bytes of the files in the layer (0 when only directories or deletions).
    pub bytes: u64,
    /// Paths changed, added or deleted, leaves only (a directory listed because a file in it
    /// changed is not listed again), in the engine's order.
    pub paths: Vec<String>,
}

impl WritableLayer {
    /// "12.3 KiB in 4 paths: /data/db.sqlite, /etc/app.conf, ..." (at most `shown` paths).
    pub fn describe(&self, shown: usize) -> String {
        let mut list: Vec<&str> = self.paths.iter().take(shown).map(String::as_str).collect();
        if self.paths.len() > shown {
            list.push("...");
        }
        format!(
            "{} in {} path{} ({})",
            human_bytes(self.bytes),
            self.paths.len(),
            if self.paths.len() == 1 { "" } else { "s" },
            list.join(", ")
        )
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Whether `dir` is `path` or one of its parents.
fn is_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// The files the engine writes for a container and binds over the paths where they are read
/// (`HostsPath` at /etc/hosts, ...). Docker makes their mount points in a layer of its own;
/// Podman makes them (and /etc) in the writable layer, where `changes` shows only `A /etc`.
const ENGINE_FILES: [(&str, &str); 3] = [
    ("HostsPath", "/etc/hosts"),
    ("ResolvConfPath", "/etc/resolv.conf"),
    ("HostnamePath", "/etc/hostname"),
];

/// Where `inspect`'s container has something mounted (volumes, binds, tmpfs, the engine's
/// own /etc/hosts and the like): the engine makes these paths (and their parents) in the
/// writable layer when the image lacks them, and they hold nothing of the container's own.
pub fn mount_points(inspect: &Value) -> Vec<String> {
    let mut out: Vec<String> = inspect["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["Destination"].as_str().map(String::from))
        .collect();
    out.extend(
        inspect["HostConfig"]["Tmpfs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone()),
    );
    out.extend(
        ENGINE_FILES
            .iter()
            .filter(|(key, _)| inspect[key].as_str().is_some_and(|p| !p.is_empty()))
            .map(|(_, at)| at.to_string()),
    );
    out
}

/// The container's writable layer, from `SizeRw` and `docker diff` (`changes`: kind and
/// path); `None` when it holds nothing. A path is kept only if it is a leaf (`C /tmp` beside
/// `A /tmp/f` is the directory of the file, not a change of its own) and not a mount point
/// or a directory the engine made on the way to one (`mounts`).
pub fn writable_layer(
    size_rw: Option<u64>,
    changes: &[(u8, String)],
    mounts: &[String],
) -> Option<WritableLayer> {
    let paths: Vec<String> = changes
        .iter()
        .filter(|(_, path)| !mounts.iter().any(|m| is_within(m, path)))
        .filter(|(kind, path)| {
            // A changed directory whose content is listed too is only the way to it.
            !(*kind == 0
                && changes.iter().any(|(_, other)| {
                    other.len() > path.len()
                        && other.starts_with(path.as_str())
                        && (path.ends_with('/') || other.as_bytes()[path.len()] == b'/')
                }))
        })
        .map(|(_, path)| path.clone())
        .collect();
    // The paths decide (`SizeRw` also counts what the engine made for mount points).
    let bytes = size_rw.unwrap_or(0);
    (!paths.is_empty()).then_some(WritableLayer { bytes, paths })
}

/// A container that depends on the one being changed, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependent {
    pub name: String,
    pub running: bool,
    /// `--network container:X`, `--pid container:X`, `--ipc container:X`, `--volumes-from X`,
    /// `--link X`.
    pub how: String,
}

impl std::fmt::Display for Dependent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {})",
            self.name,
            self.how,
            if self.running { "running" } else { "stopped" }
        )
    }
}

/// Which of `others` (full `docker inspect` of every other container, running or stopped)
/// depend on the container `id` named `name`: they share its network, PID or IPC namespace,
/// mount its volumes, or link to it. Recreating it would stop them, or leave them pointing at
/// a container that no longer exists.
pub fn dependents(id: &str, name: &str, others: &[Value]) -> Vec<Dependent> {
    let name = name.trim_start_matches('/');
    // The engine keeps what the user typed: the full id, a prefix of it, or the name.
    let is_me = |r: &str| {
        let r = r.trim_start_matches('/');
        !r.is_empty() && (r == name || (r.len() >= 12 && id.starts_with(r)))
    };
    let mut out = Vec::new();
    for c in others {
        if c["Id"].as_str() == Some(id) {
            continue;
        }
        let hc = &c["HostConfig"];
        let mut how = Vec::new();
        for (field, flag) in [
            ("NetworkMode", "--network"),
            ("PidMode", "--pid"),
            ("IpcMode", "--ipc"),
        ] {
            if let Some(r) = hc[field]
                .as_str()
                .and_then(|m| m.strip_prefix("container:"))
                && is_me(r)
            {
                how.push(format!("{flag} container:{name}"));
            }
        }
        for v in hc["VolumesFrom"].as_array().into_iter().flatten() {
            if let Some(r) = v.as_str().map(|v| v.split(':').next().unwrap_or(v))
                && is_me(r)
            {
                how.push(format!("--volumes-from {name}"));
            }
        }
        for l in hc["Links"].as_array().into_iter().flatten() {
            // Inspect shows "/target:/this/alias".
            if let Some(r) = l.as_str().map(|l| l.split(':').next().unwrap_or(l))
                && is_me(r)
            {
                how.push(format!("--link {name}"));
            }
        }
        if !how.is_empty() {
            out.push(Dependent {
                name: c["Name"]
                    .as_str()
                    .unwrap_or("?")
                    .trim_start_matches('/')
                    .to_string(),
                running: c["State"]["Running"] == Value::Bool(true),
                how: how.join(", "),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_empty_layer_is_none_and_directories_on_the_way_are_not_listed() {
        assert_eq!(writable_layer(Some(0), &[], &[]), None);
        assert_eq!(writable_layer(None, &[], &[]), None);
        assert_eq!(writable_layer(Some(4096), &[], &[]), None);
        let l = writable_layer(
            Some(3),
            &[
                (0, "/tmp".into()),
                (1, "/tmp/f".into()),
                (0, "/etc".into()),
                (0, "/etc/app.conf".into()),
                (2, "/var/cache".into()),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(l.paths, vec!["/tmp/f", "/etc/app.conf", "/var/cache"]);
        assert_eq!(l.bytes, 3);
        // A directory named like the start of another is not its parent.
        let l = writable_layer(None, &[(0, "/data".into()), (1, "/database".into())], &[]).unwrap();
        assert_eq!(l.paths, vec!["/data", "/database"]);
        // A deletion alone holds no bytes and is still a change a recreation would undo.
        assert!(writable_layer(Some(0), &[(2, "/etc/motd".into())], &[]).is_some());
    }

    #[test]
    fn mount_points_and_the_directories_made_for_them_are_not_the_containers() {
        let inspect = json!({
            "Mounts": [{"Destination": "/anon"}, {"Destination": "/srv/data"}],
            "HostConfig": {"Tmpfs": {"/run": ""}}
        });
        let m = mount_points(&inspect);
        assert_eq!(m, vec!["/anon", "/srv/data", "/run"]);
        let changes: Vec<(u8, String)> = [(1, "/anon"), (1, "/srv"), (1, "/srv/data"), (1, "/run")]
            .iter()
            .map(|(k, p)| (*k, p.to_string()))
            .collect();
        assert_eq!(writable_layer(Some(0), &changes, &m), None);
        // A file beside a mount point is the container's.
        let mut more = changes.clone();
        more.push((1, "/srv/app.db".into()));
        let l = writable_layer(Some(5), &more, &m).unwrap();
        assert_eq!(l.paths, vec!["/srv/app.db"]);
        // A mount point's name as a prefix of another path is not its parent.
        assert!(writable_layer(None, &[(1, "/anonymous".into())], &m).is_some());
    }

    #[test]
    fn the_files_podman_makes_in_etc_are_not_the_containers() {
        // Podman 4.3, an image without /etc: `changes` lists only the directory it made for
        // the files it binds there.
        let inspect = json!({
            "Mounts": [{"Destination": "/data"}],
            "HostsPath": "/run/containers/storage/overlay-containers/x/userdata/hosts",
            "ResolvConfPath": "/run/containers/storage/overlay-containers/x/userdata/resolv.conf",
            "HostnamePath": "/run/containers/storage/overlay-containers/x/userdata/hostname",
        });
        let m = mount_points(&inspect);
        let made = [(1, "/data".to_string()), (1, "/etc".to_string())];
        assert_eq!(writable_layer(Some(16), &made, &m), None);
        // A file the container wrote there is its own.
        let mut more = made.to_vec();
        more.push((1, "/etc/app.conf".into()));
        assert_eq!(
            writable_layer(Some(18), &more, &m).unwrap().paths,
            vec!["/etc/app.conf"]
        );
        // Without the engine's files (a container with no network has none) /etc is kept.
        let none = mount_points(&json!({"HostsPath": ""}));
        assert!(writable_layer(Some(0), &made, &none).is_some());
    }

    #[test]
    fn the_description_gives_the_size_and_a_few_paths() {
        let l = WritableLayer {
            bytes: 12 * 1024 + 300,
            paths: (0..5).map(|i| format!("/data/{i}")).collect(),
        };
        assert_eq!(
            l.describe(3),
            "12.3 KiB in 5 paths (/data/0, /data/1, /data/2, ...)"
        );
    }

    fn other(name: &str, running: bool, hc: Value) -> Value {
        json!({"Id": format!("{name}-id"), "Name": format!("/{name}"),
               "State": {"Running": running}, "HostConfig": hc})
    }

    #[test]
    fn every_kind_of_dependent_is_found_running_or_stopped() {
        let id = "cafe0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab";
        let others = vec![
            other(
                "sidecar",
                true,
                json!({"NetworkMode": format!("container:{id}")}),
            ),
            other("debugger", false, json!({"PidMode": "container:web"})),
            other("shm", true, json!({"IpcMode": "container:cafe01234567"})),
            other("backup", false, json!({"VolumesFrom": ["web:ro"]})),
            other("client", true, json!({"Links": ["/web:/client/web"]})),
            other(
                "alone",
                true,
                json!({"NetworkMode": "bridge", "Links": ["/db:/alone/db"]}),
            ),
            // A name made of hex digits that is a prefix of the id, but too short to be one
            // the engine took as an id: it names another container.
            other("near", true, json!({"NetworkMode": "container:cafe"})),
        ];
        let d = dependents(id, "/web", &others);
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["sidecar", "debugger", "shm", "backup", "client"]
        );
        assert_eq!(
            d[0].to_string(),
            "sidecar (--network container:web, running)"
        );
        assert_eq!(d[1].to_string(), "debugger (--pid container:web, stopped)");
        assert_eq!(d[3].how, "--volumes-from web");
        assert_eq!(d[4].how, "--link web");
        // The container itself is not its own dependent.
        let me = other("web", true, json!({"NetworkMode": "container:web"}));
        let mut me = me;
        me["Id"] = json!(id);
        assert!(dependents(id, "web", &[me]).is_empty());
    }
}
