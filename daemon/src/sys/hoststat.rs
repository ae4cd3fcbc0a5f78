//! Host-level CPU figures from /proc/stat and /proc/softirqs.

use std::io;
use std::time::Instant;

use procfs::CurrentSI;

/// Cumulative host counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    pub at: Instant,
    pub cpus: u32,
    /// Clock ticks, all CPUs.
    pub total: u64,
    pub idle: u64,
    pub softirq: u64,
    pub context_switches: u64,
    pub net_rx_softirqs: u64,
    pub net_tx_softirqs: u64,
}

/// Figures over the interval between two snapshots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuRates {
    pub utilisation: f64,
    pub softirq_share: f64,
    pub context_switches_per_s: f64,
    pub net_rx_softirqs_per_s: f64,
    pub net_tx_softirqs_per_s: f64,
}

pub fn read() -> io::Result<CpuSnapshot> {
    let stat = procfs::KernelStats::current().map_err(io::Error::other)?;
    let t = &stat.total;
    let idle = t.idle + t.iowait.unwrap_or(0);
    let total = t.user
        + t.nice
        + t.system
        + idle
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    let (net_rx, net_tx) = net_softirqs(&std::fs::read_to_string("/proc/softirqs")?);
    Ok(CpuSnapshot {
        at: Instant::now(),
        cpus: stat.cpu_time.len().max(1) as u32,
        total,
        idle,
        softirq: t.softirq.unwrap_or(0),
        context_switches: stat.ctxt,
        net_rx_softirqs: net_rx,
        net_tx_softirqs: net_tx,
    })
}

/// NET_RX and NET_TX totals over all CPUs from the text of /proc/softirqs.
pub fn net_softirqs(text: &str) -> (u64, u64) {
    let sum = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|v| v.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    };
    (sum("NET_RX:"), sum("NET_TX:"))
}

/// NET_RX softirqs per CPU from `/proc/softirqs`.
pub fn net_rx_per_cpu(text: &str) -> Vec<u64> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("NET_RX:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|v| v.parse::<u64>().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn rates(prev: &CpuSnapshot, cur: &CpuSnapshot) -> Option<CpuRates> {
    let dt = cur.at.duration_since(prev.at).as_secs_f64();
    let ticks = cur.total.checked_sub(prev.total)? as f64;
    if dt <= 0.0 || ticks <= 0.0 {
        return None;
    }
    let idle = cur.idle.saturating_sub(prev.idle) as f64;
    Some(CpuRates {
        utilisation: ((ticks - idle) / ticks).clamp(0.0, 1.0),
        softirq_share: (cur.softirq.saturating_sub(prev.softirq) as f64 / ticks).clamp(0.0, 1.0),
        context_switches_per_s: cur.context_switches.saturating_sub(prev.context_switches) as f64
            / dt,
        net_rx_softirqs_per_s: cur.net_rx_softirqs.saturating_sub(prev.net_rx_softirqs) as f64 / dt,
        net_tx_softirqs_per_s: cur.net_tx_softirqs.saturating_sub(prev.net_tx_softirqs) as f64 / dt,
    })
}

/// The TCP segments this process's network namespace has received, sent, retransmitted and
/// reset (`/proc/self/net/snmp`), summed: a figure that stands still only while no TCP socket
/// of the namespace moves a byte or changes state. `None` when unreadable.
pub fn tcp_segments() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/net/snmp").ok()?;
    tcp_segments_in(&text)
}

pub fn tcp_segments_in(snmp: &str) -> Option<u64> {
    let mut rows = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let names: Vec<&str> = rows.next()?.split_whitespace().collect();
    let values: Vec<&str> = rows.next()?.split_whitespace().collect();
    let mut sum = 0u64;
    for key in ["InSegs", "OutSegs", "RetransSegs", "InErrs", "OutRsts"] {
        let i = names.iter().position(|n| *n == key)?;
        sum = sum.wrapping_add(values.get(i)?.parse().ok()?);
    }
    Some(sum)
}

pub fn hostname() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "unknown".into())
}

pub fn kernel() -> String {
    read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into())
}

fn read_trimmed(p: &str) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softirq_lines_are_summed_over_cpus() {
        let text = "                    CPU0       CPU1\n          HI:          1          0\n      \
                    NET_TX:         10         20\n      NET_RX:        300        400\n";
        assert_eq!(net_softirqs(text), (700, 30));
        assert_eq!(net_rx_per_cpu(text), [300, 400]);
        assert_eq!(net_rx_per_cpu(""), Vec::<u64>::new());
    }

    #[test]
    fn tcp_segments_are_read_by_column_name() {
        let text = "Ip: Forwarding\nIp: 1\nTcp: InSegs OutSegs X RetransSegs InErrs OutRsts\n\
                    Tcp: 100 200 7 3 1 4\n";
        assert_eq!(tcp_segments_in(text), Some(308));
        assert_eq!(
            tcp_segments_in("Tcp: InSegs\nTcp: 1\n"),
            None,
            "missing columns"
        );
        assert_eq!(tcp_segments_in("Udp: InDatagrams\nUdp: 1\n"), None);
    }

    /// The figure the sampler trusts to skip a dump moves with a real loopback connection.
    #[test]
    fn a_real_connection_moves_the_tcp_segment_count() {
        use std::io::{Read, Write};
        let before = tcp_segments().expect("/proc/self/net/snmp");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        let after = tcp_segments().unwrap();
        assert!(after >= before + 4, "{before} -> {after}");
    }

    #[test]
    fn real_counters_move_forward() {
        let a = read().unwrap();
        // Burn a little CPU so the tick counters advance.
        let until = Instant::now() + std::time::Duration::from_millis(120);
        let mut x = 0u64;
        while Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let b = read().unwrap();
        assert!(b.cpus >= 1);
        assert!(b.context_switches >= a.context_switches);
        let r = rates(&a, &b).expect("ticks advanced");
        assert!(r.utilisation > 0.0 && r.utilisation <= 1.0, "{r:?} {x}");
    }
}
