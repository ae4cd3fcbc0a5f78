//! The bpf(2) calls netmode makes, and the little of an ELF object it reads: enough to load
//! its own programs (`daemon/bpf/`), whose maps it declares itself. A general loader (aya)
//! cost 290 KiB of the static daemon, over its 4 MiB budget; this is the part netmode uses.
//!
//! Every call fills a zeroed `union bpf_attr` image at the offsets `linux/bpf.h` gives; the
//! kernel reads only the fields of its command and wants the rest zero.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// Commands.
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_MAP_GET_NEXT_KEY: u32 = 4;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_ATTACH: u32 = 8;
const BPF_PROG_DETACH: u32 = 9;
const BPF_LINK_CREATE: u32 = 28;

pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_PERCPU_HASH: u32 = 5;
pub const BPF_PROG_TYPE_CGROUP_SKB: u32 = 8;
pub const BPF_CGROUP_INET_INGRESS: u32 = 0;
pub const BPF_CGROUP_INET_EGRESS: u32 = 1;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// `src_reg` of a `ld_imm64` whose immediate is a map's file descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// A `union bpf_attr` image: 128 bytes, zeroed, fields written at their offsets.
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(mut self, off: usize, v: u32) -> Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, off: usize, v: u64) -> Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn bytes(mut self, off: usize, v: &[u8]) -> Attr {
        self.0[off..off + v.len()].copy_from_slice(v);
        self
    }
}

fn ptr<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// One bpf(2) call: its non-negative result.
fn bpf(cmd: u32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: the attribute image is a valid, fully initialised buffer of the size passed,
    // and every pointer written into it points to memory that outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_long,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as i64)
    }
}

fn fd(r: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// What a map is: the kernel's `bpf_map_create` arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSpec {
    pub name: &'static str,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// A map, by its file descriptor.
pub struct Map {
    pub spec: MapSpec,
    fd: OwnedFd,
}

impl Map {
    pub fn create(spec: MapSpec) -> io::Result<Map> {
        let mut name = [0u8; 15];
        let n = spec.name.len().min(15);
        name[..n].copy_from_slice(&spec.name.as_bytes()[..n]);
        let mut a = Attr::new()
            .u32(0, spec.map_type)
            .u32(4, spec.key_size)
            .u32(8, spec.value_size)
            .u32(12, spec.max_entries)
            .bytes(28, &name);
        let r = match bpf(BPF_MAP_CREATE, &mut a) {
            // Kernels before 4.15 have no map names.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let mut a = Attr::new()
                    .u32(0, spec.map_type)
                    .u32(4, spec.key_size)
                    .u32(8, spec.value_size)
                    .u32(12, spec.max_entries);
                bpf(BPF_MAP_CREATE, &mut a)?
            }
            r => r?,
        };
        Ok(Map { spec, fd: fd(r) })
    }

    fn elem(&self, cmd: u32, key: &[u8], value: u64, flags: u64) -> io::Result<()> {
        debug_assert_eq!(key.len(), self.spec.key_size as usize);
        let mut a = Attr::new()
            .u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, ptr(key.as_ptr()))
            .u64(16, value)
            .u64(24, flags);
        bpf(cmd, &mut a).map(|_| ())
    }

    /// The value of `key` into `value` (for a per-CPU map, one slot of `value_size` rounded
    /// up to 8 bytes per possible CPU); `false` when there is no such key.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        match self.elem(BPF_MAP_LOOKUP_ELEM, key, ptr(value.as_mut_ptr()), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Set `key` to `value` (created or replaced).
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        debug_assert_eq!(value.len(), self.spec.value_size as usize);
        self.elem(BPF_MAP_UPDATE_ELEM, key, ptr(value.as_ptr()), 0)
    }

    /// Remove `key`; `false` when it was not there.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        match self.elem(BPF_MAP_DELETE_ELEM, key, 0, 0) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every key, as the kernel walks them (an entry removed meanwhile may restart the walk
    /// or be skipped; a read is one look, not a snapshot).
    pub fn keys(&self) -> io::Result<Vec<Vec<u8>>> {
        let size = self.spec.key_size as usize;
        let mut out: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; size];
        loop {
            let prev = out.last().map_or(0, |k| ptr(k.as_ptr()));
            let mut a = Attr::new()
                .u32(0, self.fd.as_raw_fd() as u32)
                .u64(8, prev)
                .u64(16, ptr(next.as_mut_ptr()));
            match bpf(BPF_MAP_GET_NEXT_KEY, &mut a) {
                Ok(_) => out.push(next.clone()),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
                Err(e) => return Err(e),
            }
            // A walk that comes back to keys it has seen (entries removed under it) ends.
            if out.len() > self.spec.max_entries as usize {
                return Ok(out);
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, "0-3" or "0,2-5"): the
/// slots of a per-CPU map's value.
pub fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(text.trim()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/sys/devices/system/cpu/possible: {text:?}"),
        )
    })
}

fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut highest = None;
    for part in s.split(',') {
        let last = match part.split_once('-') {
            Some((_, hi)) => hi.trim().parse::<usize>().ok()?,
            None => part.trim().parse::<usize>().ok()?,
        };
        highest = highest.max(Some(last));
    }
    highest.map(|h| h + 1)
}

/// A loaded program.
pub struct Program {
    fd: OwnedFd,
}

/// Why a program did not load: the kernel's error, with the verifier's log when it gave one.
#[derive(Debug, thiserror::Error)]
#[error("{source}{}", if log.is_empty() { String::new() } else { format!("; verifier: {log}") })]
pub struct LoadError {
    #[source]
    pub source: io::Error,
    pub log: String,
}

impl Program {
    /// Load `insns` (8-byte instructions) as a program of `prog_type`, for `attach_type`.
    pub fn load(
        name: &str,
        prog_type: u32,
        attach_type: u32,
        insns: &[u8],
        license: &CStr,
    ) -> Result<Program, LoadError> {
        let mut pname = [0u8; 15];
        let n = name.len().min(15);
        pname[..n].copy_from_slice(&name.as_bytes()[..n]);
        let attr = |log: Option<&mut [u8]>| {
            let a = Attr::new()
                .u32(0, prog_type)
                .u32(4, (insns.len() / 8) as u32)
                .u64(8, ptr(insns.as_ptr()))
                .u64(16, ptr(license.as_ptr()))
                .bytes(48, &pname)
                .u32(68, attach_type);
            match log {
                Some(buf) => a
                    .u32(24, 1)
                    .u32(28, buf.len() as u32)
                    .u64(32, ptr(buf.as_mut_ptr())),
                None => a,
            }
        };
        match bpf(BPF_PROG_LOAD, &mut attr(None)) {
            Ok(r) => Ok(Program { fd: fd(r) }),
            Err(source) => {
                // Again with the verifier's log, to say why.
                let mut buf = vec![0u8; 64 * 1024];
                let _ = bpf(BPF_PROG_LOAD, &mut attr(Some(&mut buf))).map(fd);
                let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
                let log = String::from_utf8_lossy(&buf[..end]);
                // Its last lines say what failed.
                let tail: Vec<&str> = log.lines().rev().take(4).collect();
                let log = tail.into_iter().rev().collect::<Vec<_>>().join(" / ");
                Err(LoadError { source, log })
            }
        }
    }
}

/// A program attached to a cgroup: as a BPF link (Linux 5.7 and later: detached when the
/// link's descriptor closes, never replacing another program), or with BPF_F_ALLOW_MULTI
/// before, detached on drop.
pub enum Attached {
    Link(OwnedFd),
    Legacy {
        cgroup: RawFd,
        prog: OwnedFd,
        attach_type: u32,
    },
}

