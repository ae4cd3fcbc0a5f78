//! The state directory: everything netmoded keeps across restarts.
//!
//! A gateway's normal way to stop is a power cut, so every file is replaced atomically
//! (write a temporary file, fsync it, rename it over the old one, fsync the directory): a
//! reader sees the old version or the new one, never a torn one. One daemon per directory,
//! enforced with an advisory lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::StateError;

type Result<T> = std::result::Result<T, StateError>;

const LOCK_FILE: &str = "netmoded.lock";
const INSTANCE_FILE: &str = "instance-id";
/// The bearer token of the mutating endpoints.
pub const TOKEN_FILE: &str = "token";
const TMP_MARK: &str = ".tmp.";

pub struct StateDir {
    path: PathBuf,
    /// Held for the daemon's lifetime: the flock is released when the process ends,
    /// however it ends.
    _lock: File,
    instance_id: String,
}

impl StateDir {
    /// Create (if needed) and lock `path`; clear temporary files a power cut left behind.
    pub fn open(path: &Path) -> Result<StateDir> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(path)
            .map_err(|e| StateError::io("cannot create state directory", path, e))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&lock_path)
            .map_err(|e| StateError::io("cannot open lock file", &lock_path, e))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                return Err(StateError::Locked {
                    path: path.to_path_buf(),
                    pid: pid.trim().to_string(),
                });
            }
            return Err(StateError::io("cannot lock", &lock_path, err));
        }
        lock.set_len(0)
            .and_then(|_| lock.write_all(std::process::id().to_string().as_bytes()))
            .map_err(|e| StateError::io("cannot write lock file", &lock_path, e))?;

        let mut dir = StateDir {
            path: path.to_path_buf(),
            _lock: lock,
            instance_id: String::new(),
        };
        dir.remove_stale_temporaries()?;
        dir.instance_id = match dir.read(INSTANCE_FILE)? {
            Some(bytes) if is_instance_id(&bytes) => String::from_utf8(bytes).unwrap_or_default(),
            other => {
                if other.is_some() {
                    dir.quarantine(INSTANCE_FILE, "not an instance id (16 hex digits)");
                }
                let id = new_instance_id()
                    .map_err(|e| StateError::io("cannot read random bytes", "/dev/urandom", e))?;
                dir.write_atomic(INSTANCE_FILE, id.as_bytes())?;
                id
            }
        };
        Ok(dir)
    }

    /// The credential of the mutating endpoints: `<state_dir>/token`, 64 hex digits made at
    /// first start (mode 0600, so only root and the daemon read it). A file that is not a
    /// token (truncated by a power cut, edited) is replaced by a new one, and said so.
    pub fn token(&self) -> Result<String> {
        match self.read(TOKEN_FILE)? {
            Some(b) if is_token(&b) => return Ok(String::from_utf8_lossy(&b).trim().to_string()),
            Some(_) => {
                self.quarantine(TOKEN_FILE, "not a token (64 hex digits); making a new one");
            }
            None => {}
        }
        let token = random_hex(32)
            .map_err(|e| StateError::io("cannot read random bytes", "/dev/urandom", e))?;
        write_atomic_mode(
            &self.path.join(TOKEN_FILE),
            format!("{token}\n").as_bytes(),
            0o600,
        )?;
        Ok(token)
    }

    /// A JSON-lines file (a history, oldest first). Lines that do not parse (an older
    /// format, a hand edit, a torn last line) are skipped with a warning; the file as found
    /// is kept aside (`quarantine`) and replaced by the lines that parsed.
    pub fn read_lines<T: serde::de::DeserializeOwned + serde::Serialize>(
        &self,
        name: &str,
    ) -> Result<Vec<T>> {
        let Some(bytes) = self.read(name)? else {
            return Ok(Vec::new());
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut out = Vec::new();
        let mut bad = 0;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<T>(line) {
                Ok(r) => out.push(r),
                Err(e) => {
                    bad += 1;
                    log::warn!("{}/{name}:{}: skipped: {e}", self.path.display(), i + 1);
                }
            }
        }
        if bad > 0 {
            let kept = self.quarantine(name, &format!("{bad} line(s) unreadable"));
            let mut good = Vec::new();
            for r in &out {
                if let Ok(line) = serde_json::to_vec(r) {
                    good.extend_from_slice(&line);
                    good.push(b'\n');
                }
            }
            self.write_atomic(name, &good)?;
            log::warn!(
                "{}/{name}: the {} readable line(s) kept; the file as found is {}",
                self.path.display(),
                out.len(),
                kept.display()
            );
        }
        Ok(out)
    }

    /// A state file found unreadable at start (a power cut, a full disk, a hand edit):
    /// renamed to `<name>.corrupt-<unix ms>` beside it, kept for whoever wants to look, and
    /// said so. Never fails: if even the rename fails, the file is left where it is (it is
    /// replaced by the next write) and that is logged. The path it was moved to.
    pub fn quarantine(&self, name: &str, reason: &str) -> PathBuf {
        let from = self.path.join(name);
        let to = self
            .path
            .join(format!("{name}.corrupt-{}", crate::rt::now_ms()));
        match fs::rename(&from, &to) {
            Ok(()) => {
                log::warn!(
                    "{}: {reason}; moved aside to {}",
                    from.display(),
                    to.display()
                );
                to
            }
            Err(e) => {
                log::warn!(
                    "{}: {reason}; cannot move it aside ({e}): it will be overwritten",
                    from.display()
                );
                from
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A random id that names this daemon's installation (stable across restarts). Docker
    /// objects netmoded creates carry it, so a restart can find and remove its own leftovers
    /// without touching anyone else's.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Replace `name` atomically with `bytes`.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.path.join(name), bytes)
    }

    /// The contents of `name`, or `None` if it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let p = self.path.join(name);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::io("cannot read", p, e)),
        }
    }

    fn remove_stale_temporaries(&self) -> Result<()> {
        let entries =
            fs::read_dir(&self.path).map_err(|e| StateError::io("cannot list", &self.path, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(TMP_MARK) {
                let p = entry.path();
                log::info!("removing {} left by an interrupted write", p.display());
                fs::remove_file(&p).map_err(|e| StateError::io("cannot remove", p, e))?;
            }
        }
        Ok(())
    }
}

