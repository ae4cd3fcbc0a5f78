//! The paper's own numbers ("Network performance of containers on an IoT device", Raspberry
//! Pi 3, netperf over 802.11g), as the study's report sets them beside the gateway's.

use netmode_advisor::api::Protocol;

pub const TITLE: &str = "Network performance of containers on an IoT device";
pub const SETUP: &str = "Raspberry Pi 3 (ARMv7, 4 cores, 1 GB), kernel 4.4.38, netperf 60 s \
     streams over 802.11g (20 Mbit/s) to a server; TCP and UDP, 64 B and 1024 B";

/// Container (bridge) vs native goodput, %: negative is the container's loss.
pub fn overhead_pct(p: Protocol) -> f64 {
    match p {
        Protocol::Tcp => -6.0,
        Protocol::Udp => -18.0,
    }
}

/// One container, host vs bridge goodput, % (negative: bridge better), per protocol and size.
pub fn host_vs_bridge_pct(p: Protocol, size: u32) -> Option<f64> {
    match (p, size) {
        // "bridge beats host by 25 % on average for TCP"
        (Protocol::Tcp, _) => Some(-20.0),
        (Protocol::Udp, 64) => Some(0.0),
        // "bridge +8 % at 1024 B"
        (Protocol::Udp, 1024) => Some(-7.4),
        _ => None,
    }
}

/// With several containers host wins; at 4 containers, host vs bridge aggregate goodput, %.
pub const MULTI_HOST_GAIN_PCT: (f64, f64) = (31.0, 45.0);
/// The paper's rule: bridge for one container, host from this many.
pub const CROSSOVER: u32 = 2;

/// Table 1 (container, bridge mode): cycles (x10^6/s), context switches/s, page faults/s, IPC.
pub fn table1(p: Protocol, size: u32) -> Option<[f64; 4]> {
    match (p, size) {
        (Protocol::Tcp, 64) => Some([985.0, 224.0, 13.0, 0.51]),
        (Protocol::Tcp, 1024) => Some([570.0, 343.0, 5.0, 0.42]),
        (Protocol::Udp, 64) => Some([1597.0, 580.0, 6.0, 0.48]),
        (Protocol::Udp, 1024) => Some([510.0, 341.0, 6.0, 0.45]),
        _ => None,
    }
}

/// Table 2 (TCP 64 B): bridge and host, the same columns as Table 1.
pub const TABLE2_BRIDGE: [f64; 4] = [972.0, 224.0, 13.0, 0.51];
pub const TABLE2_HOST: [f64; 4] = [1050.0, 337.0, 14.0, 0.49];
