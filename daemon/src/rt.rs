//! The daemon's runtime: one smol executor on the main thread, the wall clock, and the
//! poison-tolerant lock helpers every shared structure uses.

use std::future::Future;
use std::sync::RwLock;

static EXECUTOR: smol::Executor<'static> = smol::Executor::new();

static TASKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a live task from its spawn until its future is dropped (finished or cancelled).
struct Live;

impl Drop for Live {
    fn drop(&mut self) {
        TASKS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Spawn a task on the daemon's executor.
pub fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> smol::Task<T> {
    TASKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let live = Live;
    EXECUTOR.spawn(async move {
        let _live = live;
        f.await
    })
}

/// Tasks alive on the executor (for `/metrics`: a leak shows as growth).
pub fn tasks() -> usize {
    TASKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Run `f` (and every spawned task) on the current thread until `f` completes.
pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    async_io::block_on(EXECUTOR.run(f))
}

/// A unit enum's name on the wire (`rolled_back`, `advisor`): its serde name, so there is no
/// second spelling to keep in step.
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Milliseconds on a monotonic clock (since the first call): for timeouts, which a wall
/// clock set back or forward must not fire.
pub fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

pub fn lock<T>(l: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
