//! Network modes, in the spirit of netavark's drivers: one driver per mode netmode compares,
//! behind one trait. A driver says where a probe sender runs to show what a container would
//! get in its mode (probing), and how a container's create request is placed in its mode
//! (applying: `apply::spec` hands it the request and takes back what it made of it). Adding a
//! mode (macvlan, ipvlan) is adding a driver.
//!
//! Which containers netmode manages at all is one rule, `ModeKind::is_manageable` (with
//! `ModeKind::unmanaged_reason`) in the advisor's API types, shared with the policy.

use std::collections::BTreeMap;

use netmode_advisor::api::{Container, ModeKind, ProbeMode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// On a host-mode container netmode made: what bridge mode had that host mode cannot.
pub const RESTORE_LABEL: &str = "netmode.apply.restore";

/// What bridge mode had that host mode drops, kept for the way back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Restore {
    /// HostConfig.NetworkMode before (`default`, `bridge`, a network name).
    pub network_mode: String,
    /// Config fields host mode cannot keep (Hostname, Domainname, MacAddress, ExposedPorts).
    #[serde(default)]
    pub config: Map<String, Value>,
    /// HostConfig fields host mode cannot keep (PortBindings, PublishAllPorts, Links, Dns...).
    #[serde(default)]
    pub host_config: Map<String, Value>,
    /// Endpoint settings per network (aliases, static IPs, links), the primary one included.
    #[serde(default)]
    pub networks: BTreeMap<String, Value>,
}

/// Host mode: Config and HostConfig fields Docker rejects or ignores there.
const HOST_DROPS_CONFIG: &[&str] = &["MacAddress", "ExposedPorts"];
const HOST_DROPS_HOST_CONFIG: &[&str] = &["PortBindings", "PublishAllPorts", "Links"];

/// "Nothing asked for": null, false, 0, "", [] and {} all mean the engine's default.
pub fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// A container's create request as a driver places it in its mode (applying a change).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// The Config fields of the request.
    pub body: Map<String, Value>,
    pub host_config: Map<String, Value>,
    /// The endpoints the container has now, by network.
    pub networks: Map<String, Value>,
    /// What the mode cannot keep, in words (the driver adds to it).
    pub dropped: Vec<String>,
    /// Networks to connect before the start, beyond the one it is created on.
    pub connect: Vec<(String, Value)>,
    /// The request's `NetworkingConfig`, when the mode has one.
    pub networking: Option<Value>,
}

/// Why a container cannot be placed in a mode, in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// How a probe sender is placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// Probe containers with this Docker network mode (`bridge`, `host`, a network name).
    Container { network_mode: String },
    /// A daemon thread inside the network namespace of this process.
    InNamespace { pid: u32 },
}

pub trait ModeDriver: Send + Sync {
    fn mode(&self) -> ProbeMode;
    /// How to probe `target` in this mode, or why it cannot be.
    fn launch(&self, target: &Container) -> Result<Launch, Refusal>;
    /// Place a container's create request in this mode. `restore`: what an earlier switch
    /// to host recorded, for the way back.
    fn place(&self, p: &mut Placement, restore: Option<&Restore>);
}

/// The driver a container is switched to `kind` with: bridge or host.
pub fn driver_for(kind: ModeKind) -> Result<Box<dyn ModeDriver>, Refusal> {
    match kind {
        ModeKind::Bridge => Ok(Box::new(Bridge)),
        ModeKind::Host => Ok(Box::new(Host)),
        other => Err(Refusal(format!(
            "netmode switches between bridge and host mode, not to {}",
            other.as_str()
        ))),
    }
}

/// Bridge mode: on the target's own bridge network, or Docker's default bridge for a
/// host-mode target (what it would get if switched).
pub struct Bridge;

/// Host mode: the host's network stack.
pub struct Host;

/// From inside a bridge-mode target's own namespace.
pub struct InPlace;

/// The one rule, applied: bridge and host containers can be placed in another mode.
pub fn manageable(target: &Container) -> Result<(), Refusal> {
    match target.mode_kind.unmanaged_reason(&target.network_mode) {
        None => Ok(()),
        Some(why) => Err(Refusal(why)),
    }
}

