//! Per-cgroup traffic counters in the kernel: the cgroup_skb programs of
//! `daemon/bpf/cgcount.bpf.c`, loaded through the thin `sys::bpf` layer and attached once at
//! the cgroup-v2 root, count every packet of every socket by its owner's cgroup id, direction
//! and peer (loopback, a container of this gateway by its address, anything else), in every
//! network mode and for every protocol. Read with [`CgroupCounters::read`]; the programs stay
//! attached while the value lives and are detached when it is dropped (or when the process
//! ends: the links are its file descriptors, never pinned).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::bpf::{self, Attached, ElfError, LoadError, Map, MapSpec, Program};

/// The object built from `daemon/bpf/cgcount.bpf.c` by `daemon/bpf/build`.
pub static OBJECT: &[u8] = include_bytes!("../../bpf/cgcount.bpf.o");

/// The maps of cgcount.bpf.c, as it declares them (a test reads the source and compares).
pub const COUNTERS: MapSpec = MapSpec {
    name: "counters",
    map_type: bpf::BPF_MAP_TYPE_PERCPU_HASH,
    key_size: 24,
    value_size: 16,
    max_entries: 16384,
};
pub const LOCAL_PEERS: MapSpec = MapSpec {
    name: "local_peers",
    map_type: bpf::BPF_MAP_TYPE_HASH,
    key_size: 4,
    value_size: 1,
    max_entries: 4096,
};

