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

    /// The cgroup-v2 mount point, if cgroup v2 is mounted (alone, or beside v1 as on a
    /// hybrid system).
    pub fn unified(&self) -> Option<&std::path::Path> {
        self.unified.as_deref()
    }

    /// The id of the cgroup-v2 group `pid` is in ([`cgroup_id`]), or `None` when the
    /// process is in the v2 root (a hybrid system whose container runtime makes no v2 group:
    /// it cannot be told apart there) or cgroup v2 is not mounted.
    pub fn v2_cgroup_id(&self, pid: u32) -> Option<u64> {
        let groups = Process::new(pid as i32).and_then(|p| p.cgroups()).ok()?;
        cgroup_id(&groups.0.iter().find_map(|g| self.v2_dir(g))?)
    }

    /// The cgroup-v2 groups of the container `id` whose init process is `pid`, by id
    /// ([`cgroup_id`], what `bpf_skb_cgroup_id` gives): the group `pid` is in and
    /// every group below it, when that group's path names the container (Docker's
    /// `/docker/<id>` and `docker-<id>.scope`, Podman's `libpod-<id>.scope` and the
    /// `container` group below it). Otherwise why its packets cannot be told from others'.
    pub fn container_v2_groups(&self, pid: u32, id: &str) -> Result<Vec<u64>, NotOwnGroup> {
        let Some(root) = self.unified.as_ref() else {
            return Err(NotOwnGroup::NoV2);
        };
        let groups = Process::new(pid as i32)
            .and_then(|p| p.cgroups())
            .map_err(|_| NotOwnGroup::Gone)?;
        let Some(g) = groups
            .0
            .iter()
            .find(|g| g.hierarchy == 0 && g.controllers.is_empty())
        else {
            return Err(NotOwnGroup::NoV2);
        };
        let rel = g.pathname.trim_start_matches('/');
        if rel.is_empty() {
            return Err(NotOwnGroup::Root);
        }
        if !names_container(rel, id) {
            return Err(NotOwnGroup::Foreign(g.pathname.clone()));
        }
        let dir = root.join(rel);
        let mut out = Vec::new();
        let mut stack = vec![(dir, 0)];
        while let Some((d, depth)) = stack.pop() {
            let Some(gid) = cgroup_id(&d) else {
                continue;
            };
            out.push(gid);
            // A container's own groups below its group are few and shallow (Podman's
            // `container`, a systemd inside): a bound keeps a runaway tree out.
            if depth < 4
                && let Ok(entries) = std::fs::read_dir(&d)
            {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push((e.path(), depth + 1));
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(NotOwnGroup::Gone);
        }
        Ok(out)
    }

    /// The directory of a `/proc/<pid>/cgroup` entry when it is the cgroup-v2 one (`0::/path`)
    /// and names a group below the root.
    fn v2_dir(&self, g: &procfs::ProcessCGroup) -> Option<PathBuf> {
        let rel = g.pathname.trim_start_matches('/');
        let v2 = g.hierarchy == 0 && g.controllers.is_empty();
        (v2 && !rel.is_empty())
            .then(|| self.unified.as_ref().map(|root| root.join(rel)))
            .flatten()
    }

    /// The `cgroup.procs` file of the cgroup `pid` is in.
    pub fn procs_file(&self, pid: u32) -> Option<PathBuf> {
        let groups = Process::new(pid as i32).and_then(|p| p.cgroups()).ok()?;
        for g in groups.0.iter() {
            let rel = g.pathname.trim_start_matches('/');
            if g.hierarchy == 0 && g.controllers.is_empty() {
                // cgroup v2 entry (`0::/path`); on a hybrid system it may hold nothing.
                if let Some(f) = self.v2_dir(g).map(|d| d.join("cgroup.procs"))
                    && f.exists()
                {
                    return Some(f);
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
                let Some(dir) = self.v2_dir(g) else { continue };
                let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
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

/// Why a container's processes have no cgroup-v2 group of their own that netmode can count
/// by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotOwnGroup {
    #[error("cgroup v2 is not mounted")]
    NoV2,
    #[error(
        "its processes are in the cgroup-v2 root (the container runtime makes no cgroup-v2 group for it)"
    )]
    Root,
    #[error(
        "its processes are in the cgroup-v2 group {0}, which does not name the container (shared with other processes)"
    )]
    Foreign(String),
    #[error("its init process is gone")]
    Gone,
}

/// The id the kernel gives the cgroup-v2 group at `dir` (what `bpf_skb_cgroup_id` returns),
/// or `None` when there is no such directory: its kernfs node id, read from the directory's
/// file handle. On 64-bit kernels that is the directory's inode number; on 32-bit ones (a Pi
/// on a 32-bit OS) the inode is only its low half, the high half being a generation, so the
/// inode names no group there (found in the virtual Pi, tests/vpi: a host-mode container
/// counted 0 B). Where file handles are refused, the inode is the best there is.
pub fn cgroup_id(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    handle_id(dir).or_else(|| std::fs::metadata(dir).ok().map(|m| m.ino()))
}