impl Attached {
    /// Attach `prog` to the cgroup open at `cgroup` (which must outlive the attachment).
    pub fn cgroup(prog: Program, cgroup: RawFd, attach_type: u32) -> io::Result<Attached> {
        let mut a = Attr::new()
            .u32(0, prog.fd.as_raw_fd() as u32)
            .u32(4, cgroup as u32)
            .u32(8, attach_type);
        match bpf(BPF_LINK_CREATE, &mut a) {
            Ok(r) => Ok(Attached::Link(fd(r))),
            // No BPF links: the older way, beside other programs.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                let mut a = Attr::new()
                    .u32(0, cgroup as u32)
                    .u32(4, prog.fd.as_raw_fd() as u32)
                    .u32(8, attach_type)
                    .u32(12, BPF_F_ALLOW_MULTI);
                bpf(BPF_PROG_ATTACH, &mut a)?;
                Ok(Attached::Legacy {
                    cgroup,
                    prog: prog.fd,
                    attach_type,
                })
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Attached::Legacy {
            cgroup,
            prog,
            attach_type,
        } = self
        {
            let mut a = Attr::new()
                .u32(0, *cgroup as u32)
                .u32(4, prog.as_raw_fd() as u32)
                .u32(8, *attach_type);
            let _ = bpf(BPF_PROG_DETACH, &mut a);
        }
    }
}

/// A program section of an ELF object: its instructions, with every map load relocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfProgram {
    pub section: String,
    pub insns: Vec<u8>,
}

/// Why an object cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not a little-endian 64-bit ELF object")]
    NotElf,
    #[error("truncated at {0}")]
    Truncated(&'static str),
    #[error("no section {0}")]
    NoSection(String),
    #[error("relocation of type {kind} in {section}: only map loads are supported")]
    Relocation { section: String, kind: u32 },
    #[error("relocation in {section} to {symbol}, which is not a map given")]
    UnknownMap { section: String, symbol: String },
    #[error("relocation in {section} at {offset} is not on a 64-bit load")]
    NotLdImm64 { section: String, offset: u64 },
}

fn rd<const N: usize>(b: &[u8], off: usize, what: &'static str) -> Result<[u8; N], ElfError> {
    b.get(off..off + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Truncated(what))
}
fn u16_at(b: &[u8], off: usize, what: &'static str) -> Result<u16, ElfError> {
    rd::<2>(b, off, what).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], off: usize, what: &'static str) -> Result<u32, ElfError> {
    rd::<4>(b, off, what).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize, what: &'static str) -> Result<u64, ElfError> {
    rd::<8>(b, off, what).map(u64::from_le_bytes)
}

struct Section<'a> {
    name: &'a str,
    kind: u32,
    data: &'a [u8],
    link: u32,
    info: u32,
}

fn cstr_at(b: &[u8], off: usize) -> &str {
    let s = b.get(off..).unwrap_or(&[]);
    let end = s.iter().position(|c| *c == 0).unwrap_or(s.len());
    std::str::from_utf8(&s[..end]).unwrap_or("")
}

fn sections(elf: &[u8]) -> Result<Vec<Section<'_>>, ElfError> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(ElfError::NotElf);
    }
    let shoff = u64_at(elf, 0x28, "header")? as usize;
    let shentsize = u16_at(elf, 0x3a, "header")? as usize;
    let shnum = u16_at(elf, 0x3c, "header")? as usize;
    let shstrndx = u16_at(elf, 0x3e, "header")? as usize;
    let mut raw = Vec::new();
    for i in 0..shnum {
        let h = shoff + i * shentsize;
        let name = u32_at(elf, h, "section header")? as usize;
        let kind = u32_at(elf, h + 4, "section header")?;
        let off = u64_at(elf, h + 0x18, "section header")? as usize;
        let size = u64_at(elf, h + 0x20, "section header")? as usize;
        let link = u32_at(elf, h + 0x28, "section header")?;
        let info = u32_at(elf, h + 0x2c, "section header")?;
        // SHT_NOBITS has no bytes in the file.
        let data = if kind == 8 {
            &[][..]
        } else {
            elf.get(off..off + size)
                .ok_or(ElfError::Truncated("section"))?
        };
        raw.push((name, kind, data, link, info));
    }
    let names = raw
        .get(shstrndx)
        .map(|r| r.2)
        .ok_or(ElfError::Truncated("section names"))?;
    Ok(raw
        .into_iter()
        .map(|(name, kind, data, link, info)| Section {
            name: cstr_at(names, name),
            kind,
            data,
            link,
            info,
        })
        .collect())
}

