//! `netmoded` as a library: the daemon (`cli::run`), the traffic toolkit, the probe engine
//! and everything they stand on, so that the study runner and the tests can use the same
//! parts the daemon does. `docs/architecture.md` is the map.
//!
//! Layers, from the edge in (a module only uses those below it):
//! - `cli`: one file per subcommand; `main.rs` is a thin wrapper around `cli::main`.
//! - `http`: the endpoint (`routes`, `metrics`); `systemd` (notify protocol); `reload`.
//! - `tick` (sample, then evaluate), `live` (the sampler), `advice` (the policy in the daemon),
//!   `view` (what the API shows), `probe` (queue, plan, engine, runner), `apply` (mode
//!   changes), `docker` (engine layer, inventory, watcher).
//! - `mode`: one driver per network mode; `traffic`: senders, sink, perf counters.
//! - `state` (what is observed now), `state_dir` (what is kept), `config`, `error`, `rt`,
//!   `heap` (the heap's figures in a benchmark build).
//! - `sys`: netlink, sock_diag, /proc, cgroups, network namespaces.

pub mod advice;
pub mod apply;
pub mod cli;
pub mod config;
pub mod docker;
pub mod error;
pub mod heap;
pub mod http;
pub mod live;
pub mod mode;
pub mod probe;
pub mod reload;
pub mod rt;
pub mod state;
pub mod state_dir;
pub mod sys;
pub mod systemd;
#[cfg(test)]
mod testing;
pub mod tick;
pub mod traffic;
pub mod view;
