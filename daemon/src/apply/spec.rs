//! The create request of a container in another network mode, built from the container's own
//! `docker inspect`, without I/O. Unit-tested here from real inspect output.
//!
//! What defines the container is kept: image (the same image id), cmd, entrypoint, env,
//! labels, user, working dir, mounts and binds, anonymous volumes (re-attached by their
//! volume names, never new empty ones), tmpfs, restart policy, resources and limits, devices,
//! capabilities, security options, sysctls, ulimits, init, healthcheck, stop signal and
//! timeout, log config, and hostname, DNS and extra hosts where the mode allows them.
//! What the engine or the image filled in is not frozen: a HostConfig field equal to what a
//! fresh container gets on this engine (`Defaults::host_config`, read from a container
//! created for the purpose) and a Config field equal to the image's are left out, so the new
//! container gets the defaults of the day.
//!
//! Host mode cannot have port bindings, a MAC address, endpoint settings, aliases or links;
//! they are dropped and recorded in a label (`RESTORE_LABEL`) that the way back reads, so
//! that bridge -> host -> bridge gives the original back. A hostname, DNS servers, search
//! domains and options and extra hosts are kept: the engine accepts them in host mode (it
//! writes the container's own /etc/hostname, /etc/resolv.conf and /etc/hosts).

use netmode_advisor::api::ModeKind;
use serde_json::{Map, Value, json};

use crate::mode::{Placement, unset as is_empty};
pub use crate::mode::{RESTORE_LABEL, Restore};

/// On a container netmode made: the change that made it (`a<secs>-<n>`). Rollback and
/// recovery find the container a change created by this label and its full id, never by
/// name (a name can be taken by another container meanwhile, and the engine also resolves
/// id prefixes: a name like `cafe` can mean someone else's container).
pub const APPLY_ID_LABEL: &str = "netmode.apply.id";

/// netmode's own labels: bookkeeping, not part of what the user asked for.
fn is_netmode_label(k: &str) -> bool {
    k == RESTORE_LABEL || k == APPLY_ID_LABEL
}

/// Why no create request can be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("docker inspect lacks {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Refused(String),
}

/// What a container gets when nobody asks for anything: the engine's HostConfig for a fresh
/// container of the same image, and the image's own Config.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub host_config: Value,
    pub image_config: Value,
    /// The host's hostname: what the engine shows as a host-mode container's hostname when
    /// none was given.
    pub host_hostname: String,
    /// The engine does not report what a container's endpoints were created with (Podman:
    /// `IPAMConfig` is null and no MAC address is shown as configured, even for `--ip` and
    /// `--mac-address`), only the addresses they have: those are asked for again.
    pub endpoints_unreported: bool,
    /// The engine adds the container's hostname to its aliases on every network by itself
    /// (Podman 5): passed back, it would be there twice.
    pub hostname_alias_added: bool,
}

impl Defaults {
    /// What the engine reports and adds by itself, from what it says it is.
    pub fn for_engine(mut self, engine: &crate::docker::EngineVersion) -> Defaults {
        let podman = engine.engine == "podman";
        self.endpoints_unreported = podman;
        self.hostname_alias_added = podman && engine.major() >= 5;
        self
    }
}

/// The new container: its create body, the networks to connect before it starts, and what
/// was dropped (in words).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The create request: Config fields, `HostConfig`, `NetworkingConfig`.
    pub create: Value,
    /// Networks beyond the first, with their endpoint settings (API 1.41 creates with one).
    pub connect: Vec<(String, Value)>,
    pub dropped: Vec<String>,
}

/// Config fields the create request carries (what inspect shows beyond these is state).
const CONFIG_KEYS: &[&str] = &[
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
];

fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || (is_empty(a) && is_empty(b)),
        (Some(v), None) | (None, Some(v)) => is_empty(v),
        (None, None) => true,
    }
}