/// The program in section `name` of `elf`, its map loads pointed at `maps` (by symbol name).
pub fn program(elf: &[u8], name: &str, maps: &[&Map]) -> Result<ElfProgram, ElfError> {
    const SHT_REL: u32 = 9;
    let secs = sections(elf)?;
    let (index, code) = secs
        .iter()
        .enumerate()
        .find(|(_, s)| s.name == name)
        .ok_or_else(|| ElfError::NoSection(name.to_string()))?;
    let mut insns = code.data.to_vec();
    for rel in secs
        .iter()
        .filter(|s| s.kind == SHT_REL && s.info as usize == index)
    {
        let symtab = secs
            .get(rel.link as usize)
            .ok_or(ElfError::Truncated("symbol table"))?;
        let strtab = secs
            .get(symtab.link as usize)
            .ok_or(ElfError::Truncated("string table"))?;
        for r in rel.data.chunks_exact(16) {
            let offset = u64_at(r, 0, "relocation")?;
            let info = u64_at(r, 8, "relocation")?;
            let (sym, kind) = ((info >> 32) as usize, info as u32);
            // R_BPF_64_64: a ld_imm64 of a symbol's address; here, always a map.
            if kind != 1 {
                return Err(ElfError::Relocation {
                    section: name.to_string(),
                    kind,
                });
            }
            let st_name = u32_at(symtab.data, sym * 24, "symbol")? as usize;
            let symbol = cstr_at(strtab.data, st_name);
            let map = maps.iter().find(|m| m.spec.name == symbol).ok_or_else(|| {
                ElfError::UnknownMap {
                    section: name.to_string(),
                    symbol: symbol.to_string(),
                }
            })?;
            let at = offset as usize;
            if insns.get(at) != Some(&0x18) || insns.len() < at + 16 {
                return Err(ElfError::NotLdImm64 {
                    section: name.to_string(),
                    offset,
                });
            }
            // src_reg (high nibble) = BPF_PSEUDO_MAP_FD; imm = the descriptor.
            insns[at + 1] = (insns[at + 1] & 0x0f) | (BPF_PSEUDO_MAP_FD << 4);
            insns[at + 4..at + 8].copy_from_slice(&(map.raw_fd() as u32).to_le_bytes());
        }
    }
    Ok(ElfProgram {
        section: name.to_string(),
        insns,
    })
}

/// The `license` section of `elf`, as the kernel wants it.
pub fn license(elf: &[u8]) -> Result<std::ffi::CString, ElfError> {
    let secs = sections(elf)?;
    let s = secs
        .iter()
        .find(|s| s.name == "license")
        .ok_or_else(|| ElfError::NoSection("license".into()))?;
    Ok(std::ffi::CString::new(cstr_at(s.data, 0)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_every_possible_cpu() {
        assert_eq!(parse_cpu_list("0-3"), Some(4));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(parse_cpu_list(""), None);
        assert!(possible_cpus().unwrap() >= 1);
    }

    #[test]
    fn a_non_elf_is_refused() {
        assert_eq!(program(b"hello", "x", &[]).unwrap_err(), ElfError::NotElf);
        assert_eq!(
            program(b"\x7fELF\x02\x01", "x", &[]).unwrap_err(),
            ElfError::Truncated("header")
        );
    }
}
