//! The daemon's runtime: one smol executor on the main thread, the wall clock, and the
//! poison-tolerant lock helpers every shared structure uses.

use std::future::Future;
use std::sync::RwLock;

static EXECUTOR: smol::Executor<'static> = smol::Executor::new();

static TASKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a task from its spawn until its future is dropped (finished or cancelled).
struct TaskCount;

impl Drop for TaskCount {
    fn drop(&mut self) {
        TASKS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Spawn a task on the daemon's executor.
pub fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> smol::Task<T> {
    TASKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let counted = TaskCount;
    EXECUTOR.spawn(async move {
        let _counted = counted;
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When a loop last turned (monotonic): the sampling loop beats it at every tick, and the
/// systemd watchdog is fed only while it is recent, so a stuck or dead loop gets the daemon
/// restarted even though other tasks still run.
#[derive(Debug, Default)]
pub struct Heartbeat(std::sync::atomic::AtomicU64);

impl Heartbeat {
    pub fn beat(&self) {
        self.0
            .store(mono_ms().max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Since the last beat; `None` before the first.
    pub fn age(&self) -> Option<std::time::Duration> {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            t => Some(std::time::Duration::from_millis(
                mono_ms().saturating_sub(t),
            )),
        }
    }
}

/// `NETMODE_TEST_END_TASK=<name>` ends that supervised task a second after it starts, and
/// `NETMODE_TEST_STALL_TASK=<name>` stops polling it then (it neither runs nor ends): for the
/// supervision tests; unset in production.
pub const END_TASK_ENV: &str = "NETMODE_TEST_END_TASK";
pub const STALL_TASK_ENV: &str = "NETMODE_TEST_STALL_TASK";

/// Spawn a task that must run as long as the daemon: when it ends or panics, it is logged
/// and its name sent on `ended` (the daemon then exits non-zero, and systemd restarts it).
pub fn supervised(
    name: &'static str,
    ended: smol::channel::Sender<&'static str>,
    f: impl Future<Output = ()> + Send + 'static,
) -> smol::Task<()> {
    use futures_lite::FutureExt;
    spawn(async move {
        let hook = |var: &str| std::env::var(var).is_ok_and(|v| v == name);
        let (end, stall) = (hook(END_TASK_ENV), hook(STALL_TASK_ENV));
        let f = async move {
            if end || stall {
                let cut = async {
                    async_io::Timer::after(std::time::Duration::from_secs(1)).await;
                    true
                };
                // The task's future is dropped when the hook fires.
                if futures_lite::future::or(
                    async {
                        f.await;
                        false
                    },
                    cut,
                )
                .await
                {
                    if stall {
                        log::warn!("{STALL_TASK_ENV}={name}: the task no longer runs");
                        std::future::pending::<()>().await;
                    }
                    log::warn!("{END_TASK_ENV}={name}: ending the task");
                }
            } else {
                f.await
            }
        };
        match std::panic::AssertUnwindSafe(f).catch_unwind().await {
            Ok(()) => log::error!("task {name} ended; netmoded cannot go on without it"),
            Err(_) => log::error!("task {name} panicked; netmoded cannot go on without it"),
        }
        let _ = ended.send(name).await;
    })
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