/// Podman's default network (Docker's is `bridge`).
const PODMAN_DEFAULT_NETWORK: &str = "podman";

/// A container's network mode as Docker writes it. Podman writes `bridge` for a container on
/// user networks only, where Docker writes the network's name: it is then the first of
/// `networks` (sorted by name). A container on Docker's or Podman's default network stays
/// `bridge`.
pub fn as_docker_names_it<'a>(mode: &str, mut networks: impl Iterator<Item = &'a str>) -> String {
    let mut first = None;
    for n in networks.by_ref() {
        if n == "bridge" || n == PODMAN_DEFAULT_NETWORK {
            return mode.to_string();
        }
        first = first.or(Some(n));
    }
    match first {
        Some(n) if mode == "bridge" => n.to_string(),
        _ => mode.to_string(),
    }
}

/// The Docker network mode a container gets in bridge mode: its own bridge network, or
/// Docker's default bridge for a host-mode container (what it would get if switched).
pub fn bridge_network(target: &Container) -> String {
    match target.mode_kind {
        ModeKind::Bridge => target.network_mode.clone(),
        _ => "bridge".to_string(),
    }
}

impl ModeDriver for Bridge {
    fn mode(&self) -> ProbeMode {
        ProbeMode::Bridge
    }
    fn launch(&self, target: &Container) -> Result<Launch, Refusal> {
        manageable(target)?;
        Ok(Launch::Container {
            network_mode: bridge_network(target),
        })
    }
    /// Back on the network it had (the restore record's), with its endpoints; Docker's
    /// default bridge when nothing was recorded.
    fn place(&self, p: &mut Placement, restore: Option<&Restore>) {
        let (mode, nets) = match restore {
            Some(r) => {
                for (k, v) in &r.config {
                    p.body.insert(k.clone(), v.clone());
                }
                for (k, v) in &r.host_config {
                    p.host_config.insert(k.clone(), v.clone());
                }
                (r.network_mode.clone(), r.networks.clone())
            }
            None => ("bridge".to_string(), BTreeMap::new()),
        };
        if let Some(l) = p.body.get_mut("Labels").and_then(Value::as_object_mut) {
            l.remove(RESTORE_LABEL);
        }
        // Created on `bridge`, a container Podman recorded that way would get Podman's
        // default network beside its own.
        let mode = as_docker_names_it(&mode, nets.keys().map(String::as_str));
        // The primary network is the one NetworkMode names (`default` is `bridge`).
        let primary = if mode == "default" {
            "bridge".to_string()
        } else {
            mode.clone()
        };
        let mut endpoints = Map::new();
        if let Some(ep) = nets.get(&primary) {
            endpoints.insert(primary.clone(), ep.clone());
        }
        for (name, ep) in nets {
            if name != primary {
                p.connect.push((name, ep));
            }
        }
        p.host_config.insert("NetworkMode".into(), json!(mode));
        p.networking = Some(json!({ "EndpointsConfig": endpoints }));
    }
}

impl ModeDriver for Host {
    fn mode(&self) -> ProbeMode {
        ProbeMode::Host
    }
    fn launch(&self, target: &Container) -> Result<Launch, Refusal> {
        manageable(target)?;
        Ok(Launch::Container {
            network_mode: "host".into(),
        })
    }
    /// On the host's stack: what host mode cannot have is dropped and recorded in the
    /// restore label, for the way back.
    fn place(&self, p: &mut Placement, _restore: Option<&Restore>) {
        let current = p
            .host_config
            .get("NetworkMode")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let mut rec = Restore {
            network_mode: current,
            networks: p.networks.clone().into_iter().collect(),
            ..Default::default()
        };
        for k in HOST_DROPS_CONFIG {
            if let Some(v) = p.body.remove(*k) {
                p.dropped.push(format!("{k} {v}"));
                rec.config.insert((*k).to_string(), v);
            }
        }
        for k in HOST_DROPS_HOST_CONFIG {
            if let Some(v) = p.host_config.remove(*k) {
                if !unset(&v) {
                    p.dropped.push(format!("{k} {v}"));
                }
                rec.host_config.insert((*k).to_string(), v);
            }
        }
        for (name, ep) in &p.networks {
            if !unset(ep) || (name != "bridge" && name != "host") {
                p.dropped.push(format!("network {name} {ep}"));
            }
        }
        p.host_config.insert("NetworkMode".into(), json!("host"));
        let labels = p
            .body
            .entry("Labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                RESTORE_LABEL.into(),
                json!(serde_json::to_string(&rec).unwrap_or_default()),
            );
        }
    }
}

