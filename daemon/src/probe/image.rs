//! The probe image, built by the daemon from its own executable: no registry, no Dockerfile.
//!
//! A static (musl) netmoded needs nothing else. A dynamically linked build (a debug build on a
//! workstation) also carries the shared objects it has mapped, as /proc/self/maps lists them,
//! and its ELF interpreter at the path the executable names.

use std::collections::BTreeSet;
use std::hash::Hasher;

use crate::docker::Engine;
use crate::error::ProbeError;

type Result<T> = std::result::Result<T, ProbeError>;

pub const REPO: &str = "netmode-probe";
/// Where the executable lives inside the image.
pub const EXE: &str = "/netmoded";

/// How a probe container starts the executable: set in every probe container's create
/// request, not in the image (Podman's compatible import takes one Dockerfile change at most).
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub entrypoint: Vec<String>,
    /// `LD_LIBRARY_PATH` for a dynamically linked build; empty for a static one.
    pub env: Vec<String>,
}

/// The probe image to create containers from: its `repo:tag`, and how to start it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeImage {
    pub name: String,
    pub launch: Launch,
}

/// One file of the image.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub path: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

fn image_err(what: &str, e: impl std::fmt::Display) -> ProbeError {
    ProbeError::Image {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

/// The ELF interpreter (PT_INTERP) an executable asks for, if it is dynamically linked.
pub fn elf_interpreter(b: &[u8]) -> Option<String> {
    if b.len() < 0x40 || &b[..4] != b"\x7fELF" {
        return None;
    }
    let (is64, le) = (b[4] == 2, b[5] == 1);
    let u16_at = |o: usize| -> Option<u64> {
        let v: [u8; 2] = b.get(o..o + 2)?.try_into().ok()?;
        Some(if le {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        } as u64)
    };
    let u32_at = |o: usize| -> Option<u64> {
        let v: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        } as u64)
    };
    let u64_at = |o: usize| -> Option<u64> {
        let v: [u8; 8] = b.get(o..o + 8)?.try_into().ok()?;
        Some(if le {
            u64::from_le_bytes(v)
        } else {
            u64::from_be_bytes(v)
        })
    };
    let (phoff, phentsize, phnum) = if is64 {
        (u64_at(0x20)?, u16_at(0x36)?, u16_at(0x38)?)
    } else {
        (u32_at(0x1c)?, u16_at(0x2a)?, u16_at(0x2c)?)
    };
    for i in 0..phnum {
        let ph = (phoff + i * phentsize) as usize;
        if u32_at(ph)? != 3 {
            continue; // not PT_INTERP
        }
        let (off, size) = if is64 {
            (u64_at(ph + 0x08)?, u64_at(ph + 0x20)?)
        } else {
            (u32_at(ph + 0x04)?, u32_at(ph + 0x10)?)
        };
        let raw = b.get(off as usize..(off + size) as usize)?;
        return Some(
            String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string(),
        );
    }
    None
}

/// Files mapped into this process (shared objects and the loader), from /proc/self/maps.
fn mapped_files(exe_path: &str) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let path = line.split_whitespace().nth(5).unwrap_or("");
        if path.starts_with('/') && path != exe_path && !line.ends_with("(deleted)") {
            out.insert(path.to_string());
        }
    }
    out.into_iter().collect()
}

/// Everything the probe image holds, and how to start it.
pub fn contents() -> Result<(Vec<File>, Launch)> {
    let exe = std::fs::read("/proc/self/exe").map_err(|e| image_err("read /proc/self/exe", e))?;
    let mut files = vec![File {
        path: EXE.into(),
        bytes: Vec::new(),
        mode: 0o755,
    }];
    let mut launch = Launch {
        entrypoint: vec![EXE.to_string()],
        env: Vec::new(),
    };
    if let Some(interp) = elf_interpreter(&exe) {
        let exe_path = std::fs::read_link("/proc/self/exe")
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut dirs = BTreeSet::new();
        let mut have_interp = false;
        for path in mapped_files(&exe_path) {
            let bytes = std::fs::read(&path).map_err(|e| image_err(&format!("read {path}"), e))?;
            if let Some(dir) = std::path::Path::new(&path).parent() {
                dirs.insert(dir.to_string_lossy().into_owned());
            }
            // The loader is mapped under its real path; the executable names it by another.
            let is_loader =
                std::fs::canonicalize(&interp).ok() == std::fs::canonicalize(&path).ok();
            if is_loader && path != interp {
                files.push(File {
                    path: interp.clone(),
                    bytes: bytes.clone(),
                    mode: 0o755,
                });
                have_interp = true;
            }
            have_interp |= path == interp;
            files.push(File {
                path,
                bytes,
                mode: 0o755,
            });
        }
        if !have_interp {
            return Err(image_err(
                "dynamically linked netmoded",
                format!("its interpreter {interp} is not among the mapped files"),
            ));
        }
        let dirs: Vec<String> = dirs.into_iter().collect();
        launch
            .env
            .push(format!("LD_LIBRARY_PATH={}", dirs.join(":")));
    }
    files[0].bytes = exe;
    Ok((files, launch))
}

