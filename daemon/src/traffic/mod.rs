//! The traffic toolkit: netmode's own receiver and senders, with no Docker in sight. Used by
//! `netmoded send` and `netmoded sink`, by probe containers (which run `netmoded send`), by the
//! probe engine's in-place sender, and by the study.
//!
//! - `wire`: the protocol between a sender and a netmode sink (and the sink's report query).
//! - `socket`: the socket primitives both ends use (pacing, batched UDP, TCP streams).
//! - `sink`: the receiver (TCP and UDP), reporting per session what arrived.
//! - `sender`, `iperf3`: the senders, to a netmode sink or to a stock `iperf3 -s`.
//! - `perf`: hardware counters of a sender (perf_event_open).

pub mod iperf3;
pub mod perf;
pub mod sender;
pub mod sink;
pub mod socket;
pub mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use netmode_advisor::api::{Direction, Pattern, PerfCounts, Protocol};
use serde::{Deserialize, Serialize};

use crate::error::TrafficError;

/// Where probe traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A netmode sink (`netmoded sink`, or the daemon's local sink).
    Netmode(SocketAddr),
    /// A stock `iperf3 -s`.
    Iperf3(SocketAddr),
}

impl Target {
    /// Parse `netmode://HOST:PORT` or `iperf3://HOST:PORT`, resolving HOST now (probe
    /// containers get the address, never a name to resolve).
    pub fn parse(s: &str) -> Result<Target, TrafficError> {
        let bad = |reason: String| TrafficError::Target {
            target: s.to_string(),
            reason,
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("expected netmode://HOST:PORT or iperf3://HOST:PORT".into()))?;
        let addr = rest
            .to_socket_addrs()
            .map_err(|e| bad(format!("cannot resolve {rest:?}: {e}")))?
            .next()
            .ok_or_else(|| bad(format!("{rest:?} resolves to no address")))?;
        match scheme {
            "netmode" => Ok(Target::Netmode(addr)),
            "iperf3" => Ok(Target::Iperf3(addr)),
            other => Err(bad(format!("unknown scheme {other:?} (netmode or iperf3)"))),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Netmode(a) | Target::Iperf3(a) => *a,
        }
    }

    /// The same target on port + `offset` (iperf3 serves one test per port).
    pub fn with_port_offset(&self, offset: u16) -> Target {
        let mut a = self.addr();
        a.set_port(a.port().wrapping_add(offset));
        match self {
            Target::Netmode(_) => Target::Netmode(self.addr()),
            Target::Iperf3(_) => Target::Iperf3(a),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Netmode(a) => write!(f, "netmode://{a}"),
            Target::Iperf3(a) => write!(f, "iperf3://{a}"),
        }
    }
}

/// One sender's job.
#[derive(Debug, Clone)]
pub struct SendSpec {
    pub target: Target,
    pub protocol: Protocol,
    /// Message size: bytes per TCP write, UDP datagram payload.
    pub size: usize,
    pub duration: Duration,
    /// Optional cap, bit/s.
    pub rate_bps: Option<u64>,
    /// Tags this sender's traffic at a netmode sink.
    pub session: u32,
    /// Egress: this end sends; ingress: the sink sends and this end receives (a pull).
    pub direction: Direction,
    /// A stream, or request/response (this end asks, the sink answers `size` bytes).
    pub pattern: Pattern,
    /// Request/response: exchanges in flight, each on a connection of its own (as a server's
    /// clients each wait for their own answer). 1 is netperf's TCP_RR; streams ignore it.
    pub in_flight: usize,
}

/// What a sender achieved, with the receiver's view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub sent_bytes: u64,
    pub sent_messages: u64,
    /// Sends the kernel refused (UDP: ENOBUFS and the like); counted, not fatal.
    pub send_errors: u64,
    pub elapsed_s: f64,
    pub received_bytes: u64,
    /// Seconds from the first byte received to the last, at the receiver.
    pub received_active_s: f64,
    pub loss: Option<f64>,
    /// Request/response: transactions completed and their round-trip times.
    #[serde(default)]
    pub transactions: u64,
    #[serde(default)]
    pub latency_p50_us: Option<f64>,
    #[serde(default)]
    pub latency_p99_us: Option<f64>,
}

impl Outcome {
    /// Receiver-side goodput, bit/s: what arrived over the time it took to arrive (the
    /// sender's time when the receiver saw too little to time it).
    pub fn goodput_bps(&self) -> f64 {
        let t = if self.received_active_s >= 0.5 * self.elapsed_s {
            self.received_active_s
        } else {
            self.elapsed_s
        };
        if t > 0.0 {
            self.received_bytes as f64 * 8.0 / t
        } else {
            0.0
        }
    }