impl ModeDriver for InPlace {
    fn mode(&self) -> ProbeMode {
        ProbeMode::InPlace
    }
    /// Not a mode a container is switched to (`driver_for` never returns it): the request
    /// stays as it is.
    fn place(&self, _p: &mut Placement, _restore: Option<&Restore>) {}
    fn launch(&self, target: &Container) -> Result<Launch, Refusal> {
        manageable(target)?;
        if target.mode_kind != ModeKind::Bridge {
            return Err(Refusal(
                "only a bridge-mode container has a namespace of its own to probe from".into(),
            ));
        }
        Ok(Launch::InNamespace { pid: target.pid })
    }
}

/// The drivers of a container probe, in the order they run.
pub fn drivers(in_place: bool) -> Vec<Box<dyn ModeDriver>> {
    let mut v: Vec<Box<dyn ModeDriver>> = vec![Box::new(Bridge), Box::new(Host)];
    if in_place {
        v.push(Box::new(InPlace));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(network_mode: &str, kind: ModeKind) -> Container {
        crate::testing::container(&"x".repeat(64), "c", network_mode, kind)
    }

    #[test]
    fn bridge_probes_run_on_the_targets_network() {
        let on_net = c("backend", ModeKind::Bridge);
        assert_eq!(
            Bridge.launch(&on_net),
            Ok(Launch::Container {
                network_mode: "backend".into()
            })
        );
        let host = c("host", ModeKind::Host);
        assert_eq!(
            Bridge.launch(&host),
            Ok(Launch::Container {
                network_mode: "bridge".into()
            })
        );
        assert_eq!(
            Host.launch(&on_net),
            Ok(Launch::Container {
                network_mode: "host".into()
            })
        );
        assert_eq!(InPlace.launch(&on_net), Ok(Launch::InNamespace { pid: 42 }));
        assert!(InPlace.launch(&host).is_err());
    }

    #[test]
    fn podman_user_networks_come_back_without_its_default_network() {
        let back = |network_mode: &str, nets: &[&str]| {
            let mut p = Placement {
                body: Map::new(),
                host_config: Map::new(),
                networks: Map::new(),
                dropped: Vec::new(),
                connect: Vec::new(),
                networking: None,
            };
            let r = Restore {
                network_mode: network_mode.into(),
                networks: nets
                    .iter()
                    .map(|n| (n.to_string(), json!({"Aliases": [format!("{n}-alias")]})))
                    .collect(),
                ..Default::default()
            };
            Bridge.place(&mut p, Some(&r));
            let connected: Vec<String> = p.connect.iter().map(|(n, _)| n.clone()).collect();
            (p.host_config["NetworkMode"].clone(), connected)
        };
        // Podman 4.3 recorded `bridge` for a container on two user networks.
        assert_eq!(
            back("bridge", &["neta", "netb"]),
            (json!("neta"), vec!["netb".to_string()])
        );
        // Its default network, or Docker's, keeps `bridge`.
        assert_eq!(back("bridge", &["podman"]).0, json!("bridge"));
        assert_eq!(back("bridge", &["bridge"]).0, json!("bridge"));
        // Docker names the network itself.
        assert_eq!(
            back("netb", &["neta", "netb"]),
            (json!("netb"), vec!["neta".to_string()])
        );
    }

    #[test]
    fn unprobeable_modes_say_why() {
        for (m, k, word) in [
            ("none", ModeKind::None, "none"),
            ("container:abc", ModeKind::Container, "shares"),
            ("lan", ModeKind::Other, "driver"),
        ] {
            for d in drivers(true) {
                let e = d.launch(&c(m, k)).unwrap_err();
                assert!(e.0.contains(word), "{e}");
            }
        }
    }
}
