//! Who listens where: the host's listening sockets with their owners (a host-mode container,
//! Docker's proxy for a published port, another process), and the ports each bridge-mode
//! container listens on inside its own namespace. The advisor needs both to tell whether a
//! container can move to host mode. Blocking; run off the event loop.

use std::collections::{BTreeMap, HashMap, HashSet};

use netmode_advisor::policy::{HostListener, ListenerOwner};

use super::procs::{self, CgroupMounts};
use super::sockdiag;

/// UDP sockets bound to ports in the ephemeral range are clients (resolvers and the like),
/// not services.
const EPHEMERAL_UDP: u16 = 32768;

#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub host: Vec<HostListener>,
    /// By container name: (protocol, port).
    pub containers: BTreeMap<String, Vec<(String, u16)>>,
}

fn services(listeners: Vec<sockdiag::Listener>) -> Vec<sockdiag::Listener> {
    listeners
        .into_iter()
        .filter(|l| l.protocol == "tcp" || l.port < EPHEMERAL_UDP)
        .collect()
}

/// `host_mode`: (name, init pid) of host-mode containers; `bridge_mode`: the same for
/// containers with a namespace of their own.
pub fn scan(
    cgroups: &CgroupMounts,
    host_mode: &[(String, u32)],
    bridge_mode: &[(String, u32)],
) -> Scan {
    let mut out = Scan::default();
    let host = match sockdiag::listeners() {
        Ok(l) => services(l),
        Err(e) => {
            log::debug!("listener scan: {e}");
            Vec::new()
        }
    };
    // Owners: host-mode containers first (their processes are known), then any process.
    let mut owner: HashMap<u32, ListenerOwner> = HashMap::new();
    for (name, pid) in host_mode {
        for ino in procs::socket_inodes(&cgroups.container_pids(*pid)) {
            owner.insert(ino, ListenerOwner::Container(name.clone()));
        }
    }
    let wanted: HashSet<u32> = host
        .iter()
        .map(|l| l.inode)
        .filter(|i| !owner.contains_key(i))
        .collect();
    let mut remaining = wanted.len();
    if remaining > 0
        && let Ok(all) = procfs::process::all_processes()
    {
        'procs: for p in all.flatten() {
            let Ok(fds) = p.fd() else { continue };
            for fd in fds.flatten() {
                if let procfs::process::FDTarget::Socket(ino) = fd.target
                    && wanted.contains(&(ino as u32))
                    && !owner.contains_key(&(ino as u32))
                {
                    let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
                        .unwrap_or_default();
                    let comm = comm.trim().to_string();
                    let o = if comm == "docker-proxy" {
                        ListenerOwner::DockerProxy
                    } else {
                        ListenerOwner::Process(comm)
                    };
                    owner.insert(ino as u32, o);
                    remaining -= 1;
                    if remaining == 0 {
                        break 'procs;
                    }
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for l in host {
        let o = owner
            .get(&l.inode)
            .cloned()
            .unwrap_or(ListenerOwner::Unknown);
        if seen.insert((l.protocol, l.port, o.clone())) {
            out.host.push(HostListener {
                protocol: l.protocol.to_string(),
                port: l.port,
                owner: o,
            });
        }
    }
    out.host.sort();
    out.containers = container_ports(bridge_mode);
    out
}

/// Listening ports inside each container's namespace.
fn container_ports(bridge_mode: &[(String, u32)]) -> BTreeMap<String, Vec<(String, u16)>> {
    super::netns::in_each("listener-scan", bridge_mode.to_vec(), || {
        let mut ports: Vec<(String, u16)> = services(sockdiag::listeners().ok()?)
            .into_iter()
            .map(|l| (l.protocol.to_string(), l.port))
            .collect();
        ports.sort();
        ports.dedup();
        Some(ports)
    })
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our own listening socket is found, with this process as its owner.
    #[test]
    fn finds_a_real_listener_and_its_owner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let s = scan(&CgroupMounts::discover(), &[], &[]);
        let me = std::fs::read_to_string("/proc/self/comm")
            .unwrap()
            .trim()
            .to_string();
        let found = s
            .host
            .iter()
            .find(|h| h.protocol == "tcp" && h.port == port)
            .expect("our listener");
        assert_eq!(found.owner, ListenerOwner::Process(me));
    }
}