    pub fn sent_bps(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.sent_bytes as f64 * 8.0 / self.elapsed_s
        } else {
            0.0
        }
    }
}

/// Resource usage of the sender over its send window (getrusage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub user_s: f64,
    pub system_s: f64,
    pub voluntary_cs: u64,
    pub involuntary_cs: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
}

impl Usage {
    /// `RUSAGE_SELF` (the whole process) or `RUSAGE_THREAD` (the calling thread).
    pub fn now(thread: bool) -> Usage {
        // SAFETY: getrusage fills the zeroed struct.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        let who = if thread {
            libc::RUSAGE_THREAD
        } else {
            libc::RUSAGE_SELF
        };
        unsafe { libc::getrusage(who, &mut r) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Usage {
            user_s: secs(r.ru_utime),
            system_s: secs(r.ru_stime),
            voluntary_cs: r.ru_nvcsw as u64,
            involuntary_cs: r.ru_nivcsw as u64,
            minor_faults: r.ru_minflt as u64,
            major_faults: r.ru_majflt as u64,
        }
    }

    pub fn since(&self, before: &Usage) -> Usage {
        Usage {
            user_s: (self.user_s - before.user_s).max(0.0),
            system_s: (self.system_s - before.system_s).max(0.0),
            voluntary_cs: self.voluntary_cs.saturating_sub(before.voluntary_cs),
            involuntary_cs: self.involuntary_cs.saturating_sub(before.involuntary_cs),
            minor_faults: self.minor_faults.saturating_sub(before.minor_faults),
            major_faults: self.major_faults.saturating_sub(before.major_faults),
        }
    }
}

/// The JSON line `netmoded send --json` prints: what a probe container reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SenderReport {
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub usage: Usage,
    /// Counted by the sender itself when asked (`--perf`); the daemon counts probe
    /// containers from outside instead.
    pub perf: Option<PerfCounts>,
    /// The CPU the sender was on when it finished.
    #[serde(default)]
    pub cpu: Option<u32>,
}

/// Run one sender to completion, measuring its own usage.
pub fn send(spec: &SendSpec, thread_usage: bool) -> SenderReport {
    let before = Usage::now(thread_usage);
    let result = match spec.target {
        Target::Netmode(_) => sender::run(spec),
        Target::Iperf3(_) => iperf3::run(spec),
    };
    let usage = Usage::now(thread_usage).since(&before);
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = u32::try_from(unsafe { libc::sched_getcpu() }).ok();
    let mut report = match result {
        Ok(o) => SenderReport {
            outcome: Some(o),
            usage,
            ..Default::default()
        },
        Err(e) => SenderReport {
            error: Some(e.to_string()),
            usage,
            ..Default::default()
        },
    };
    report.cpu = cpu;
    report
}

/// A random session id (from the clock and pid; uniqueness per sink is all that matters).
pub fn new_session() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (t as u64) ^ ((std::process::id() as u64) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_name_what_is_wrong() {
        assert_eq!(
            Target::parse("iperf3://127.0.0.1:5201").unwrap(),
            Target::Iperf3("127.0.0.1:5201".parse().unwrap())
        );
        assert_eq!(
            Target::parse("netmode://[::1]:5291").unwrap(),
            Target::Netmode("[::1]:5291".parse().unwrap())
        );
        assert!(
            Target::parse("127.0.0.1:5201")
                .unwrap_err()
                .to_string()
                .contains("expected")
        );
        assert!(
            Target::parse("http://127.0.0.1:1")
                .unwrap_err()
                .to_string()
                .contains("unknown scheme")
        );
        let t = Target::parse("iperf3://127.0.0.1:5201").unwrap();
        assert_eq!(t.with_port_offset(2).addr().port(), 5203);
    }

    #[test]
    fn goodput_uses_the_receivers_time() {
        let o = Outcome {
            received_bytes: 1_000_000,
            received_active_s: 2.0,
            elapsed_s: 2.1,
            ..Default::default()
        };
        assert_eq!(o.goodput_bps(), 4_000_000.0);
        let tiny = Outcome {
            received_bytes: 64,
            received_active_s: 0.0,
            elapsed_s: 2.0,
            ..Default::default()
        };
        assert_eq!(tiny.goodput_bps(), 256.0);
    }
}
