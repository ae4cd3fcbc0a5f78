//! Constraints: what blocks a switch (ports, Docker DNS, shared namespaces) and what it only
//! warns about.

use std::collections::BTreeSet;

use super::*;
use crate::api::Blocker;
pub(super) fn is_user_network(name: &str) -> bool {
    !matches!(name, "bridge" | "host" | "none")
}

/// Ports a container serves: what it listens on, and what it declares or publishes.
pub(super) fn served_ports(c: &Container, input: &Input) -> BTreeSet<(String, u16)> {
    let mut out: BTreeSet<(String, u16)> = input
        .container_ports
        .get(&c.name)
        .map(|v| v.iter().cloned().collect())
        .unwrap_or_default();
    for p in &c.ports {
        out.insert((p.protocol.clone(), p.container_port));
    }
    for e in &c.exposed_ports {
        let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        if let Ok(port) = port.parse() {
            out.insert((proto.to_string(), port));
        }
    }
    if c.mode_kind == ModeKind::Host {
        for l in input.host_listeners {
            if l.owner == ListenerOwner::Container(c.name.clone()) {
                out.insert((l.protocol.clone(), l.port));
            }
        }
    }
    out
}

pub(super) fn blocker(kind: &str, message: String) -> Blocker {
    Blocker {
        kind: kind.into(),
        message,
    }
}