/// Replace `path` atomically: temporary file in the same directory, fsync, rename, fsync of
/// the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o640)
}

/// `write_atomic` with the file's permission bits (a secret: 0o600).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}{TMP_MARK}{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| StateError::io("cannot create", &tmp, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| StateError::io("cannot write", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| StateError::io("cannot rename into place", path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StateError::io("cannot sync directory", dir, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Keep at most `limit` items and `max_bytes`, newest kept; the JSON lines to write.
pub fn trim_lines<T: serde::Serialize>(
    items: &mut Vec<T>,
    limit: usize,
    max_bytes: usize,
) -> Vec<u8> {
    if items.len() > limit {
        items.drain(..items.len() - limit);
    }
    loop {
        let mut out = Vec::new();
        for r in items.iter() {
            if let Ok(line) = serde_json::to_vec(r) {
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
        }
        if out.len() <= max_bytes || items.len() <= 1 {
            return out;
        }
        items.remove(0);
    }
}

fn is_instance_id(b: &[u8]) -> bool {
    b.len() == 16 && b.iter().all(|c| c.is_ascii_hexdigit())
}

fn new_instance_id() -> io::Result<String> {
    random_hex(8)
}

fn is_token(b: &[u8]) -> bool {
    let t = String::from_utf8_lossy(b);
    let t = t.trim();
    t.len() == 64 && t.bytes().all(|c| c.is_ascii_hexdigit())
}

/// `n` random bytes from the kernel, as hex.
fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("netmode-sd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn writes_replace_whole_files_and_leave_no_temporaries() {
        let p = tmpdir("write");
        let sd = StateDir::open(&p).unwrap();
        sd.write_atomic("x.json", b"first").unwrap();
        sd.write_atomic("x.json", b"second").unwrap();
        assert_eq!(sd.read("x.json").unwrap().unwrap(), b"second");
        assert_eq!(sd.read("missing").unwrap(), None);
        let names: Vec<String> = fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(TMP_MARK)), "{names:?}");
        drop(sd);
        fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn second_daemon_on_the_same_directory_is_refused() {
        let p = tmpdir("lock");
        let first = StateDir::open(&p).unwrap();
        let err = StateDir::open(&p).err().expect("second open must fail");
        let shown = err.to_string();
        assert!(shown.contains("in use by another netmoded"), "{shown}");
        assert!(shown.contains(&std::process::id().to_string()), "{shown}");
        drop(first);
        StateDir::open(&p).expect("lock is released with the first");
        fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn the_token_is_secret_stable_and_replaced_when_torn() {
        use std::os::unix::fs::PermissionsExt;
        let p = tmpdir("token");
        let sd = StateDir::open(&p).unwrap();
        let t = sd.token().unwrap();
        assert!(is_token(t.as_bytes()), "{t}");
        let mode = fs::metadata(p.join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        assert_eq!(sd.token().unwrap(), t);
        // A torn file is not a token: a new one, never an empty credential.
        fs::write(p.join(TOKEN_FILE), b"12ab").unwrap();
        let t2 = sd.token().unwrap();
        assert!(is_token(t2.as_bytes()) && t2 != t, "{t2}");
        drop(sd);
        fs::remove_dir_all(&p).unwrap();
    }

    #[test]
    fn instance_id_is_stable_and_interrupted_writes_are_cleaned() {
        let p = tmpdir("inst");
        let id = StateDir::open(&p).unwrap().instance_id().to_string();
        assert_eq!(id.len(), 16);
        // A power cut between create and rename leaves a temporary behind.
        fs::write(p.join(".probes.jsonl.tmp.4242"), b"torn").unwrap();
        let sd = StateDir::open(&p).unwrap();
        assert_eq!(sd.instance_id(), id);
        assert!(!p.join(".probes.jsonl.tmp.4242").exists());
        drop(sd);
        fs::remove_dir_all(&p).unwrap();
    }
}
