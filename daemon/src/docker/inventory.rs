//! What netmoded records of each running container, made from `docker inspect`.

use std::collections::HashMap;

use bollard::models::ContainerInspectResponse;
use netmode_advisor::api::{self, Compose, Limits, ModeKind, NetworkAttachment, PortBinding};

pub use crate::state::{Inventory, Record};

/// The label every probe container carries.
pub const PROBE_LABEL: &str = "netmode.probe";

/// Docker's way of writing the default network mode on some versions.
pub fn normalise_network_mode(mode: &str) -> String {
    match mode {
        "" | "default" => "bridge".into(),
        m => m.into(),
    }
}

/// Classify a network mode; `driver` is the driver of a user-defined network.
pub fn mode_kind(network_mode: &str, driver: Option<&str>) -> ModeKind {
    match network_mode {
        "bridge" | "default" | "" => ModeKind::Bridge,
        "host" => ModeKind::Host,
        "none" => ModeKind::None,
        m if m.starts_with("container:") => ModeKind::Container,
        _ => match driver {
            Some("bridge") => ModeKind::Bridge,
            _ => ModeKind::Other,
        },
    }
}

/// Networks (by name) whose driver the record needs but `drivers` does not know yet.
pub fn unknown_networks(
    c: &ContainerInspectResponse,
    drivers: &HashMap<String, String>,
) -> Vec<String> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            nets.keys()
                .filter(|n| !matches!(n.as_str(), "bridge" | "host" | "none"))
                .filter(|n| !drivers.contains_key(*n))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Build the record of a running container; `None` if it is not running (it may have died
/// between the event and the inspect).
pub fn record_from_inspect(
    c: &ContainerInspectResponse,
    drivers: &HashMap<String, String>,
) -> Option<Record> {
    let state = c.state.as_ref()?;
    if state.running != Some(true) {
        return None;
    }
    let pid = u32::try_from(state.pid?).ok().filter(|p| *p > 0)?;
    let id = c.id.clone()?;
    let name = c
        .name
        .as_deref()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let config = c.config.as_ref();
    let host = c.host_config.as_ref();
    let labels = config.and_then(|c| c.labels.as_ref());
    let label = |k: &str| labels.and_then(|l| l.get(k)).cloned();
    // Probe containers (any netmoded's) are instruments, not the user's containers.
    if label(PROBE_LABEL).is_some() {
        return None;
    }

    let network_mode = normalise_network_mode(
        host.and_then(|h| h.network_mode.as_deref())
            .unwrap_or("default"),
    );
    let driver_of = |net: &str| -> Option<String> {
        match net {
            "bridge" => Some("bridge".into()),
            "host" => Some("host".into()),
            "none" => Some("null".into()),
            n => drivers.get(n).cloned(),
        }
    };

    let mut networks: Vec<NetworkAttachment> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            nets.iter()
                .filter(|(name, _)| !matches!(name.as_str(), "host" | "none"))
                .map(|(name, ep)| NetworkAttachment {
                    name: name.clone(),
                    driver: driver_of(name),
                    ip_address: ep.ip_address.clone().filter(|s| !s.is_empty()),
                    // Docker adds the short id as an alias on user-defined networks; it is
                    // not something a user relies on.
                    aliases: ep
                        .aliases
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|a| !id.starts_with(a.as_str()))
                        .collect(),
                    links: ep.links.clone().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    let network_mode =
        crate::mode::as_docker_names_it(&network_mode, networks.iter().map(|n| n.name.as_str()));
    let kind = mode_kind(&network_mode, driver_of(&network_mode).as_deref());

    let cpus = host.and_then(|h| {
        if let Some(n) = h.nano_cpus.filter(|n| *n > 0) {
            return Some(n as f64 / 1e9);
        }
        match (h.cpu_quota, h.cpu_period) {
            (Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
            (Some(q), _) if q > 0 => Some(q as f64 / 100_000.0),
            _ => None,
        }
    });
    let limits = Limits {
        cpus,
        cpu_shares: host
            .and_then(|h| h.cpu_shares)
            .filter(|s| *s > 0)
            .map(|s| s as u64),
        cpuset: host
            .and_then(|h| h.cpuset_cpus.clone())
            .filter(|s| !s.is_empty()),
        memory_bytes: host
            .and_then(|h| h.memory)
            .filter(|m| *m > 0)
            .map(|m| m as u64),
    };

    let mut ports = Vec::new();
    // The bindings in effect (with the host ports Docker picked for `-p 127.0.0.1::80`),
    // else the ones asked for.
    let actual = c.network_settings.as_ref().and_then(|n| n.ports.as_ref());
    if let Some(bindings) = actual.or(host.and_then(|h| h.port_bindings.as_ref())) {
        for (spec, binds) in bindings {
            let Some((port, proto)) = parse_port_spec(spec) else {
                continue;
            };
            for b in binds.iter().flatten() {
                ports.push(PortBinding {
                    container_port: port,
                    protocol: proto.clone(),
                    host_ip: b.host_ip.clone().filter(|s| !s.is_empty()),
                    host_port: b.host_port.as_deref().and_then(|p| p.parse().ok()),
                });
            }
        }
    }
    ports.sort_by(|a, b| {
        (a.container_port, &a.protocol, a.host_port).cmp(&(
            b.container_port,
            &b.protocol,
            b.host_port,
        ))
    });
    let mut exposed_ports: Vec<String> = config
        .and_then(|c| c.exposed_ports.clone())
        .unwrap_or_default();
    exposed_ports.sort();

    let project = label("com.docker.compose.project");
    let service = label("com.docker.compose.service");
    let compose = (project.is_some() || service.is_some()).then_some(Compose { project, service });

    let started_at = state.started_at.clone().unwrap_or_default();
    let started_ns = parse_rfc3339_ns(&started_at).unwrap_or(0);

    Some(Record {
        info: api::Container {
            id,
            name,
            image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
            network_mode,
            mode_kind: kind,
            networks,
            pid,
            started_at,
            limits,
            ports,
            exposed_ports,
            compose,
            policy_label: label("netmode.policy"),
            live: None,
            probes: None,
            recommendation: None,
        },
        started_ns,
    })
}

/// `"80/tcp"` -> `(80, "tcp")`.
fn parse_port_spec(spec: &str) -> Option<(u16, String)> {
    let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    Some((port.parse().ok()?, proto.to_string()))
}

/// Unix nanoseconds of an RFC 3339 time as Docker writes it (`2026-11-24T15:30:00.123456789Z`).
pub fn parse_rfc3339_ns(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_classified() {
        assert_eq!(mode_kind("default", None), ModeKind::Bridge);
        assert_eq!(mode_kind("bridge", None), ModeKind::Bridge);
        assert_eq!(mode_kind("host", None), ModeKind::Host);
        assert_eq!(mode_kind("none", None), ModeKind::None);
        assert_eq!(mode_kind("container:abc", None), ModeKind::Container);
        assert_eq!(mode_kind("backend", Some("bridge")), ModeKind::Bridge);
        assert_eq!(mode_kind("lan", Some("macvlan")), ModeKind::Other);
        assert_eq!(normalise_network_mode("default"), "bridge");
    }

    #[test]
    fn docker_times_parse_to_nanoseconds() {
        assert_eq!(
            parse_rfc3339_ns("1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert!(parse_rfc3339_ns("2026-11-24T15:30:00.123456789Z").unwrap() > 0);
        assert_eq!(parse_rfc3339_ns("0001-01-01T00:00:00Z"), None);
    }

    #[test]
    fn inspect_json_becomes_a_record() {
        // The shape Docker 20.10 answers for `docker run -d --name web -p 8080:80
        // --cpus 0.5 -m 64m --network backend --network-alias api img`.
        let json = r#"{
          "Id": "4f2a0c6d9e1b4f2a0c6d9e1b4f2a0c6d9e1b4f2a0c6d9e1b4f2a0c6d9e1b4f2a",
          "Name": "/web",
          "State": {"Running": true, "Pid": 4242, "StartedAt": "2026-11-24T15:30:00.5Z"},
          "Config": {"Image": "img", "ExposedPorts": {"80/tcp": {}},
                     "Labels": {"com.docker.compose.project": "gw", "netmode.policy": "host"}},
          "HostConfig": {"NetworkMode": "backend", "NanoCpus": 500000000, "Memory": 67108864,
                         "PortBindings": {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}},
          "NetworkSettings": {"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "81/tcp": null},
                              "Networks": {"backend": {"IPAddress": "172.20.0.2",
                              "Aliases": ["api", "4f2a0c6d9e1b"], "Links": null}}}
        }"#;
        let c: ContainerInspectResponse = serde_json::from_str(json).unwrap();
        let drivers = HashMap::new();
        assert_eq!(unknown_networks(&c, &drivers), vec!["backend".to_string()]);
        let drivers = HashMap::from([("backend".to_string(), "bridge".to_string())]);
        let r = record_from_inspect(&c, &drivers).unwrap();
        let i = &r.info;
        assert_eq!(i.name, "web");
        assert_eq!(i.network_mode, "backend");
        assert_eq!(i.mode_kind, ModeKind::Bridge);
        assert_eq!(i.pid, 4242);
        assert_eq!(i.limits.cpus, Some(0.5));
        assert_eq!(i.limits.memory_bytes, Some(64 << 20));
        assert_eq!(i.ports.len(), 1);
        assert_eq!(
            (i.ports[0].container_port, i.ports[0].host_port),
            (80, Some(8080))
        );
        assert_eq!(i.exposed_ports, vec!["80/tcp".to_string()]);
        assert_eq!(i.networks[0].aliases, vec!["api".to_string()]);
        assert_eq!(i.networks[0].driver.as_deref(), Some("bridge"));
        assert_eq!(i.compose.as_ref().unwrap().project.as_deref(), Some("gw"));
        assert_eq!(i.policy_label.as_deref(), Some("host"));
        assert_eq!(r.started_ns, 1_795_534_200_500_000_000);
    }

    #[test]
    fn podman_names_a_user_network_as_docker_does() {
        // Podman 4.3: `--network backend` reads NetworkMode "bridge"; its default network is
        // `podman`.
        let at = |net: &str| -> ContainerInspectResponse {
            serde_json::from_value(serde_json::json!({
                "Id": "e1a42cf6ce66", "Name": "/c",
                "State": {"Running": true, "Pid": 7},
                "HostConfig": {"NetworkMode": "bridge"},
                "NetworkSettings": {"Networks": {net: {"IPAddress": "10.89.0.2"}}}
            }))
            .unwrap()
        };
        let drivers = HashMap::from([
            ("backend".to_string(), "bridge".to_string()),
            ("podman".to_string(), "bridge".to_string()),
        ]);
        let user = record_from_inspect(&at("backend"), &drivers).unwrap().info;
        assert_eq!(
            (user.network_mode.as_str(), user.mode_kind),
            ("backend", ModeKind::Bridge)
        );
        let default = record_from_inspect(&at("podman"), &drivers).unwrap().info;
        assert_eq!(
            (default.network_mode.as_str(), default.mode_kind),
            ("bridge", ModeKind::Bridge)
        );
    }

    #[test]
    fn probe_containers_are_not_the_users() {
        let json = r#"{"Id": "ab", "Name": "/netmode-probe-1", "State": {"Running": true, "Pid": 7},
                       "Config": {"Labels": {"netmode.probe": "1"}}}"#;
        let c: ContainerInspectResponse = serde_json::from_str(json).unwrap();
        assert_eq!(record_from_inspect(&c, &HashMap::new()), None);
    }

    #[test]
    fn stopped_container_has_no_record() {
        let json = r#"{"Id": "ab", "Name": "/x", "State": {"Running": false, "Pid": 0}}"#;
        let c: ContainerInspectResponse = serde_json::from_str(json).unwrap();
        assert_eq!(record_from_inspect(&c, &HashMap::new()), None);
    }
}
