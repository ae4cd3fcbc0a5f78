//! Which processes belong to a container, and which sockets they own. Reads /proc and the
//! cgroup filesystem (v1 or v2); blocking, run off the event loop.

use std::collections::HashSet;
use std::path::PathBuf;

use procfs::process::{FDTarget, Process};

/// Where the cgroup hierarchies are mounted, found once from /proc/self/mountinfo.
#[derive(Debug, Clone, Default)]
pub struct CgroupMounts {
    /// The cgroup2 mount, if any.
    unified: Option<PathBuf>,
    /// cgroup v1 mounts: (controllers or `name=` options, mount point).
    v1: Vec<(Vec<String>, PathBuf)>,
}

impl CgroupMounts {
    pub fn discover() -> CgroupMounts {
        let mut m = CgroupMounts::default();
        let Ok(infos) = Process::myself().and_then(|p| p.mountinfo()) else {
            return m;
        };
        for info in infos {
            match info.fs_type.as_str() {
                "cgroup2" if m.unified.is_none() => m.unified = Some(info.mount_point),
                "cgroup" => {
                    let ctrls: Vec<String> = info
                        .super_options
                        .iter()
                        .map(|(k, v)| match v {
                            Some(v) => format!("{k}={v}"),
                            None => k.clone(),
                        })
                        .collect();
                    m.v1.push((ctrls, info.mount_point));
                }
                _ => {}
            }
        }
        m
    }

    /// The `cgroup.procs` file of the cgroup `pid` is in.
    pub fn procs_file(&self, pid: u32) -> Option<PathBuf> {
        let groups = Process::new(pid as i32).and_then(|p| p.cgroups()).ok()?;
        for g in groups.0.iter() {
            let rel = g.pathname.trim_start_matches('/');
            if g.hierarchy == 0 && g.controllers.is_empty() {
                // cgroup v2 entry (`0::/path`); on a hybrid system it may hold nothing.
                if let Some(root) = &self.unified {
                    let f = root.join(rel).join("cgroup.procs");
                    if f.exists() && !rel.is_empty() {
                        return Some(f);
                    }
                }
                continue;
            }
            // cgroup v1: any hierarchy where we know the mount point will do; they all
            // hold the container's processes.
            for (ctrls, mount) in &self.v1 {
                if g.controllers.iter().any(|c| ctrls.contains(c)) {
                    let f = mount.join(rel).join("cgroup.procs");
                    if f.exists() {
                        return Some(f);
                    }
                }
            }
        }
        None
    }

    /// CPU time used by the cgroup `pid` is in (all its processes, exited ones included),
    /// nanoseconds: `cpu.stat` (v2) or `cpuacct.usage` (v1).
    pub fn cpu_usage_ns(&self, pid: u32) -> Option<u64> {
        let groups = Process::new(pid as i32).and_then(|p| p.cgroups()).ok()?;
        for g in groups.0.iter() {
            let rel = g.pathname.trim_start_matches('/');
            if g.hierarchy == 0 && g.controllers.is_empty() {
                let Some(root) = &self.unified else { continue };
                if rel.is_empty() {
                    continue;
                }
                let text = std::fs::read_to_string(root.join(rel).join("cpu.stat")).ok()?;
                let usec: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse()
                    .ok()?;
                return Some(usec * 1000);
            }
            if !g.controllers.iter().any(|c| c == "cpuacct") {
                continue;
            }
            for (ctrls, mount) in &self.v1 {
                if ctrls.iter().any(|c| c == "cpuacct") {
                    let text =
                        std::fs::read_to_string(mount.join(rel).join("cpuacct.usage")).ok()?;
                    return text.trim().parse().ok();
                }
            }
        }
        None
    }

    /// The container's processes: its cgroup's members, or, when the cgroup cannot be read,
    /// the init process and its descendants.
    pub fn container_pids(&self, init_pid: u32) -> Vec<u32> {
        if let Some(f) = self.procs_file(init_pid)
            && let Ok(text) = std::fs::read_to_string(&f)
        {
            let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            if !pids.is_empty() {
                return pids;
            }
        }
        descendants(init_pid)
    }
}

/// `root` and every process below it (scans /proc once).
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(all) = procfs::process::all_processes() {
        for p in all.flatten() {
            if let Ok(stat) = p.stat() {
                parent_of.push((stat.pid as u32, stat.ppid as u32));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i];
        out.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == cur)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// Inodes of every socket the processes hold open.
pub fn socket_inodes(pids: &[u32]) -> HashSet<u32> {
    let mut out = HashSet::new();
    for &pid in pids {
        let Ok(fds) = Process::new(pid as i32).and_then(|p| p.fd()) else {
            continue;
        };
        for fd in fds.flatten() {
            if let FDTarget::Socket(ino) = fd.target {
                out.insert(ino as u32);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn finds_our_own_sockets_and_cgroup() {
        let me = std::process::id();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", l.as_raw_fd())).unwrap();
        let ino: u32 = link
            .to_string_lossy()
            .trim_start_matches("socket:[")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        assert!(socket_inodes(&[me]).contains(&ino));
        let cg = CgroupMounts::discover();
        let pids = cg.container_pids(me);
        assert!(pids.contains(&me), "{pids:?}");
        // Our cgroup's CPU time grows while we work.
        let a = cg.cpu_usage_ns(me).expect("cgroup CPU time");
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        let mut x = 0u64;
        while std::time::Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let b = cg.cpu_usage_ns(me).unwrap();
        assert!(b > a, "{a} -> {b} ({x})");
    }

    #[test]
    fn descendants_include_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let d = descendants(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(d.contains(&child.id()), "{d:?}");
    }
}
