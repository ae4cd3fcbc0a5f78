//! Network modes, in the spirit of netavark's drivers: one driver per mode netmode compares,
//! behind one trait. A driver says which Docker network mode a container gets in that mode
//! and where a probe sender runs to show what a container would get there. Probing uses it
//! now; applying a mode change will ask the same driver. Adding a mode (macvlan, ipvlan) is
//! adding a driver.
//!
//! Which containers netmode manages at all is one rule, `ModeKind::is_manageable` (with
//! `ModeKind::unmanaged_reason`) in the advisor's API types, shared with the policy.

use netmode_advisor::api::{Container, ModeKind, ProbeMode};

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
    /// How to probe `target` in this mode, or why it cannot be.
    fn launch(&self, target: &Container) -> Result<Launch, Refusal>;
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
}

impl ModeDriver for InPlace {
    fn mode(&self) -> ProbeMode {
        ProbeMode::InPlace
    }
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