/// Why the counters could not be set up or read: each says what was tried.
#[derive(Debug, thiserror::Error)]
pub enum CgskbError {
    #[error("the BPF object cannot be read: {0}")]
    Object(#[source] ElfError),
    #[error(
        "not permitted to create BPF maps and programs (needs CAP_BPF, or CAP_SYS_ADMIN before Linux 5.8): {0}"
    )]
    Denied(#[source] std::io::Error),
    #[error("cannot create the BPF map {map}: {source}")]
    CreateMap {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the cgroup-v2 root {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {program} program cannot be loaded (needs CAP_BPF or CAP_SYS_ADMIN): {source}")]
    Load {
        program: &'static str,
        #[source]
        source: LoadError,
    },
    #[error("the {program} program cannot be attached at {path}: {source}")]
    Attach {
        program: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the map {map} cannot be used: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, CgskbError>;

/// What the other end of a packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// 127.0.0.0/8 or ::1.
    Loopback,
    /// An address given to [`CgroupCounters::set_local_peers`] (a container of this gateway).
    Local(Ipv4Addr),
    /// Anything else.
    Other,
}

/// Bytes (IP packet lengths) and packets (GSO segments one by one) of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub bytes: u64,
    pub packets: u64,
}

/// One cgroup's counters since the programs were attached, by direction and peer class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupTraffic {
    pub rx: HashMap<Peer, Flow>,
    pub tx: HashMap<Peer, Flow>,
}

impl CgroupTraffic {
    /// Both directions summed over every peer class: (rx, tx).
    pub fn totals(&self) -> (Flow, Flow) {
        let sum = |m: &HashMap<Peer, Flow>| {
            m.values().fold(Flow::default(), |a, f| Flow {
                bytes: a.bytes + f.bytes,
                packets: a.packets + f.packets,
            })
        };
        (sum(&self.rx), sum(&self.tx))
    }
}

// The map's key, as `struct key` in cgcount.bpf.c: cgroup u64, dir u32, peer u32, addr u32
// (network byte order), pad u32; the value, `struct counts`: bytes u64, packets u64.
fn ne_u64(b: &[u8]) -> u64 {
    u64::from_ne_bytes(b[..8].try_into().unwrap_or_default())
}
fn ne_u32(b: &[u8]) -> u32 {
    u32::from_ne_bytes(b[..4].try_into().unwrap_or_default())
}

/// The programs, attached at a cgroup-v2 root.
pub struct CgroupCounters {
    counters: Map,
    local_peers: Map,
    cpus: usize,
    // Dropped first: the programs are detached before the maps and the cgroup close.
    _attached: Vec<Attached>,
    _cgroup: std::fs::File,
}

impl CgroupCounters {
    /// Load the programs and attach them at `root` (the cgroup-v2 mount point), next to any
    /// other program attached there. On a kernel with BPF links (5.7 and later) they are
    /// attached as links, which always share the attach point; before, with
    /// `BPF_F_ALLOW_MULTI`.
    pub fn attach(root: &Path) -> Result<CgroupCounters> {
        let create = |spec: MapSpec| {
            Map::create(spec).map_err(|source| {
                if source.raw_os_error() == Some(libc::EPERM) {
                    CgskbError::Denied(source)
                } else {
                    CgskbError::CreateMap {
                        map: spec.name,
                        source,
                    }
                }
            })
        };
        let counters = create(COUNTERS)?;
        let local_peers = create(LOCAL_PEERS)?;
        let cpus = bpf::possible_cpus().map_err(|source| CgskbError::Map {
            map: COUNTERS.name,
            source,
        })?;
        let cgroup = std::fs::File::open(root).map_err(|source| CgskbError::Root {
            path: root.to_path_buf(),
            source,
        })?;
        let license = bpf::license(OBJECT).map_err(CgskbError::Object)?;
        let mut attached = Vec::new();
        for (program, section, kind) in [
            (
                "netmode_ingress",
                "cgroup_skb/ingress",
                bpf::BPF_CGROUP_INET_INGRESS,
            ),
            (
                "netmode_egress",
                "cgroup_skb/egress",
                bpf::BPF_CGROUP_INET_EGRESS,
            ),
        ] {
            let code = bpf::program(OBJECT, section, &[&counters, &local_peers])
                .map_err(CgskbError::Object)?;
            let p = Program::load(
                program,
                bpf::BPF_PROG_TYPE_CGROUP_SKB,
                kind,
                &code.insns,
                &license,
            )
            .map_err(|source| {
                if source.source.raw_os_error() == Some(libc::EPERM) {
                    CgskbError::Denied(source.source)
                } else {
                    CgskbError::Load { program, source }
                }
            })?;
            attached.push(
                Attached::cgroup(p, cgroup.as_raw_fd(), kind).map_err(|source| {
                    CgskbError::Attach {
                        program,
                        path: root.to_path_buf(),
                        source,
                    }
                })?,
            );
        }
        Ok(CgroupCounters {
            counters,
            local_peers,
            cpus,
            _attached: attached,
            _cgroup: cgroup,
        })
    }

    /// The counters of every cgroup that has sent or received a packet since the programs
    /// were attached, by cgroup id.
    pub fn read(&self) -> Result<HashMap<u64, CgroupTraffic>> {
        let err = |source| CgskbError::Map {
            map: COUNTERS.name,
            source,
        };
        let mut out: HashMap<u64, CgroupTraffic> = HashMap::new();
        // One 16-byte slot per possible CPU (16 is already a multiple of 8).
        let mut value = vec![0u8; 16 * self.cpus];
        for k in self.counters.keys().map_err(err)? {
            // An entry removed while the map is walked: the next read has it again.
            if !self.counters.lookup(&k, &mut value).map_err(err)? {
                continue;
            }
            let sum = value.chunks_exact(16).fold(Flow::default(), |a, c| Flow {
                bytes: a.bytes + ne_u64(&c[0..8]),
                packets: a.packets + ne_u64(&c[8..16]),
            });
            let (cgroup, dir, peer, addr) = (
                ne_u64(&k[0..8]),
                ne_u32(&k[8..12]),
                ne_u32(&k[12..16]),
                ne_u32(&k[16..20]),
            );
            let peer = match peer {
                0 => Peer::Loopback,
                1 => Peer::Local(Ipv4Addr::from(addr.to_ne_bytes())),
                _ => Peer::Other,
            };
            let t = out.entry(cgroup).or_default();
            let side = if dir == 1 { &mut t.tx } else { &mut t.rx };
            let f = side.entry(peer).or_default();
            f.bytes += sum.bytes;
            f.packets += sum.packets;
        }
        Ok(out)
    }

    /// Drop the counters of every cgroup `keep` refuses (groups of containers that are gone),
    /// so that the map, which every cgroup of the machine writes to, keeps room: the number
    /// of entries removed.
    pub fn forget(&mut self, keep: impl Fn(u64) -> bool) -> Result<usize> {
        let keys = self.counters.keys().map_err(|source| CgskbError::Map {
            map: COUNTERS.name,
            source,
        })?;
        let mut removed = 0;
        for k in keys.iter().filter(|k| !keep(ne_u64(&k[0..8]))) {
            // Removed meanwhile by nobody else; a failure leaves it for the next time.
            if self.counters.delete(k).unwrap_or(false) {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// How many entries the counters map can hold.
    pub const CAPACITY: usize = COUNTERS.max_entries as usize;

    /// The IPv4 addresses whose packets count as [`Peer::Local`]: the whole set is replaced.
    pub fn set_local_peers(&mut self, addrs: &[Ipv4Addr]) -> Result<()> {
        let err = |source| CgskbError::Map {
            map: LOCAL_PEERS.name,
            source,
        };
        let want: std::collections::HashSet<[u8; 4]> = addrs.iter().map(|a| a.octets()).collect();
        for k in self.local_peers.keys().map_err(err)? {
            if !want.iter().any(|w| w[..] == k[..]) {
                let _ = self.local_peers.delete(&k);
            }
        }
        for k in want {
            self.local_peers.update(&k, &[1]).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The maps netmoded creates are the ones the programs were compiled against.
    #[test]
    fn the_map_specs_are_the_sources() {
        let src = include_str!("../../bpf/cgcount.bpf.c");
        let decl = |name: &str| {
            let end = src.find(&format!("}} {name} SEC(\".maps\")")).unwrap();
            let start = src[..end].rfind("struct {").unwrap();
            src[start..end].to_string()
        };
        let c = decl("counters");
        assert!(c.contains("BPF_MAP_TYPE_PERCPU_HASH"), "{c}");
        assert!(
            c.contains(&format!("max_entries, {}", COUNTERS.max_entries)),
            "{c}"
        );
        assert!(
            c.contains("__type(key, struct key)") && c.contains("__type(value, struct counts)")
        );
        let l = decl("local_peers");
        assert!(l.contains("BPF_MAP_TYPE_HASH"), "{l}");
        assert!(
            l.contains(&format!("max_entries, {}", LOCAL_PEERS.max_entries)),
            "{l}"
        );
        assert!(
            l.contains("__type(key, __u32)") && l.contains("__type(value, __u8)"),
            "{l}"
        );
        // struct key: u64 and four u32; struct counts: two u64.
        let key = &src[src.find("struct key {").unwrap()..];
        let key = &key[..key.find("};").unwrap()];
        assert_eq!(
            key.matches("__u64").count() * 8 + key.matches("__u32").count() * 4,
            24
        );
        assert_eq!(COUNTERS.key_size, 24);
        let counts = &src[src.find("struct counts {").unwrap()..];
        let counts = &counts[..counts.find("};").unwrap()];
        assert_eq!(
            counts.matches("__u64").count() * 8,
            COUNTERS.value_size as usize
        );
    }

    /// Both programs come out of the embedded object with each map load relocated.
    #[test]
    fn the_programs_are_read_and_relocated() {
        let lic = bpf::license(OBJECT).unwrap();
        assert_eq!(lic.to_str().unwrap(), "GPL");
        // Without the maps (making them needs privileges; daemon/tests/cgskb.rs loads and
        // runs the programs), the relocation is refused and names the map it wanted.
        let err = bpf::program(OBJECT, "cgroup_skb/ingress", &[]).unwrap_err();
        assert!(
            matches!(&err, ElfError::UnknownMap { symbol, .. } if symbol == "local_peers" || symbol == "counters"),
            "{err}"
        );
        assert!(matches!(
            bpf::program(OBJECT, "cgroup_skb/nothing", &[]),
            Err(ElfError::NoSection(_))
        ));
    }
}