/// A tarball of `files` (parent directories are created by the import).
pub fn tarball(files: &[File]) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o1777);
    dir.set_size(0);
    b.append_data(&mut dir, "tmp", std::io::empty())
        .map_err(|e| image_err("tar", e))?;
    for f in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.bytes.len() as u64);
        h.set_mode(f.mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, f.path.trim_start_matches('/'), f.bytes.as_slice())
            .map_err(|e| image_err(&format!("tar {}", f.path), e))?;
    }
    b.into_inner().map_err(|e| image_err("tar", e))
}

/// `netmode-probe:<version>-<hash of the contents>`: a new build gets a new image.
pub fn tag_for(files: &[File]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    for f in files {
        h.write(f.path.as_bytes());
        h.write(&f.bytes);
    }
    format!(
        "{}-{:012x}",
        env!("CARGO_PKG_VERSION"),
        h.finish() & 0xffff_ffff_ffff
    )
}

/// The tag of this executable's image and how to start it, once known: the executable cannot
/// change under a running process, so its files are read and hashed once, not at every probe
/// run (that read the whole binary and, for a dynamic build, its libraries each time: 20 MB of
/// transient allocations that glibc's per-thread arenas then kept).
static KNOWN: std::sync::OnceLock<(String, Launch)> = std::sync::OnceLock::new();

/// How many times an import is tried when its image is gone before it could be named (an
/// image prune at that moment).
const IMPORT_TRIES: u32 = 3;

/// Make sure the probe image of this very executable exists. Older probe images are removed
/// (best effort: one still in use stays).
///
/// Several netmoded may share an engine (and the tests run several at once): each may find the
/// image missing and import it. Each import is unnamed and then named by its id, so no name is
/// ever removed that another daemon's import depends on; where two imports race, the name ends
/// on one, and the daemon whose import lost it removes its own (now nameless) import.
pub async fn ensure(engine: &Engine) -> Result<ProbeImage> {
    let mut read = None;
    let (tag, launch) = match KNOWN.get() {
        Some(k) => k.clone(),
        None => {
            let (files, launch) = smol::unblock(contents).await?;
            let t = tag_for(&files);
            let _ = KNOWN.set((t.clone(), launch.clone()));
            read = Some(files);
            (t, launch)
        }
    };
    let image = ProbeImage {
        name: format!("{REPO}:{tag}"),
        launch,
    };
    let mut tar = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if engine.image_exists(&image.name).await? {
            return Ok(image);
        }
        // First use, or removed since (docker image prune): build it (the tarball shared, not
        // copied, when an attempt is repeated).
        let bytes = match &tar {
            Some(t) => hyper::body::Bytes::clone(t),
            None => {
                let files = match read.take() {
                    Some(f) => f,
                    None => smol::unblock(contents).await?.0,
                };
                let size: usize = files.iter().map(|f| f.bytes.len()).sum();
                log::info!(
                    "building probe image {} ({} files, {:.1} MiB)",
                    image.name,
                    files.len(),
                    size as f64 / (1 << 20) as f64
                );
                let t = hyper::body::Bytes::from(smol::unblock(move || tarball(&files)).await?);
                tar.insert(t).clone()
            }
        };
        let id = engine
            .import_image(bytes)
            .await
            .map_err(ProbeError::docker("import the probe image"))?;
        if let Err(e) = engine.tag_image(&id, REPO, &tag).await {
            // Gone before it was named (a prune, or an older netmoded removing `latest`): look
            // again, another daemon may have made the image meanwhile.
            log::info!("probe import {id} not named ({e}); try {attempt}");
            remove_own_import(engine, &id).await;
            if attempt == IMPORT_TRIES {
                return Err(ProbeError::docker(format!(
                    "name the probe image {}",
                    image.name
                ))(e));
            }
            continue;
        }
        // Another daemon named its own import after this one: the name is its, this import
        // is nameless and nobody else's.
        match engine.image_id(&image.name).await {
            Ok(Some(named)) if named != id => remove_own_import(engine, &id).await,
            _ => {}
        }
        for old in stale_names(&engine.image_tags(REPO).await?, &tag) {
            match engine.remove_image(&old).await {
                Ok(()) => log::info!("removed old probe image {old}"),
                Err(e) => log::debug!("old probe image {old} stays: {e}"),
            }
        }
        return Ok(image);
    }
}

