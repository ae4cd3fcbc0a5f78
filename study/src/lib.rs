//! `netmode-study`: reruns the paper's whole experiment on the gateway it runs on (a native
//! process vs a container in bridge mode, bridge vs host for one container, 1..N concurrent
//! containers in each mode) with the daemon's own probe runner, and draws its tables and
//! figures beside the paper's.
//!
//! - `plan`: which cells, in which order (pure);
//! - `results`: what is kept, medians and spread (pure);
//! - `render`, `paper`: the CSV, SVG figures, tables and HTML report (pure);
//! - `run`, `machine`: carrying it out (Docker, the sink, signals).

pub mod error;
pub mod machine;
pub mod paper;
pub mod plan;
pub mod render;
pub mod results;
pub mod run;