fn short_id(inspect: &Value) -> String {
    inspect["Id"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(12)
        .collect()
}

/// The entries of object `v` that `image` (the image's object of the same field) does not
/// have: with `same_value`, an entry counts as the image's only when its value is the same.
/// `skip` drops further entries by key.
fn minus_image(
    v: &Value,
    image: Option<&Value>,
    skip: impl Fn(&str) -> bool,
    same_value: bool,
) -> Value {
    let image = image
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mine: Map<String, Value> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, val)| match image.get(*k) {
            Some(iv) => same_value && iv != *val,
            None => true,
        })
        .filter(|(k, _)| !skip(k))
        .map(|(k, val)| (k.clone(), val.clone()))
        .collect();
    Value::Object(mine)
}

/// The container's create request as its user asked for it: inspect's Config and HostConfig
/// with what the image and the engine filled in taken out, anonymous volumes bound by name,
/// and its networks' endpoint settings. `image` is what to create from (the same image id).
pub fn user_request(inspect: &Value, defaults: &Defaults, image: &str) -> Result<Value, SpecError> {
    let config = inspect["Config"]
        .as_object()
        .ok_or(SpecError::Missing("Config"))?;
    let host_config = inspect["HostConfig"]
        .as_object()
        .ok_or(SpecError::Missing("HostConfig"))?;
    if host_config.get("AutoRemove") == Some(&Value::Bool(true)) {
        return Err(SpecError::Refused(
            "it was started with --rm: stopping it would make Docker remove it and its anonymous \
             volumes, so netmode does not recreate it"
                .into(),
        ));
    }
    let image_config = defaults
        .image_config
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut out = Map::new();
    for key in CONFIG_KEYS {
        let Some(v) = config.get(*key) else { continue };
        let v = match *key {
            "Image" => json!(image),
            // The engine names a bridge container after its id; host mode shows the host's.
            "Hostname" if v.as_str() == Some(short_id(inspect).as_str()) => continue,
            // Host mode shows the host's own hostname unless one was given.
            "Hostname"
                if host_config.get("NetworkMode").and_then(Value::as_str) == Some("host")
                    && v.as_str() == Some(defaults.host_hostname.as_str()) =>
            {
                continue;
            }
            // Anonymous volumes are bound by name below; a Volumes entry would make new ones.
            "Volumes" => continue,
            "Env" => {
                let image_env: Vec<&Value> = image_config
                    .get("Env")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                let mine: Vec<Value> = v
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|e| !image_env.contains(e))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                json!(mine)
            }
            // Labels the image sets (with the same value) and exposed ports it declares are
            // the image's, not the user's.
            "Labels" => minus_image(v, image_config.get(*key), is_netmode_label, true),
            "ExposedPorts" => minus_image(v, image_config.get(*key), |_| false, false),
            // An entrypoint of the user's own resets the image's CMD at create: the command is
            // the user's too, even when it equals the image's.
            "Cmd"
                if !same(config.get("Entrypoint"), image_config.get("Entrypoint"))
                    && !is_empty(v) =>
            {
                v.clone()
            }
            // Set by the image (or defaulted by the engine): not the user's.
            "Cmd" | "Entrypoint" | "WorkingDir" | "User" | "Healthcheck" | "StopSignal"
            | "Shell" | "OnBuild" | "ArgsEscaped"
                if same(Some(v), image_config.get(*key)) =>
            {
                continue;
            }
            // `docker run -d` sets these; the create API's defaults are the same.
            "AttachStdout" | "AttachStderr" | "AttachStdin" => continue,
            _ => v.clone(),
        };
        if !is_empty(&v) || *key == "Image" {
            out.insert((*key).to_string(), v);
        }
    }

    // HostConfig: what differs from a fresh container's.
    let fresh = defaults
        .host_config
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut hc = Map::new();
    for (k, v) in host_config {
        if k == "NetworkMode" || !same(Some(v), fresh.get(k)) {
            hc.insert(k.clone(), v.clone());
        }
    }
    // `--cpus` is NanoCpus. Podman 5 also shows the CpuPeriod and CpuQuota it made of it, and
    // refuses a create request that has both ("NanoCpus conflicts with CpuPeriod and
    // CpuQuota"); Docker refuses them together too. NanoCpus is what the user gave.
    if hc
        .get("NanoCpus")
        .and_then(Value::as_i64)
        .is_some_and(|n| n > 0)
    {
        hc.remove("CpuPeriod");
        hc.remove("CpuQuota");
    }
    // Anonymous volumes (and image VOLUMEs) re-attached by name.
    let mut binds: Vec<Value> = host_config
        .get("Binds")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let covered: Vec<String> = binds
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|b| b.split(':').nth(1).map(str::to_string))
        .chain(
            host_config
                .get("Mounts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| m["Target"].as_str().map(str::to_string)),
        )
        .collect();
    for m in inspect["Mounts"].as_array().into_iter().flatten() {
        let (Some("volume"), Some(name), Some(dest)) = (
            m["Type"].as_str(),
            m["Name"].as_str(),
            m["Destination"].as_str(),
        ) else {
            continue;
        };
        if covered.iter().any(|c| c == dest) {
            continue;
        }
        let ro = if m["RW"] == Value::Bool(false) {
            ":ro"
        } else {
            ""
        };
        binds.push(json!(format!("{name}:{dest}{ro}")));
    }
    if !binds.is_empty() {
        hc.insert("Binds".into(), Value::Array(binds));
    }
    // `--mount type=volume,dst=/data` without a source: the engine named a new volume; name
    // it, or a new empty one would be made and the old one left for `docker volume prune`.
    if let Some(mounts) = hc.get_mut("Mounts").and_then(Value::as_array_mut) {
        for m in mounts.iter_mut() {
            if m["Type"].as_str() != Some("volume") || !is_empty(&m["Source"]) {
                continue;
            }
            let Some(target) = m["Target"].as_str() else {
                continue;
            };
            let name = inspect["Mounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|x| x["Type"] == "volume" && x["Destination"].as_str() == Some(target))
                .and_then(|x| x["Name"].as_str());
            match name {
                Some(name) => m["Source"] = json!(name),
                None => {
                    return Err(SpecError::Refused(format!(
                        "the anonymous volume mounted at {target} cannot be found in its mounts"
                    )));
                }
            }
        }
    }
    // Links come back from inspect as "/db:/web/db"; create takes "db:db".
    if let Some(links) = hc.get("Links").and_then(Value::as_array).cloned() {
        let fixed: Vec<Value> = links
            .iter()
            .filter_map(Value::as_str)
            .map(|l| {
                let (target, alias) = l.split_once(':').unwrap_or((l, l));
                let target = target.trim_start_matches('/');
                let alias = alias.rsplit('/').next().unwrap_or(alias);
                json!(format!("{target}:{alias}"))
            })
            .collect();
        hc.insert("Links".into(), Value::Array(fixed));
    }
    out.insert("HostConfig".into(), Value::Object(hc));

    // Networks: endpoint settings the user gave (static IPs, aliases but the automatic one,
    // driver options).
    let mut nets = Map::new();
    let auto_alias = short_id(inspect);
    let hostname = config.get("Hostname").and_then(Value::as_str).unwrap_or("");
    for (name, ep) in inspect["NetworkSettings"]["Networks"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let mut e = Map::new();
        if let Some(ipam) = ep.get("IPAMConfig").filter(|v| !is_empty(v)) {
            e.insert("IPAMConfig".into(), ipam.clone());
        } else if defaults.endpoints_unreported {
            // A static address cannot be told from an allocated one here: the container gets
            // back the addresses and MAC address it has (what anything pointing at it knows).
            let mut ipam = Map::new();
            for (from, to) in [
                ("IPAddress", "IPv4Address"),
                ("GlobalIPv6Address", "IPv6Address"),
            ] {
                if let Some(a) = ep.get(from).filter(|v| !is_empty(v)) {
                    ipam.insert(to.into(), a.clone());
                }
            }
            if !ipam.is_empty() {
                e.insert("IPAMConfig".into(), Value::Object(ipam));
            }
        }
        if let Some(mac) = ep
            .get("MacAddress")
            .filter(|v| defaults.endpoints_unreported && !is_empty(v))
        {
            e.insert("MacAddress".into(), mac.clone());
        }
        let aliases: Vec<Value> = ep["Aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a.as_str() != Some(auto_alias.as_str()))
            .filter(|a| !(defaults.hostname_alias_added && a.as_str() == Some(hostname)))
            .cloned()
            .collect();
        if !aliases.is_empty() {
            e.insert("Aliases".into(), Value::Array(aliases));
        }
        if let Some(opts) = ep.get("DriverOpts").filter(|v| !is_empty(v)) {
            e.insert("DriverOpts".into(), opts.clone());
        }
        // Docker 28 (API 1.48): which network gives the default route. Absent before.
        if let Some(p) = ep.get("GwPriority").filter(|v| !is_empty(v)) {
            e.insert("GwPriority".into(), p.clone());
        }
        nets.insert(name.clone(), Value::Object(e));
    }
    out.insert("Networks".into(), Value::Object(nets));
    Ok(Value::Object(out))
}

/// The restore record a host-mode container netmode made carries, if any.
pub fn restore_of(inspect: &Value) -> Option<Restore> {
    let s = inspect["Config"]["Labels"][RESTORE_LABEL].as_str()?;
    serde_json::from_str(s).ok()
}

/// The container described by `user` (from `user_request`) in `target` mode. `restore`: what
/// an earlier switch to host recorded, for the way back.
pub fn for_mode(
    user: &Value,
    target: ModeKind,
    restore: Option<&Restore>,
) -> Result<Plan, SpecError> {
    let mut body = user
        .as_object()
        .cloned()
        .ok_or(SpecError::Missing("request"))?;
    let hc = body
        .remove("HostConfig")
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let networks = body
        .remove("Networks")
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let driver = crate::mode::driver_for(target).map_err(|r| SpecError::Refused(r.0))?;
    let mut p = Placement {
        body,
        host_config: hc,
        networks,
        dropped: Vec::new(),
        connect: Vec::new(),
        networking: None,
    };
    driver.place(&mut p, restore);
    let Placement {
        mut body,
        host_config: hc,
        dropped,
        connect,
        networking,
        ..
    } = p;
    body.retain(|_, v| !is_empty(v) || v.is_string());
    body.insert("HostConfig".into(), Value::Object(hc));
    if let Some(n) = networking {
        body.insert("NetworkingConfig".into(), n);
    }
    Ok(Plan {
        create: Value::Object(body),
        connect,
        dropped,
    })
}

/// The container as it is: its own request in its own mode (what a change is compared with).
pub fn as_is(user: &Value) -> Result<Plan, SpecError> {
    let mode = user["HostConfig"]["NetworkMode"]
        .as_str()
        .unwrap_or("default");
    if mode == "host" {
        let mut p = for_mode(user, ModeKind::Host, None)?;
        if let Some(l) = p.create["Labels"].as_object_mut() {
            l.remove(RESTORE_LABEL);
        }
        p.dropped.clear();
        return Ok(p);
    }
    let own = Restore {
        network_mode: mode.to_string(),
        networks: user["Networks"]
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        ..Default::default()
    };
    for_mode(user, ModeKind::Bridge, Some(&own))
}

/// A create request without netmode's own labels (for a diff the user reads).
pub fn without_netmode_labels(create: &Value) -> Value {
    let mut v = create.clone();
    if let Some(o) = v.as_object_mut() {
        if let Some(l) = o.get_mut("Labels").and_then(Value::as_object_mut) {
            l.retain(|k, _| !is_netmode_label(k));
        }
        if o.get("Labels").is_some_and(is_empty) {
            o.remove("Labels");
        }
    }
    v
}

/// Field-by-field difference between two create requests: `path: old -> new` lines.
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, x.get(k), y.get(k), out);
                }
            }
            _ if same(a, b) => {}
            _ => out.push(format!(
                "{path}: {} -> {}",
                a.map_or("(unset)".into(), |v| v.to_string()),
                b.map_or("(unset)".into(), |v| v.to_string())
            )),
        }
    }
    let mut out = Vec::new();
    walk("", Some(old), Some(new), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from `docker inspect` of a container run with
    /// `-v named:/named -v /anon -v /tmp/x:/bind --health-cmd true -e FOO=bar -l a=b
    /// --restart unless-stopped --cpus 0.5 -p 18080:80 --stop-timeout 3` on Docker 20.10.
    fn inspect() -> Value {
        json!({
            "Id": "cb75856fb89c0123456789abcdef0123456789abcdef0123456789abcdef0123",
            "Image": "sha256:ba5ff8c5c69d",
            "Config": {
                "Hostname": "cb75856fb89c", "Domainname": "", "User": "",
                "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
                "ExposedPorts": {"80/tcp": {}}, "Tty": false, "OpenStdin": false,
                "StdinOnce": false, "Env": ["PATH=/bin", "FOO=bar"], "Cmd": ["sleep", "1000"],
                "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 1000000000},
                "Image": "netmode-test-busybox:1", "Volumes": {"/anon": {}},
                "WorkingDir": "", "Entrypoint": null, "OnBuild": null,
                "Labels": {"a": "b", "from.image": "x"}, "StopTimeout": 3
            },
            "HostConfig": {
                "Binds": ["named:/named", "/tmp/x:/bind"],
                "LogConfig": {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}},
                "NetworkMode": "default",
                "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "18080"}]},
                "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
                "AutoRemove": false, "CgroupnsMode": "host", "IpcMode": "private",
                "ShmSize": 67108864, "Runtime": "runc", "ConsoleSize": [0, 0],
                "NanoCpus": 500000000, "Dns": [], "Links": null,
                "MaskedPaths": ["/proc/kcore"], "ReadonlyPaths": ["/proc/sys"]
            },
            "Mounts": [
                {"Type": "bind", "Source": "/tmp/x", "Destination": "/bind", "RW": true},
                {"Type": "volume", "Name": "0329abc", "Destination": "/anon", "RW": true},
                {"Type": "volume", "Name": "named", "Destination": "/named", "RW": true}
            ],
            "NetworkSettings": {"Networks": {"bridge": {
                "IPAMConfig": null, "Links": null, "Aliases": null, "IPAddress": "172.17.0.2"
            }}}
        })
    }

    fn defaults() -> Defaults {
        Defaults {
            host_config: json!({
                "Binds": null, "LogConfig": {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}},
                "NetworkMode": "none", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
                "AutoRemove": false, "CgroupnsMode": "host", "IpcMode": "private", "ShmSize": 67108864,
                "Runtime": "runc", "ConsoleSize": [0, 0], "NanoCpus": 0, "Dns": [],
                "MaskedPaths": ["/proc/kcore"], "ReadonlyPaths": ["/proc/sys"]
            }),
            image_config: json!({"Env": ["PATH=/bin"], "Labels": {"from.image": "x"}}),
            host_hostname: "gw-17".into(),
            ..Default::default()
        }
    }

    #[test]
    fn host_mode_keeps_hostname_dns_and_extra_hosts() {
        let mut i = inspect();
        i["Config"]["Hostname"] = json!("sensor");
        i["HostConfig"]["Dns"] = json!(["192.0.2.53"]);
        i["HostConfig"]["DnsSearch"] = json!(["lan"]);
        i["HostConfig"]["DnsOptions"] = json!(["ndots:1"]);
        i["HostConfig"]["ExtraHosts"] = json!(["broker:192.0.2.7"]);
        let u = user_request(&i, &defaults(), "img").unwrap();
        let host = for_mode(&u, ModeKind::Host, None).unwrap();
        assert_eq!(host.create["Hostname"], json!("sensor"));
        let hc = &host.create["HostConfig"];
        assert_eq!(hc["Dns"], json!(["192.0.2.53"]));
        assert_eq!(hc["DnsSearch"], json!(["lan"]));
        assert_eq!(hc["DnsOptions"], json!(["ndots:1"]));
        assert_eq!(hc["ExtraHosts"], json!(["broker:192.0.2.7"]));
        assert!(
            !host
                .dropped
                .iter()
                .any(|d| d.starts_with("Dns") || d.starts_with("Hostname"))
        );

        // A host-mode container's own hostname is its own; the host's is not.
        let mut h = inspect();
        h["HostConfig"]["NetworkMode"] = json!("host");
        h["Config"]["Hostname"] = json!("sensor");
        let u = user_request(&h, &defaults(), "img").unwrap();
        assert_eq!(u["Hostname"], json!("sensor"));
        h["Config"]["Hostname"] = json!("gw-17");
        let u = user_request(&h, &defaults(), "img").unwrap();
        assert!(u.get("Hostname").is_none(), "{u}");
    }

    #[test]
    fn cpus_given_as_nano_cpus_are_not_also_a_period_and_quota() {
        // Podman 5 shows `--cpus 0.5` as NanoCpus and as the period and quota it made of it.
        let mut i = inspect();
        i["HostConfig"]["CpuPeriod"] = json!(100000);
        i["HostConfig"]["CpuQuota"] = json!(50000);
        let u = user_request(&i, &defaults(), "img").unwrap();
        let hc = &u["HostConfig"];
        assert_eq!(hc["NanoCpus"], json!(500000000));
        assert!(
            hc.get("CpuPeriod").is_none() && hc.get("CpuQuota").is_none(),
            "{hc}"
        );
        // `--cpu-period/--cpu-quota` alone are the user's.
        i["HostConfig"]["NanoCpus"] = json!(0);
        let u = user_request(&i, &defaults(), "img").unwrap();
        assert_eq!(u["HostConfig"]["CpuQuota"], json!(50000));
    }

    #[test]
    fn an_anonymous_mount_volume_is_named_not_made_anew() {
        let mut i = inspect();
        i["HostConfig"]["Mounts"] = json!([{"Type": "volume", "Target": "/data"}]);
        i["Mounts"].as_array_mut().unwrap().push(json!(
            {"Type": "volume", "Name": "82ca1169", "Destination": "/data", "RW": true}
        ));
        let u = user_request(&i, &defaults(), "img").unwrap();
        assert_eq!(
            u["HostConfig"]["Mounts"],
            json!([{"Type": "volume", "Target": "/data", "Source": "82ca1169"}])
        );
        // Not bound a second time through Binds.
        let binds = u["HostConfig"]["Binds"].to_string();
        assert!(!binds.contains("/data"), "{binds}");
    }

    #[test]
    fn a_users_entrypoint_keeps_a_command_equal_to_the_images() {
        let mut d = defaults();
        d.image_config["Cmd"] = json!(["serve", "--port", "80"]);
        d.image_config["Entrypoint"] = json!(["/bin/app"]);
        let mut i = inspect();
        i["Config"]["Cmd"] = json!(["serve", "--port", "80"]);
        i["Config"]["Entrypoint"] = json!(["/bin/app"]);
        let u = user_request(&i, &d, "img").unwrap();
        assert!(
            u.get("Cmd").is_none() && u.get("Entrypoint").is_none(),
            "{u}"
        );
        // `--entrypoint /bin/other` with the image's CMD as its arguments.
        i["Config"]["Entrypoint"] = json!(["/bin/other"]);
        let u = user_request(&i, &d, "img").unwrap();
        assert_eq!(u["Entrypoint"], json!(["/bin/other"]));
        assert_eq!(u["Cmd"], json!(["serve", "--port", "80"]));
    }

    #[test]
    fn an_endpoints_gateway_priority_is_kept() {
        let mut i = inspect();
        i["NetworkSettings"]["Networks"]["bridge"]["GwPriority"] = json!(10);
        let u = user_request(&i, &defaults(), "img").unwrap();
        assert_eq!(u["Networks"]["bridge"]["GwPriority"], json!(10));
        // 0 is the engine's default: not frozen.
        i["NetworkSettings"]["Networks"]["bridge"]["GwPriority"] = json!(0);
        let u = user_request(&i, &defaults(), "img").unwrap();
        assert!(u["Networks"]["bridge"].get("GwPriority").is_none(), "{u}");
    }

    #[test]
    fn netmodes_own_labels_are_not_the_users() {
        let mut i = inspect();
        i["Config"]["Labels"][APPLY_ID_LABEL] = json!("a1-1");
        let u = user_request(&i, &defaults(), "img").unwrap();
        assert_eq!(u["Labels"], json!({"a": "b"}));
    }

    #[test]
    fn the_users_request_without_engine_and_image_defaults() {
        let u = user_request(&inspect(), &defaults(), "netmode-test-busybox:1").unwrap();
        assert_eq!(u["Env"], json!(["FOO=bar"]));
        assert_eq!(u["Labels"], json!({"a": "b"}));
        assert_eq!(u["Cmd"], json!(["sleep", "1000"]));
        assert_eq!(u["StopTimeout"], json!(3));
        assert!(
            u.get("Hostname").is_none(),
            "the engine's default hostname: {u}"
        );
        assert!(
            u.get("Volumes").is_none(),
            "anonymous volumes go by name: {u}"
        );
        let hc = &u["HostConfig"];
        for k in [
            "LogConfig",
            "CgroupnsMode",
            "IpcMode",
            "ShmSize",
            "Runtime",
            "MaskedPaths",
            "ConsoleSize",
        ] {
            assert!(hc.get(k).is_none(), "{k} is the engine's default: {hc}");
        }
        assert_eq!(hc["NanoCpus"], json!(500000000));
        assert_eq!(hc["RestartPolicy"]["Name"], json!("unless-stopped"));
        assert_eq!(
            hc["Binds"],
            json!(["named:/named", "/tmp/x:/bind", "0329abc:/anon"]),
            "the anonymous volume is re-attached by its name"
        );
    }

    #[test]
    fn host_mode_drops_and_records_and_the_way_back_restores() {
        let u = user_request(&inspect(), &defaults(), "img").unwrap();
        let host = for_mode(&u, ModeKind::Host, None).unwrap();
        let hc = &host.create["HostConfig"];
        assert_eq!(hc["NetworkMode"], json!("host"));
        assert!(hc.get("PortBindings").is_none() && host.create.get("ExposedPorts").is_none());
        assert!(host.create.get("NetworkingConfig").is_none());
        assert!(
            host.dropped.iter().any(|d| d.starts_with("PortBindings")),
            "{:?}",
            host.dropped
        );
        // Everything else is the same.
        assert_eq!(host.create["Env"], u["Env"]);
        assert_eq!(hc["Binds"], u["HostConfig"]["Binds"]);

        // The way back, from the label the host-mode container carries.
        let mut as_host = inspect();
        as_host["Config"]["Labels"] = host.create["Labels"].clone();
        let rec = restore_of(&as_host).expect("restore label");
        assert_eq!(rec.network_mode, "default");
        let host_user = for_mode(&u, ModeKind::Host, None).unwrap().create;
        let mut host_request = host_user.clone();
        host_request["Networks"] = json!({});
        let back = for_mode(&host_request, ModeKind::Bridge, Some(&rec)).unwrap();
        let orig = as_is(&u).unwrap();
        assert_eq!(
            diff(&orig.create, &back.create),
            Vec::<String>::new(),
            "the round trip gives the original request back"
        );
        assert!(back.create["Labels"].get(RESTORE_LABEL).is_none());
    }

    /// Podman's inspect of a container made with `--ip`, `--mac-address`, an alias and a
    /// hostname (as Podman 5 shows it: the hostname among the aliases, added by the engine).
    fn podman_inspect() -> Value {
        let mut i = inspect();
        i["Config"]["Hostname"] = json!("gateway-svc");
        i["HostConfig"]["NetworkMode"] = json!("bridge");
        i["NetworkSettings"]["Networks"] = json!({
            "lan": {"IPAMConfig": null, "Aliases": ["svc", "cb75856fb89c", "gateway-svc"],
                    "IPAddress": "10.231.7.10", "GlobalIPv6Address": "",
                    "MacAddress": "02:42:0a:e7:00:99"},
            "podman": {"IPAMConfig": null, "Aliases": ["cb75856fb89c", "gateway-svc"],
                       "IPAddress": "10.88.0.5", "GlobalIPv6Address": "fd00::5",
                       "MacAddress": "be:58:46:87:68:76"}
        });
        i
    }

    fn podman(major: &str) -> Defaults {
        defaults().for_engine(&crate::docker::EngineVersion {
            engine: "podman",
            server: major.into(),
            api: "1.41".into(),
        })
    }

    #[test]
    fn on_podman_the_addresses_and_mac_it_has_are_asked_for_again() {
        let u = user_request(&podman_inspect(), &podman("5.4.2"), "img").unwrap();
        assert_eq!(
            u["Networks"]["lan"],
            json!({"IPAMConfig": {"IPv4Address": "10.231.7.10"}, "MacAddress": "02:42:0a:e7:00:99",
                   "Aliases": ["svc"]}),
            "the hostname alias Podman 5 adds by itself is not passed back"
        );
        assert_eq!(
            u["Networks"]["podman"]["IPAMConfig"],
            json!({"IPv4Address": "10.88.0.5", "IPv6Address": "fd00::5"})
        );
        assert!(u["Networks"]["podman"].get("Aliases").is_none());
        // Podman 4 adds no such alias: one the user gave is kept.
        let u4 = user_request(&podman_inspect(), &podman("4.3.1"), "img").unwrap();
        assert_eq!(
            u4["Networks"]["lan"]["Aliases"],
            json!(["svc", "gateway-svc"])
        );
        // Through host mode and back, every endpoint setting comes back as it was.
        let host = for_mode(&u, ModeKind::Host, None).unwrap();
        let mut as_host = podman_inspect();
        as_host["Config"]["Labels"] = host.create["Labels"].clone();
        let rec = restore_of(&as_host).expect("restore label");
        let mut host_request = host.create.clone();
        host_request["Networks"] = json!({});
        let back = for_mode(&host_request, ModeKind::Bridge, Some(&rec)).unwrap();
        // Each network comes back, at create or connected after, with its settings.
        let mut all: Vec<(String, Value)> = back.create["NetworkingConfig"]["EndpointsConfig"]
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .chain(back.connect.clone())
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(all[0].1["IPAMConfig"]["IPv4Address"], json!("10.231.7.10"));
        assert_eq!(all[0].1["MacAddress"], json!("02:42:0a:e7:00:99"));
        assert_eq!(all[1].1["MacAddress"], json!("be:58:46:87:68:76"));
    }

    #[test]
    fn on_docker_only_what_the_user_asked_for_is_kept() {
        let mut i = podman_inspect();
        i["NetworkSettings"]["Networks"]["podman"]["IPAMConfig"] =
            json!({"IPv4Address": "10.88.0.5"});
        let u = user_request(&i, &defaults(), "img").unwrap();
        assert_eq!(
            u["Networks"]["lan"],
            json!({"Aliases": ["svc", "gateway-svc"]}),
            "an allocated address and MAC are the engine's to choose again"
        );
        assert_eq!(
            u["Networks"]["podman"],
            json!({"IPAMConfig": {"IPv4Address": "10.88.0.5"}, "Aliases": ["gateway-svc"]})
        );
    }

    #[test]
    fn containers_started_with_rm_are_refused() {
        let mut i = inspect();
        i["HostConfig"]["AutoRemove"] = json!(true);
        let e = user_request(&i, &defaults(), "img").unwrap_err();
        assert!(e.to_string().contains("--rm"), "{e}");
    }

    #[test]
    fn links_are_given_back_as_create_takes_them() {
        let mut i = inspect();
        i["HostConfig"]["Links"] = json!(["/db:/web/db", "/cache:/web/c"]);
        let u = user_request(&i, &defaults(), "img").unwrap();
        assert_eq!(u["HostConfig"]["Links"], json!(["db:db", "cache:c"]));
    }

    #[test]
    fn the_diff_a_user_reads_has_no_netmode_labels() {
        let u = user_request(&inspect(), &defaults(), "img").unwrap();
        let mut bare = u.clone();
        bare.as_object_mut().unwrap().remove("Labels");
        let host = for_mode(&bare, ModeKind::Host, None).unwrap();
        let d = diff(
            &without_netmode_labels(&as_is(&bare).unwrap().create),
            &without_netmode_labels(&host.create),
        );
        assert!(!d.iter().any(|l| l.starts_with("Labels")), "{d:?}");
    }

    #[test]
    fn diff_names_each_changed_field() {
        let d = diff(
            &json!({"A": 1, "B": {"C": "x", "D": []}}),
            &json!({"A": 1, "B": {"C": "y"}, "E": true}),
        );
        assert_eq!(d, vec!["B.C: \"x\" -> \"y\"", "E: (unset) -> true"]);
    }
}