/// Remove an import this daemon made that carries no name (best effort: a container that
/// started from it keeps it).
async fn remove_own_import(engine: &Engine, id: &str) {
    match engine.remove_image_id(id).await {
        Ok(()) => log::debug!("removed the nameless probe import {id}"),
        Err(e) => log::debug!("the nameless probe import {id} stays: {e}"),
    }
}

/// The names to remove among the probe images (each listed with its `repo:tag` names) once
/// the image tagged `current` exists: older executables' tags. A `latest` name is left alone:
/// older netmoded imported with a name, which Podman 4 turns into `latest` whatever tag was
/// asked for, and where it is an image's only name (another daemon's import, not yet tagged)
/// removing it removes the image under it; a daemon that listed it as a second name may find
/// it moved to such an import by the time it removes it.
fn stale_names(images: &[Vec<String>], current: &str) -> Vec<String> {
    // Podman lists `docker.io/library/netmode-probe:TAG` (or `localhost/...`): the tag alone
    // tells the images apart.
    let tag = |name: &str| name.rsplit_once(':').map(|(_, t)| t.to_string());
    images
        .iter()
        .filter(|names| !names.iter().any(|n| tag(n).as_deref() == Some(current)))
        .flatten()
        .filter(|n| tag(n).as_deref() != Some("latest"))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_older_tags_are_stale_never_latest() {
        let images = vec![
            // This executable's, with the name an older netmoded's import got from Podman 4.
            names(&[
                "docker.io/library/netmode-probe:latest",
                "docker.io/library/netmode-probe:0.1.0-aa",
            ]),
            // Older executables': the tag goes, `latest` stays.
            names(&["netmode-probe:0.1.0-bb"]),
            names(&[
                "localhost/netmode-probe:latest",
                "localhost/netmode-probe:0.1.0-cc",
            ]),
            // Another daemon's import, not tagged yet: left alone.
            names(&["localhost/netmode-probe:latest"]),
        ];
        assert_eq!(
            stale_names(&images, "0.1.0-aa"),
            names(&["netmode-probe:0.1.0-bb", "localhost/netmode-probe:0.1.0-cc"])
        );
        // This executable's image alone: nothing to remove.
        assert!(stale_names(&[names(&["netmode-probe:0.1.0-aa"])], "0.1.0-aa").is_empty());
    }

    #[test]
    fn reads_the_interpreter_of_real_executables() {
        // This test binary is dynamically linked (a normal cargo test build).
        let me = std::fs::read("/proc/self/exe").unwrap();
        let interp = elf_interpreter(&me).expect("dynamic test binary has PT_INTERP");
        assert!(interp.contains("ld-"), "{interp}");
        // Busybox from busybox-static has none.
        if let Ok(bb) = std::fs::read("/bin/busybox")
            && std::process::Command::new("ldd")
                .arg("/bin/busybox")
                .output()
                .is_ok_and(|o| !o.status.success())
        {
            assert_eq!(elf_interpreter(&bb), None);
        }
        assert_eq!(elf_interpreter(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn a_dynamic_build_carries_its_libraries_and_loader() {
        let (files, launch) = contents().unwrap();
        assert_eq!(files[0].path, EXE);
        let interp = elf_interpreter(&files[0].bytes).unwrap();
        assert!(files.iter().any(|f| f.path == interp), "loader at {interp}");
        assert!(
            files.iter().any(|f| f.path.contains("libc.so")),
            "{:?}",
            files.iter().map(|f| &f.path).collect::<Vec<_>>()
        );
        assert_eq!(launch.entrypoint, [EXE]);
        assert!(launch.env.iter().any(|c| c.starts_with("LD_LIBRARY_PATH=")));
        let tar = tarball(&files).unwrap();
        let mut a = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"netmoded".to_string()), "{names:?}");
        assert_eq!(tag_for(&files), tag_for(&files));
    }
}