/// The 8-byte file handle of `dir` (kernfs's: its node id), if the kernel gives one.
fn handle_id(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    /// `struct file_handle` with room for kernfs's 8-byte handle.
    #[repr(C)]
    struct Handle {
        bytes: libc::c_uint,
        kind: libc::c_int,
        id: [u8; 8],
    }
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut h = Handle {
        bytes: 8,
        kind: 0,
        id: [0; 8],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `h` is a file_handle followed by the 8 bytes its handle_bytes announces; the
    // kernel writes no more than that (it fails with EOVERFLOW instead).
    let r = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            path.as_ptr(),
            (&mut h as *mut Handle).cast(),
            &mut mount_id,
            0,
        )
    };
    (r == 0 && h.bytes == 8).then(|| u64::from_ne_bytes(h.id))
}

/// Whether a cgroup path names the container `id` (full id) in one of its components:
/// `docker/<id>`, `docker-<id>.scope`, `libpod-<id>.scope`, `libpod-<id>.scope/container`,
/// `libpod_parent/libpod-<id>`.
fn names_container(path: &str, id: &str) -> bool {
    !id.is_empty()
        && path.split('/').any(|c| {
            let c = c.strip_suffix(".scope").unwrap_or(c);
            c == id || c.rsplit_once('-').is_some_and(|(_, tail)| tail == id)
        })
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

/// Datagrams each UDP socket of the network namespace of process `pid` dropped (receive buffer
/// full, checksum, filter), by socket inode: `/proc/<pid>/net/udp` and `udp6`, their last
/// column. Counted since each socket was made.
pub fn udp_drops(pid: u32) -> std::io::Result<std::collections::HashMap<u32, u64>> {
    let mut out = std::collections::HashMap::new();
    for table in ["udp", "udp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        match std::fs::read_to_string(&path) {
            Ok(text) => out.extend(parse_udp_drops(&text)),
            // No IPv6 in that namespace.
            Err(e) if table == "udp6" && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{path}: {e}"))),
        }
    }
    Ok(out)
}

/// (inode, drops) of each line of a `/proc/net/udp` table.
fn parse_udp_drops(text: &str) -> impl Iterator<Item = (u32, u64)> + '_ {
    text.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        Some((f.get(9)?.parse().ok()?, f.get(12)?.parse().ok()?))
    })
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

    /// A cgroup-v2 group's id from its file handle: on a 64-bit kernel, its inode (what the
    /// counters were matched by before); a directory of another file system has its own
    /// handle, and a path that does not exist has none.
    #[test]
    fn a_groups_id_is_its_kernfs_id() {
        use std::os::unix::fs::MetadataExt;
        let m = CgroupMounts::discover();
        if let Some(root) = m.unified() {
            let id = handle_id(root).expect("a cgroup-v2 directory has a file handle");
            if cfg!(target_pointer_width = "64") {
                assert_eq!(id, std::fs::metadata(root).unwrap().ino());
            }
            assert_eq!(cgroup_id(root), Some(id));
        }
        assert_eq!(handle_id(std::path::Path::new("/no/such/group")), None);
        assert_eq!(cgroup_id(std::path::Path::new("/no/such/group")), None);
    }

    #[test]
    fn udp_drops_are_read_by_socket_inode() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 0100007F:1B59 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81234 2 0000000000000000 17
  456: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 99 2 0000000000000000 0
";
        let got: Vec<(u32, u64)> = parse_udp_drops(table).collect();
        assert_eq!(got, [(81234, 17), (99, 0)]);
        // Our own namespace's tables parse (whatever they hold).
        udp_drops(std::process::id()).unwrap();
    }

    #[test]
    fn a_cgroup_path_names_its_container_in_every_layout() {
        let id = "4f1c2b9a".repeat(8);
        for path in [
            format!("/docker/{id}"),
            format!("/system.slice/docker-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope/container"),
            // Podman 4.3 with the cgroupfs manager (seen on this project's machines).
            format!("/libpod_parent/libpod-{id}"),
            format!("/kubepods/besteffort/pod1/{id}"),
        ] {
            assert!(names_container(&path, &id), "{path}");
        }
        for path in [
            "/system.slice/docker.service".to_string(),
            "/user.slice/user-0.slice/session-3.scope".to_string(),
            format!("/docker/{}", &id[..12]),
            format!("/docker/{id}x"),
        ] {
            assert!(!names_container(&path, &id), "{path}");
        }
        assert!(!names_container("/docker/", ""));
    }

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
