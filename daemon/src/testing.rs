//! Test fixtures shared by the daemon's unit tests.

use netmode_advisor::api::{Container, Limits, ModeKind};

/// A running container as the inventory shows it: no limits, ports, traffic or probes;
/// init pid 42.
pub fn container(id: &str, name: &str, network_mode: &str, kind: ModeKind) -> Container {
    Container {
        id: id.into(),
        name: name.into(),
        image: "i".into(),
        network_mode: network_mode.into(),
        mode_kind: kind,
        networks: vec![],
        pid: 42,
        started_at: String::new(),
        limits: Limits::default(),
        ports: vec![],
        exposed_ports: vec![],
        compose: None,
        policy_label: None,
        live: None,
        probes: None,
        recommendation: None,
    }
}