/// What blocks moving `c` to `target`, and what the operator should know. Conflicts with
/// other containers planned for host mode are added by the caller.
pub fn constraints(c: &Container, target: ModeKind, input: &Input) -> (Vec<Blocker>, Vec<Blocker>) {
    let (mut blockers, mut warnings) = (Vec::new(), Vec::new());
    // Files in its own filesystem would go with the old container.
    if let Some(l) = input.writable_layers.get(&c.name)
        && l.count > 0
    {
        let mut shown = l.paths.join(", ");
        if l.count > l.paths.len() {
            shown.push_str(", ...");
        }
        blockers.push(blocker(
            "writable_layer",
            format!(
                "it keeps {} path{} in its own filesystem, outside its volumes ({shown}): \
                 recreating it would delete them; move them to a volume, or apply it by hand \
                 with --carry-writable-layer",
                l.count,
                if l.count == 1 { "" } else { "s" }
            ),
        ));
    }
    // Others that share this container's namespace move with it.
    let dependants: Vec<&str> = input
        .containers
        .iter()
        .filter(|o| {
            o.network_mode
                .strip_prefix("container:")
                .is_some_and(|x| x == c.id || x == c.name || (x.len() >= 12 && c.id.starts_with(x)))
        })
        .map(|o| o.name.as_str())
        .collect();
    if !dependants.is_empty() {
        blockers.push(blocker(
            "shared_namespace",
            format!(
                "{} share{} its network namespace (network_mode container:{}); switching would change theirs too",
                dependants.join(", "),
                if dependants.len() == 1 { "s" } else { "" },
                c.name
            ),
        ));
    }
    match target {
        ModeKind::Host => {
            for p in &c.ports {
                let Some(hp) = p.host_port else { continue };
                let ip = p.host_ip.as_deref().unwrap_or("");
                if hp != p.container_port {
                    blockers.push(blocker(
                        "published_port",
                        format!(
                            "-p {}{hp}:{}/{} would become port {} in host mode: clients of port {hp} would break",
                            if ip.is_empty() || ip == "0.0.0.0" || ip == "::" { String::new() } else { format!("{ip}:") },
                            p.container_port,
                            p.protocol,
                            p.container_port
                        ),
                    ));
                } else if !(ip.is_empty() || ip == "0.0.0.0" || ip == "::") {
                    warnings.push(blocker(
                        "published_port",
                        format!(
                            "port {hp}/{} is published on {ip} only; in host mode the container binds it itself, usually on every interface",
                            p.protocol
                        ),
                    ));
                }
            }
            for (proto, port) in served_ports(c, input) {
                for l in input
                    .host_listeners
                    .iter()
                    .filter(|l| l.protocol == proto && l.port == port)
                {
                    // Docker's proxy for this container's own publication goes away with it.
                    let publisher = input.containers.iter().find(|o| {
                        o.ports
                            .iter()
                            .any(|p| p.host_port == Some(port) && p.protocol == proto)
                    });
                    let holder = match (&l.owner, publisher) {
                        (ListenerOwner::DockerProxy, Some(o)) if o.name == c.name => continue,
                        (ListenerOwner::DockerProxy, Some(o)) => {
                            format!("container {} (published port)", o.name)
                        }
                        (ListenerOwner::DockerProxy, None) => "docker-proxy".to_string(),
                        (ListenerOwner::Container(o), _) if *o == c.name => continue,
                        (ListenerOwner::Container(o), _) => format!("host-mode container {o}"),
                        (ListenerOwner::Process(p), _) => format!("process {p}"),
                        (ListenerOwner::Unknown, _) => "another process".to_string(),
                    };
                    blockers.push(blocker(
                        "host_listener",
                        format!("port {port}/{proto} is already in use on the host by {holder}"),
                    ));
                }
            }
            for n in &c.networks {
                if !is_user_network(&n.name) {
                    if !n.links.is_empty() {
                        blockers.push(blocker(
                            "links",
                            format!(
                                "it reaches {} through --link, which host mode does not provide",
                                n.links.join(", ")
                            ),
                        ));
                    }
                    continue;
                }
                if !n.aliases.is_empty() {
                    blockers.push(blocker(
                        "docker_dns",
                        format!(
                            "on network {} it is known as {} (Docker DNS); containers using those names would lose it",
                            n.name,
                            n.aliases.join(", ")
                        ),
                    ));
                }
                let peers: Vec<&str> = input
                    .containers
                    .iter()
                    .filter(|o| o.name != c.name && o.networks.iter().any(|on| on.name == n.name))
                    .map(|o| o.name.as_str())
                    .collect();
                if !peers.is_empty() {
                    blockers.push(blocker(
                        "docker_dns",
                        format!(
                            "{} on network {} can reach it by name through Docker DNS; host mode takes it off that network",
                            peers.join(", "),
                            n.name
                        ),
                    ));
                } else if n.aliases.is_empty() {
                    warnings.push(blocker(
                        "docker_dns",
                        format!("it would leave network {} and its Docker DNS", n.name),
                    ));
                }
            }
            let linked_from: Vec<&str> = input
                .containers
                .iter()
                .filter(|o| {
                    o.networks.iter().any(|n| {
                        n.links.iter().any(|l| {
                            l.trim_start_matches('/').split(':').next() == Some(c.name.as_str())
                        })
                    })
                })
                .map(|o| o.name.as_str())
                .collect();
            if !linked_from.is_empty() {
                blockers.push(blocker(
                    "links",
                    format!(
                        "{} reach{} it through --link",
                        linked_from.join(", "),
                        if linked_from.len() == 1 { "es" } else { "" }
                    ),
                ));
            }
            warnings.push(blocker(
                "isolation",
                "host mode gives up network isolation: the container shares the host's interfaces and ports".into(),
            ));
        }
        ModeKind::Bridge => {
            let own: Vec<String> = input
                .host_listeners
                .iter()
                .filter(|l| l.owner == ListenerOwner::Container(c.name.clone()))
                .map(|l| (l.port, l.protocol.clone()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .map(|(port, proto)| format!("{port}/{proto}"))
                .collect();
            if !own.is_empty() {
                warnings.push(blocker(
                    "unpublished_ports",
                    format!("it listens on {}; in bridge mode they need publishing (-p PORT:PORT) to stay reachable", own.join(", ")),
                ));
            }
            warnings.push(blocker(
                "host_dependencies",
                "in host mode it may rely on the host's interfaces (broadcast or multicast discovery, services on 127.0.0.1); check before switching".into(),
            ));
        }
        _ => {}
    }
    // Docker lists a publication once per address family: one message each.
    let mut seen = BTreeSet::new();
    blockers.retain(|b| seen.insert(b.message.clone()));
    let mut seen = BTreeSet::new();
    warnings.retain(|b| seen.insert(b.message.clone()));
    (blockers, warnings)
}
