//! Network namespaces of other processes: which one a process is in, and running code inside
//! one. `enter` is the only place netmoded calls setns(2); it affects the calling thread alone,
//! so it is only ever called on a thread made for the purpose, which ends with the work.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// Inode of the network namespace `pid` lives in: equal inodes, same namespace.
pub fn inode(pid: u32) -> io::Result<u64> {
    Ok(std::fs::metadata(format!("/proc/{pid}/ns/net"))?.ino())
}

/// The namespace of `pid`, as a file (what netlink's NETNSID and setns take).
pub fn open(pid: u32) -> io::Result<File> {
    File::open(format!("/proc/{pid}/ns/net"))
}

/// Move the calling thread into the network namespace of `pid`. Call it only on a thread of
/// its own (see `spawn_in`, `in_each`): the thread stays there.
fn enter(pid: u32) -> io::Result<()> {
    let ns = open(pid)?;
    // SAFETY: setns on the calling thread only, with a namespace fd we opened and hold.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run `f` inside the network namespace of each `(key, pid)`, one after the other, on a
/// dedicated thread. Namespaces that cannot be entered and calls that give `None` are left
/// out. Blocking: call it off the event loop.
pub fn in_each<K, T>(
    what: &'static str,
    namespaces: Vec<(K, u32)>,
    f: impl Fn() -> Option<T> + Send + 'static,
) -> Vec<(K, T)>
where
    K: Send + 'static,
    T: Send + 'static,
{
    if namespaces.is_empty() {
        return Vec::new();
    }
    let scan = std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let mut out = Vec::new();
            for (key, pid) in namespaces {
                if enter(pid).is_err() {
                    continue;
                }
                if let Some(v) = f() {
                    out.push((key, v));
                }
            }
            out
        });
    match scan {
        Ok(h) => h.join().unwrap_or_default(),
        Err(e) => {
            log::debug!("{what} thread: {e}");
            Vec::new()
        }
    }
}

/// Run `f` on a new thread inside the network namespace of `pid`, and await its result.
pub async fn spawn_in<T: Send + 'static>(
    what: &'static str,
    pid: u32,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let (tx, rx) = smol::channel::bounded(1);
    std::thread::Builder::new()
        .name(what.into())
        .spawn(move || {
            let r = enter(pid).map(|()| f());
            let _ = tx.send_blocking(r);
        })?;
    rx.recv()
        .await
        .map_err(|_| io::Error::other(format!("the {what} thread died")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_shares_our_namespace_and_code_runs_inside_it() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let same = inode(child.id()).unwrap() == inode(me).unwrap();
        let ours = inode(me).unwrap();
        let seen = in_each("netns-test", vec![("child", child.id())], || {
            inode(std::process::id()).ok()
        });
        let inside = smol::block_on(spawn_in("netns-test", child.id(), move || {
            std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino())
        }));
        let _ = child.kill();
        let _ = child.wait();
        assert!(same, "a child shares our network namespace");
        assert_eq!(seen, vec![("child", ours)]);
        assert_eq!(inside.unwrap().unwrap(), ours);
        // A process that does not exist: an error, not a panic or a thread stuck elsewhere.
        let gone = smol::block_on(spawn_in("netns-test", u32::MAX, || ()));
        assert!(gone.is_err());
    }
}
