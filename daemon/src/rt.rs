//! The daemon's event loop: one smol executor on the main thread.

use std::future::Future;

static EXECUTOR: smol::Executor<'static> = smol::Executor::new();

/// Spawn a task on the daemon's executor.
pub fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> smol::Task<T> {
    EXECUTOR.spawn(f)
}

/// Run `f` (and every spawned task) on the current thread until `f` completes.
pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    async_io::block_on(EXECUTOR.run(f))
}
