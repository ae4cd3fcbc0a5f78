//! What a study measures, decided without I/O: the cells of Figures 3, 4 and 5, in the order
//! they run. Repetitions are the outer loop and the modes of a comparison run back to back, so
//! that drift over the study (thermal, other load) hits every mode alike.

use std::time::Duration;

use netmode_advisor::api::{Direction, Pattern, Protocol};
use serde::{Deserialize, Serialize};

/// Where a sender runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A thread of the study itself, in the host's network namespace: a native process.
    Native,
    /// A container on Docker's default bridge.
    Bridge,
    /// A container in host mode.
    Host,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Bridge => "bridge",
            Mode::Host => "host",
        }
    }
}

/// The study's options (`netmode-study --help`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub protocols: Vec<Protocol>,
    pub sizes: Vec<u32>,
    /// Figure 5: 1..=max_n concurrent containers.
    pub max_n: u32,
    /// Figure 5's traffic (the paper: TCP, 64 B).
    pub multi_protocol: Protocol,
    pub multi_size: u32,
    /// Figure 5's kind of traffic: an egress stream (the paper's), an ingress stream, or
    /// request/response.
    #[serde(default)]
    pub multi_direction: Direction,
    #[serde(default)]
    pub multi_pattern: Pattern,
    #[serde(with = "humantime_serde_secs")]
    pub duration: Duration,
    pub repetitions: u32,
    /// CPUs each container may use (`--cpus`), if limited.
    pub cpus: Option<f64>,
    /// A cap on the link to the local sink, bit/s (`tc tbf` on its veth), imitating the
    /// paper's 20 Mbit/s 802.11g link.
    #[serde(default)]
    pub link_rate: Option<u64>,
    /// Whether the single-sender cells (Figures 3 and 4, Tables 1 and 2) run: `--figures 5`
    /// measures only Figure 5 (what the decision harness needs as its oracle).
    #[serde(default = "yes")]
    pub single: bool,
}

fn yes() -> bool {
    true
}

mod humantime_serde_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

impl Options {
    /// Short cells, for a first look (a few minutes on a Pi).
    pub fn quick(cpus: u32) -> Options {
        Options {
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            sizes: vec![64, 1024],
            max_n: cpus + 1,
            multi_protocol: Protocol::Tcp,
            multi_size: 64,
            multi_direction: Direction::Egress,
            multi_pattern: Pattern::Stream,
            duration: Duration::from_secs(5),
            repetitions: 3,
            cpus: None,
            link_rate: None,
            single: true,
        }
    }

    /// The (protocol, size) pairs of the single-sender cells, protocols outermost: each size
    /// with the protocols that carry it (a size above UDP's largest datagram is TCP's alone).
    pub fn pairs(&self) -> Vec<(Protocol, u32)> {
        self.protocols
            .iter()
            .flat_map(|&p| {
                self.sizes
                    .iter()
                    .filter(move |&&z| z <= p.max_message())
                    .map(move |&z| (p, z))
            })
            .collect()
    }

    /// The paper's own settings: 60 s cells, 1 to 4 containers.
    pub fn paper() -> Options {
        Options {
            max_n: 4,
            duration: Duration::from_secs(60),
            ..Options::quick(3)
        }
    }
}

/// Which figure a cell belongs to. Figure 3's bridge cells and Figure 4's are the same
/// measurement; Figure 5's n = 1 cells are measured again with its own traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Experiment {
    /// Figures 3 and 4, Tables 1 and 2: one sender, each mode, each protocol and size.
    Single,
    /// Figure 5: n concurrent containers.
    Multi,
}

/// One measurement to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CellKey {
    pub experiment: Experiment,
    pub mode: Mode,
    pub protocol: Protocol,
    pub size: u32,
    pub n: u32,
    pub rep: u32,
}

impl CellKey {
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} B{} rep {}",
            self.mode.as_str(),
            self.protocol.as_str(),
            self.size,
            if self.experiment == Experiment::Multi {
                format!(" x{}", self.n)
            } else {
                String::new()
            },
            self.rep + 1
        )
    }
}

/// Every cell, in the order it runs.
pub fn cells(o: &Options) -> Vec<CellKey> {
    let mut v = Vec::new();
    for rep in 0..o.repetitions {
        for &(protocol, size) in o.pairs().iter().filter(|_| o.single) {
            for mode in [Mode::Native, Mode::Bridge, Mode::Host] {
                v.push(CellKey {
                    experiment: Experiment::Single,
                    mode,
                    protocol,
                    size,
                    n: 1,
                    rep,
                });
            }
        }
        for n in 1..=o.max_n {
            for mode in [Mode::Bridge, Mode::Host] {
                v.push(CellKey {
                    experiment: Experiment::Multi,
                    mode,
                    protocol: o.multi_protocol,
                    size: o.multi_size,
                    n,
                    rep,
                });
            }
        }
    }
    v
}

/// Time a study takes, roughly: cells times (duration + the setup a cell costs).
pub fn estimate(o: &Options, remaining: usize) -> Duration {
    (o.duration + Duration::from_secs(2)) * remaining as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_above_udp_s_largest_datagram_is_measured_over_tcp_alone() {
        let o = Options {
            sizes: vec![64, 131_072],
            ..Options::quick(2)
        };
        assert_eq!(
            o.pairs(),
            vec![
                (Protocol::Tcp, 64),
                (Protocol::Tcp, 131_072),
                (Protocol::Udp, 64)
            ]
        );
        let single: Vec<_> = cells(&o)
            .into_iter()
            .filter(|c| c.experiment == Experiment::Single)
            .collect();
        assert_eq!(single.len(), 3 * 3 * 3);
        assert!(
            !single
                .iter()
                .any(|c| c.protocol == Protocol::Udp && c.size > Protocol::Udp.max_message())
        );
    }

    #[test]
    fn every_cell_once_repetitions_outermost_modes_back_to_back() {
        let o = Options::quick(2);
        let cells = cells(&o);
        // 3 reps x (2 protocols x 2 sizes x 3 modes + 3 n x 2 modes)
        assert_eq!(cells.len(), 3 * (12 + 6));
        let unique: std::collections::HashSet<_> = cells.iter().collect();
        assert_eq!(unique.len(), cells.len());
        assert!(cells.windows(2).all(|w| w[0].rep <= w[1].rep));
        // Native, bridge and host of the same traffic are neighbours.
        assert_eq!(
            cells[..3].iter().map(|c| c.mode).collect::<Vec<_>>(),
            [Mode::Native, Mode::Bridge, Mode::Host]
        );
        assert!(
            cells
                .iter()
                .all(|c| c.experiment == Experiment::Single || c.mode != Mode::Native)
        );
    }

    #[test]
    fn figure_5_alone() {
        let o = Options {
            single: false,
            ..Options::quick(2)
        };
        let cells = cells(&o);
        assert_eq!(cells.len(), 3 * 3 * 2);
        assert!(cells.iter().all(|c| c.experiment == Experiment::Multi));
        // An older results.json (no `single`) still reads, as a study of every figure.
        let mut v = serde_json::to_value(Options::quick(2)).unwrap();
        v.as_object_mut().unwrap().remove("single");
        assert!(serde_json::from_value::<Options>(v).unwrap().single);
    }

    #[test]
    fn the_paper_preset_is_the_papers_method() {
        let p = Options::paper();
        assert_eq!(p.duration, Duration::from_secs(60));
        assert_eq!(p.max_n, 4);
        assert_eq!((p.multi_protocol, p.multi_size), (Protocol::Tcp, 64));
    }
}
