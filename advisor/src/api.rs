//! The versioned JSON that `netmoded` serves and that `advisor` and fleet scripts read.
//!
//! Every type here is plain data: the daemon fills it, the CLI prints it, the policy reads it.
//! Field names are part of the v1 API (see `docs/api.md`); add fields, never rename them.

use serde::{Deserialize, Serialize};

/// The API generation served under `/v1/`.
pub const API_VERSION: &str = "v1";

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Status {
    /// netmoded's own version (Cargo package version).
    pub version: String,
    /// API generation, always `"v1"` for this schema.
    pub api: String,
    /// When this document was produced, Unix milliseconds.
    pub generated_at_ms: u64,
    pub host: Host,
    pub docker: DockerInfo,
    /// Running containers, sorted by name.
    pub containers: Vec<Container>,
    /// The probe engine: what runs, what is next, the latest multi-container sweep.
    pub probe: ProbeStatus,
    /// The advisor's view of the whole gateway; `null` before its first evaluation.
    #[serde(default)]
    pub advisor: Option<AdvisorSummary>,
}

/// The part of the advisor's evaluation that concerns the whole gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AdvisorSummary {
    /// `advisor.mode`: `off`, `recommend` or `apply`.
    #[serde(default)]
    pub mode: AdvisorMode,
    /// Names of the network-active containers.
    pub network_active: Vec<String>,
    pub crossover: CrossoverInfo,
}

/// Host-level figures, from `/proc/stat` and `/proc/softirqs`, over the last sample interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
    pub arch: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Seconds between two samples (the `sample_interval` setting).
    pub sample_interval_s: f64,
    /// Busy fraction of all CPUs (0..1); `null` until two samples exist.
    pub cpu_utilisation: Option<f64>,
    /// Fraction of all CPU time spent in softirq context (0..1).
    pub softirq_share: Option<f64>,
    pub context_switches_per_s: Option<f64>,
    /// NET_RX / NET_TX softirqs raised per second, all CPUs.
    pub net_rx_softirqs_per_s: Option<f64>,
    pub net_tx_softirqs_per_s: Option<f64>,
    /// How container traffic is counted on this gateway; `null` before the first sample.
    #[serde(default)]
    pub counting: Option<Counting>,
}

/// How container traffic is counted (each container's `live.source` says what counted it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Counting {
    /// `cgroup_bpf`: BPF programs at the cgroup-v2 root count every packet of every socket
    /// in the kernel, by cgroup, so a container with a cgroup-v2 group of its own is counted
    /// whole in any mode, UDP included. `veth_sock_diag`: bridge containers by their veth
    /// pair, host-mode containers by their TCP sockets alone.
    pub mechanism: String,
    /// Why the per-cgroup counters do not count, when they do not (no CAP_BPF or
    /// CAP_SYS_ADMIN, no cgroup v2, a kernel without cgroup BPF).
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DockerState {
    /// Not yet tried (only right after start).
    Connecting,
    /// Containers listed and the event stream followed.
    Connected,
    /// The engine does not answer; netmoded retries with backoff and keeps serving.
    Unavailable,
}

impl DockerState {
    pub fn as_str(self) -> &'static str {
        match self {
            DockerState::Connecting => "connecting",
            DockerState::Connected => "connected",
            DockerState::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DockerInfo {
    pub state: DockerState,
    /// Where netmoded talks to the engine, e.g. `unix:///var/run/docker.sock`.
    pub endpoint: String,
    /// Which engine answers there, once connected: `docker` (Docker or another Moby engine)
    /// or `podman` (Podman's Docker-compatible service).
    #[serde(default)]
    pub engine: Option<String>,
    /// Engine version, once connected.
    pub server_version: Option<String>,
    /// The API version negotiated with the engine.
    pub api_version: Option<String>,
    /// Why the engine is unavailable (the last error), if it is.
    pub error: Option<String>,
    /// When the state last changed, Unix milliseconds.
    pub since_ms: u64,
}

/// What netmode makes of a container's network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ModeKind {
    /// Docker's default bridge or a user-defined bridge network: veth + Linux bridge.
    Bridge,
    /// The host's network stack.
    Host,
    /// No network at all (loopback only).
    None,
    /// `container:<id>`: shares another container's namespace.
    Container,
    /// A user-defined network of another driver (macvlan, ipvlan, overlay, ...).
    Other,
}

impl ModeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModeKind::Bridge => "bridge",
            ModeKind::Host => "host",
            ModeKind::None => "none",
            ModeKind::Container => "container",
            ModeKind::Other => "other",
        }
    }

    /// The one rule of which containers netmode manages (probes, recommends for, and may
    /// switch): those in bridge or host mode, the two the study compares.
    pub fn is_manageable(self) -> bool {
        self.unmanaged_reason("").is_none()
    }

    /// Why a container in this mode is left alone, as a clause (`network_mode` as Docker
    /// names it); `None` for bridge and host.
    pub fn unmanaged_reason(self, network_mode: &str) -> Option<String> {
        match self {
            ModeKind::Bridge | ModeKind::Host => None,
            ModeKind::None => Some(
                "network mode none: there is no network to compare, and netmode never changes it"
                    .into(),
            ),
            ModeKind::Container => Some(format!(
                "it shares another container's namespace ({network_mode}); that container's mode decides"
            )),
            ModeKind::Other => Some(format!(
                "network {network_mode} uses a driver netmode does not compare yet; it is left as it is"
            )),
        }
    }
}

/// `GET /v1/containers/{id-or-name}`, and one element of `Status::containers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Container {
    /// Full 64-hex container id.
    pub id: String,
    /// Name without Docker's leading slash.
    pub name: String,
    /// Image as the container was created from it (`Config.Image`).
    pub image: String,
    /// Network mode exactly as Docker reports it: `bridge`, `host`, `none`,
    /// `container:<id>`, or the name of a user-defined network.
    pub network_mode: String,
    /// netmode's classification of `network_mode`.
    pub mode_kind: ModeKind,
    /// Networks the container is attached to (empty for host and none).
    pub networks: Vec<NetworkAttachment>,
    /// Host PID of the container's init process.
    pub pid: u32,
    /// `State.StartedAt` as Docker reports it (RFC 3339).
    pub started_at: String,
    pub limits: Limits,
    /// Published ports (`-p`), one per binding.
    pub ports: Vec<PortBinding>,
    /// Ports the image or `--expose` declares (`8080/tcp`), published or not.
    pub exposed_ports: Vec<String>,
    /// `com.docker.compose.project` / `.service` labels, when present.
    pub compose: Option<Compose>,
    /// `netmode.policy` label (auto|bridge|host|ignore), when present.
    pub policy_label: Option<String>,
    /// Live traffic; `null` until netmoded has two samples of this container.
    pub live: Option<Live>,
    /// The latest probe of this container (what it gets in bridge and in host mode);
    /// `null` until it has been probed.
    pub probes: Option<ContainerProbes>,
    /// What netmode recommends for this container, and why; `null` until the first
    /// evaluation (right after start).
    #[serde(default)]
    pub recommendation: Option<Recommendation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NetworkAttachment {
    pub name: String,
    /// Network driver (bridge, macvlan, overlay, ...), when known.
    pub driver: Option<String>,
    pub ip_address: Option<String>,
    /// Network-scoped aliases (Docker DNS names other containers may use).
    pub aliases: Vec<String>,
    /// Legacy links (`--link`) on this network.
    pub links: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Limits {
    /// CPU quota in CPUs (`--cpus`, or quota/period), if limited.
    pub cpus: Option<f64>,
    /// Relative CPU weight (`--cpu-shares`), if set.
    pub cpu_shares: Option<u64>,
    /// CPU set (`--cpuset-cpus`), if set.
    pub cpuset: Option<String>,
    /// Memory limit in bytes (`-m`), if limited.
    pub memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PortBinding {
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Compose {
    pub project: Option<String>,
    pub service: Option<String>,
}

/// How much of a container's traffic netmode can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// Every packet: the host side of the container's veth interfaces.
    Full,
    /// TCP only, from the byte counters of the sockets the container's processes own
    /// (host mode). UDP and other protocols are not counted.
    TcpOnly,
    /// Counted, but in a namespace shared with other containers: the figures are theirs too.
    Shared,
    /// Nothing can be attributed (see `note`).
    None,
}

/// Live traffic of one container over the last sample interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Live {
    /// Bits per second received by the container.
    pub rx_bps: f64,
    /// Bits per second sent by the container.
    pub tx_bps: f64,
    pub rx_pps: f64,
    pub tx_pps: f64,
    /// Mean size of a packet in either direction over the interval; `null` without packets.
    /// Frames for `veth`, IP packets for `cgroup_bpf`, TCP payload per segment for `sock_diag`.
    pub mean_packet_bytes: Option<f64>,
    pub attributed: Attribution,
    /// Where the counters come from: `veth` (the host side of its veth pairs: Ethernet frames),
    /// `cgroup_bpf` (the per-cgroup counters: IP packets of every protocol, host mode),
    /// `sock_diag` (its TCP sockets' byte counters: TCP payload, host mode without the
    /// per-cgroup counters) or `none`.
    pub source: String,
    /// Host-side interfaces counted (veth mode).
    pub interfaces: Vec<String>,
    /// Totals since netmoded started watching this container.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Length of the interval the rates cover, seconds.
    pub interval_s: f64,
    /// A plain statement of what is not seen, when something is not.
    pub note: Option<String>,
    /// Share of the traffic that is TCP (TCP payload against the veth's frames, bridge mode);
    /// `null` when unknown (host mode, or too little traffic to tell).
    #[serde(default)]
    pub tcp_share: Option<f64>,
    /// CPU seconds the container's cgroup spent per GB it moved over the interval: small
    /// messages cost more per byte.
    #[serde(default)]
    pub cpu_s_per_gb: Option<f64>,
    /// CPU microseconds the container's cgroup spent per packet it moved (either way) over
    /// the interval; `null` below 100 packets or where its CPU is not read. For a server
    /// answering requests, about half its CPU per exchange (under a light load, much of it
    /// the cost of waking up for each request rather than its work).
    #[serde(default)]
    pub cpu_us_per_packet: Option<f64>,
    /// Share of its traffic exchanged with other containers of this gateway. Where the
    /// per-cgroup counters count it: bytes of every protocol by each packet's peer address,
    /// over the last interval in which anything moved. Otherwise its TCP alone (peer addresses of its sockets, sock_diag): bytes of its
    /// connections, or where they close between samples, the connections it ended. `null`
    /// when nothing has moved yet (per-cgroup counters) or no TCP moved over the interval.
    #[serde(default)]
    pub local_share: Option<f64>,
    /// The containers of this gateway it exchanged traffic with ("host" for the host's
    /// loopback, host-mode containers).
    #[serde(default)]
    pub local_peers: Vec<String>,
    /// Datagrams its UDP sockets dropped after they arrived (receive buffer full: the
    /// application did not keep up), over the sockets it holds now, since each was opened.
    /// The per-cgroup counters count them as received. `null` where those counters do not
    /// count the container.
    #[serde(default)]
    pub udp_drops: Option<u64>,
}

impl Live {
    /// A container exchanging at least this share of its traffic with containers of this
    /// gateway is probed on that path too.
    pub const LOCAL_DOMINATES: f64 = 0.5;

    /// Packets each way at least this often look like an exchange, not a trickle.
    pub const RR_MIN_PPS: f64 = 50.0;
    /// ... the requests this small on average (the direction of smaller packets) ...
    pub const RR_MAX_MEAN_BYTES: f64 = 300.0;
    /// ... and the answers smaller than a full frame (1514 B) on average: a stream's
    /// segments are full frames, or the stack's offload frames, many times larger.
    pub const RR_MAX_ANSWER_BYTES: f64 = 1400.0;
    /// Answers larger than [`Live::RR_MAX_MEAN_BYTES`] need requests that carry something
    /// the other way: on average more than a bare TCP acknowledgement with a SACK block
    /// (this many bytes over a bare one, [`Live::bare_ack_bytes`]). A stream of small
    /// writes (busybox `nc`: 1.1-1.3 KB frames) gets only bare acknowledgements back, at
    /// 60-70 % of its packet rate; bench/apps' nginx requests average 96 B as frames.
    pub const RR_MIN_REQUEST_OVER_ACK: f64 = 12.0;

    /// A bare TCP acknowledgement (with timestamps) as this container's counters count it:
    /// a 66 B frame on a veth, a 52 B IP packet in the per-cgroup counters, no payload in a
    /// socket's byte counters.
    pub fn bare_ack_bytes(&self) -> f64 {
        match self.source.as_str() {
            "veth" => 66.0,
            "sock_diag" => 0.0,
            _ => 52.0,
        }
    }

    /// The signature of request/response traffic: packets in both directions at similar
    /// rates (each request answered), small ones one way and less than a full frame the
    /// other, as a broker, a polled web service or a web server of small pages shows.
    pub fn request_response_like(&self) -> bool {
        let (lo, hi) = if self.rx_pps < self.tx_pps {
            (self.rx_pps, self.tx_pps)
        } else {
            (self.tx_pps, self.rx_pps)
        };
        if !(lo >= Live::RR_MIN_PPS && lo >= 0.5 * hi) {
            return false;
        }
        let (rx, tx) = (
            self.rx_bps / 8.0 / self.rx_pps,
            self.tx_bps / 8.0 / self.tx_pps,
        );
        let (small, large) = if rx < tx { (rx, tx) } else { (tx, rx) };
        small <= Live::RR_MAX_MEAN_BYTES
            && (large <= Live::RR_MAX_MEAN_BYTES
                || (large <= Live::RR_MAX_ANSWER_BYTES
                    && small > self.bare_ack_bytes() + Live::RR_MIN_REQUEST_OVER_ACK))
    }

    /// Share of the bytes it receives; `None` when it moves nothing.
    pub fn rx_share(&self) -> Option<f64> {
        let total = self.rx_bps + self.tx_bps;
        (total > 0.0).then(|| self.rx_bps / total)
    }
}

// ------------------------------------------------------------------ probes

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// The largest message (bytes) a probe of this protocol writes: for UDP a datagram's
    /// payload, short of the 65507 B one IPv4 datagram carries; for TCP one write, as large as
    /// iperf3's default (128 KiB) so that a bulk stream can be probed as a bulk sender writes.
    pub const fn max_message(self) -> u32 {
        match self {
            Protocol::Tcp => 131_072,
            Protocol::Udp => 65_000,
        }
    }

    /// The first of `sizes` that none of `protocols` carries, with the largest message they
    /// do carry: `(size, largest)`. None if every size is carried (or no protocol is given).
    pub fn first_uncarried(sizes: &[u32], protocols: &[Protocol]) -> Option<(u32, u32)> {
        let largest = protocols.iter().map(|p| p.max_message()).max()?;
        sizes.iter().find(|&&s| s > largest).map(|&s| (s, largest))
    }
}

/// Which way a probe cell's traffic flows, seen from the container.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The container sends to the sink (the paper's experiment; transmit path).
    #[default]
    Egress,
    /// The sink sends to the container (receive path), as `iperf3 -R` does.
    Ingress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }
}

/// The shape of a probe cell's traffic.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// As much as the path carries, one way (the study's experiment).
    #[default]
    Stream,
    /// One request, one answer of the same size, the next request: transactions per second
    /// and latency, where per-packet costs and context switches dominate.
    RequestResponse,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Stream => "stream",
            Pattern::RequestResponse => "request_response",
        }
    }
}

/// Where a probe cell's traffic goes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// To the sink off the container's network (the local sink's namespace behind its own
    /// veth, or `probe.target`): traffic leaving the gateway.
    #[default]
    Upstream,
    /// To a sink on this gateway, as traffic between containers goes: a sink container on
    /// the target's bridge network for bridge and in-place cells, the host's loopback for
    /// host cells (where two host-mode containers talk).
    Local,
}

impl Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Upstream => "upstream",
            Path::Local => "local",
        }
    }
}

/// Where a probe's sender runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ProbeMode {
    /// A probe container on the target's bridge network (Docker's default bridge for a
    /// host-mode target), with the target's CPU and memory limits.
    Bridge,
    /// A probe container in host mode, with the target's limits.
    Host,
    /// From inside the target's own network namespace (a daemon thread; no CPU limits).
    InPlace,
}

impl ProbeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMode::Bridge => "bridge",
            ProbeMode::Host => "host",
            ProbeMode::InPlace => "in_place",
        }
    }
}

/// CPU cycles, instructions and IPC, or why they could not be counted; and CPU migrations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PerfCounts {
    pub cycles: Option<u64>,
    pub instructions: Option<u64>,
    pub ipc: Option<f64>,
    /// Set when the hardware counts (cycles, instructions, IPC) are `null`: the reason (no
    /// PMU, not permitted, ...).
    pub unavailable: Option<String>,
    /// Times the senders moved between CPUs (a software counter: counted also where the
    /// hardware counters are not); `null` where perf_event_open is refused altogether.
    #[serde(default)]
    pub cpu_migrations: Option<u64>,
}

impl PerfCounts {
    pub fn unavailable(reason: impl Into<String>) -> PerfCounts {
        PerfCounts {
            unavailable: Some(reason.into()),
            ..PerfCounts::default()
        }
    }
}

/// System counters of one probe cell (summed over its senders).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CellCounters {
    /// What the process counters cover, e.g. "probe container processes".
    pub scope: String,
    pub cpu_s: f64,
    pub user_s: f64,
    pub system_s: f64,
    pub voluntary_context_switches: u64,
    pub involuntary_context_switches: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    /// NET_RX / NET_TX softirqs raised on the whole host during the cell (softirqs cannot
    /// be attributed to a process).
    pub net_rx_softirqs: u64,
    pub net_tx_softirqs: u64,
    /// NET_RX softirqs per CPU during the cell (index: CPU number): where the receive work
    /// ran, which is where run-to-run differences often come from.
    #[serde(default)]
    pub net_rx_softirqs_per_cpu: Vec<u64>,
    /// The CPU each sender was on when it finished.
    #[serde(default)]
    pub sender_cpus: Vec<u32>,
    pub perf: PerfCounts,
}

/// One measurement: a mode, a protocol, a message size, a number of concurrent senders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProbeCell {
    pub mode: ProbeMode,
    /// Egress: the probe sends to the sink; ingress: the sink sends to the probe. Records
    /// from before netmode probed ingress read as egress.
    #[serde(default)]
    pub direction: Direction,
    /// A stream, or request/response (the probe asks, the sink answers, `in_flight`
    /// transactions at a time; one at a time is netperf's TCP_RR and UDP_RR).
    #[serde(default)]
    pub pattern: Pattern,
    /// Upstream (off the gateway) or local (between containers of the gateway).
    #[serde(default)]
    pub path: Path,
    pub protocol: Protocol,
    /// Message size in bytes (TCP: bytes per write; UDP: datagram payload).
    pub size: u32,
    /// Concurrent senders (1 for a container probe; N in a sweep).
    pub concurrency: u32,
    /// Request/response: exchanges each sender kept in flight, each on its own connection
    /// (`probe.rr_in_flight`). 1 for streams and for cells recorded before it was kept (one
    /// exchange at a time).
    #[serde(default = "one")]
    pub in_flight: u32,
    /// Receiver-side goodput, bit/s (summed over concurrent senders); `null` if it failed.
    pub goodput_bps: Option<f64>,
    /// What the senders sent, bit/s.
    pub sent_bps: Option<f64>,
    /// UDP: fraction of datagrams lost (0..1).
    pub loss: Option<f64>,
    pub duration_s: f64,
    /// Request/response cells: transactions per second and their latency.
    #[serde(default)]
    pub transactions: Option<Transactions>,
    /// Each run of the cell (`probe.repetitions`, modes interleaved), in order: goodput in
    /// bit/s, or for request/response the median round trip in microseconds. The cell's
    /// figures are those of its median run by goodput (request/response: by transactions per
    /// second). Empty for cells recorded before repetitions.
    #[serde(default)]
    pub runs: Vec<f64>,
    /// Request/response: each run's transactions per second, in the order of `runs`. What
    /// the advisor judges these cells by (netperf's TCP_RR figure: one over the mean time of
    /// an exchange, so the stalls of a policed or lossy path count, which a median round trip
    /// hides). Empty for streams and for cells recorded before it was kept.
    #[serde(default)]
    pub runs_per_s: Vec<f64>,
    pub counters: Option<CellCounters>,
    pub error: Option<String>,
}

fn one() -> u32 {
    1
}

impl ProbeCell {
    /// What the cell delivered, higher is better: goodput in bit/s for a stream,
    /// transactions per second for request/response (summed over concurrent senders).
    pub fn throughput(&self) -> Option<f64> {
        match self.pattern {
            Pattern::Stream => self.goodput_bps,
            Pattern::RequestResponse => self.transactions.map(|t| t.per_s),
        }
    }

    /// `throughput` in each run of the cell: `runs` for a stream, `runs_per_s` for
    /// request/response (empty for cells recorded before they were kept).
    pub fn throughput_runs(&self) -> &[f64] {
        match self.pattern {
            Pattern::Stream => &self.runs,
            Pattern::RequestResponse => &self.runs_per_s,
        }
    }
}

/// What a request/response cell measured (summed over concurrent clients; latencies of all
/// their transactions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Transactions {
    pub per_s: f64,
    /// Round-trip time of a transaction, microseconds: median and 99th percentile.
    pub latency_p50_us: f64,
    pub latency_p99_us: f64,
    /// UDP: requests or answers lost (0..1).
    pub loss: Option<f64>,
}

/// The container a probe was about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProbeTarget {
    pub id: String,
    pub name: String,
    pub network_mode: String,
    /// The network the bridge probe ran on.
    pub bridge_network: String,
    pub limits: Limits,
}

/// Probe results of one container in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerProbe {
    pub target: ProbeTarget,
    pub cells: Vec<ProbeCell>,
    /// Set when the cells were measured once for several containers with the same network
    /// and limits: the container they were measured for.
    pub measured_for: Option<String>,
    pub error: Option<String>,
}

/// The latest probe of a container, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerProbes {
    pub run_id: String,
    pub finished_at_ms: u64,
    pub bridge: Vec<ProbeCell>,
    pub host: Vec<ProbeCell>,
    pub in_place: Vec<ProbeCell>,
    pub measured_for: Option<String>,
}

/// Aggregate goodput of 1..N concurrent probe containers per mode (the study's
/// multi-container experiment), per protocol and message size, and the measured crossovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Sweep {
    /// Limits every sweep container ran with.
    pub limits: Limits,
    /// One cell per protocol, size, mode and concurrency.
    pub cells: Vec<ProbeCell>,
    /// Per kind of traffic, protocol and size: the smallest N at which host mode's aggregate
    /// (goodput, or transactions per second for request/response) exceeds bridge mode's.
    pub crossovers: Vec<Crossover>,
    pub max_concurrency: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Crossover {
    /// The traffic swept: records from before the sweep covered other kinds read as egress
    /// streams.
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub pattern: Pattern,
    pub protocol: Protocol,
    pub size: u32,
    /// `null` if host never won up to the largest N measured.
    pub containers: Option<u32>,
}

impl Sweep {
    /// The kinds of cell measured (traffic, protocol, size), in order.
    pub fn profiles(&self) -> Vec<CellKind> {
        let mut out: Vec<CellKind> = Vec::new();
        for c in &self.cells {
            let k = CellKind::of(c);
            if !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// The cell of `kind` at `n` containers in `mode`.
    pub fn at(&self, kind: &CellKind, n: u32, mode: ProbeMode) -> Option<&ProbeCell> {
        self.cells
            .iter()
            .find(|c| kind.is(c) && c.concurrency == n && c.mode == mode)
    }
}

/// What a cell sends, without its mode and concurrency: where, the traffic, the protocol,
/// the size. Two cells of one kind in two modes are the pair a comparison reads (ordered:
/// path, pattern, direction, protocol, size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKind {
    pub path: Path,
    pub pattern: Pattern,
    pub direction: Direction,
    pub protocol: Protocol,
    pub size: u32,
}

impl CellKind {
    pub fn of(c: &ProbeCell) -> CellKind {
        CellKind {
            path: c.path,
            pattern: c.pattern,
            direction: c.direction,
            protocol: c.protocol,
            size: c.size,
        }
    }

    pub fn is(&self, c: &ProbeCell) -> bool {
        *self == CellKind::of(c)
    }

    /// "tcp 64 B", "ingress udp 1024 B", "request/response tcp 64 B" ("... local" on the
    /// path between containers).
    pub fn label(&self) -> String {
        let traffic = match (self.pattern, self.direction) {
            (Pattern::RequestResponse, _) => "request/response ",
            (Pattern::Stream, Direction::Ingress) => "ingress ",
            (Pattern::Stream, Direction::Egress) => "",
        };
        let local = if self.path == Path::Local {
            " local"
        } else {
            ""
        };
        format!("{traffic}{} {} B{local}", self.protocol.as_str(), self.size)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Done,
    Failed,
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    /// The advisor itself (`advisor.mode = "apply"`).
    Advisor,
}

/// One probe run: some containers, and/or a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProbeRun {
    pub id: String,
    pub trigger: Trigger,
    pub state: RunState,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// Where the traffic went, e.g. `local 198.18.78.2:5291` or `iperf3://10.0.0.5:5201`.
    pub sink: Option<String>,
    /// Seconds each cell sent for.
    pub cell_duration_s: f64,
    pub containers: Vec<ContainerProbe>,
    pub sweep: Option<Sweep>,
    pub error: Option<String>,
    pub notes: Vec<String>,
    /// While it runs: how far it is.
    #[serde(default)]
    pub progress: Option<ProbeProgress>,
}

/// How far a running probe is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProbeProgress {
    pub cells_done: u32,
    /// Cells the run will measure (its containers' and the sweep's).
    pub cells_total: u32,
    /// The cell measuring now, e.g. "web: host ingress tcp 1024 B".
    pub current: Option<String>,
    /// Seconds left, from the time the cells done so far took.
    pub remaining_s: Option<f64>,
}

/// `POST /v1/probes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// Container name or id to probe.
    #[serde(default)]
    pub container: Option<String>,
    /// Probe every container netmode manages (as a scheduled run does).
    #[serde(default)]
    pub all: bool,
    /// Also run the multi-container sweep (alone if no container is given).
    #[serde(default)]
    pub sweep: bool,
}

/// `POST /v1/apply`: recreate a container in the other network mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Container name or id.
    pub container: String,
    /// `bridge` or `host`; absent: the current recommendation (refused unless applicable).
    #[serde(default)]
    pub mode: Option<ModeKind>,
    /// Only say what would change: the old and new create requests' difference.
    #[serde(default)]
    pub dry_run: bool,
    /// Carry the files the container wrote into its own filesystem (outside its volumes)
    /// over to the new container: the stopped old container is committed to an image
    /// (`netmode-carry:<name>-<change id>`) and the new one is made from it. Without it, a
    /// container with such files is refused (removing the old container would delete them).
    #[serde(default)]
    pub carry_writable_layer: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApplyState {
    /// Waiting for the change before it.
    Queued,
    Running,
    /// The container runs in the new mode, verified; the old one is removed.
    Applied,
    /// The new container failed; the original runs again under its name, with its data.
    RolledBack,
    /// A dry run: nothing was changed.
    DryRun,
    /// Refused before anything was changed (`error` says why).
    Refused,
    /// Could not be settled either way without a decision of the operator's (`error` says
    /// what is where: someone else removed the old container and the new one is gone too, or
    /// took its name meanwhile). Nothing netmode did removed anything of the user's.
    Failed,
    /// Nothing was changed: the container belongs to a Compose project, which would undo a
    /// change made behind its back; a Compose override file was written instead
    /// (`compose_override` says where and how to use it).
    ComposeOverride,
}

/// The Compose override file written for a Compose-managed container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ComposeOverride {
    /// Where it is (in the state directory).
    pub file: String,
    /// The command that applies it (run as the project's owner would run Compose).
    pub command: String,
    /// The file's contents.
    pub content: String,
}

/// One mode change (or dry run), as `GET /v1/applies` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApplyRecord {
    pub id: String,
    /// The container's name (kept across the change).
    pub container: String,
    /// The container's id before the change.
    pub container_id: String,
    /// The id of the container made in the new mode (removed again on rollback).
    pub new_id: Option<String>,
    pub from: ModeKind,
    pub to: ModeKind,
    /// `manual` (API, `advisor apply`), or `advisor` (applied by itself, advisor.mode = "apply").
    pub trigger: Trigger,
    pub state: ApplyState,
    /// The last step started: plan, clear_restart_policy, rename_aside, stop, commit, create,
    /// connect, start, verify, watch, remove_old, done.
    pub step: String,
    /// Old create request -> new one, field by field (`HostConfig.NetworkMode: "default" -> "host"`).
    pub diff: Vec<String>,
    /// What the new mode cannot keep (recorded for the way back).
    pub dropped: Vec<String>,
    pub error: Option<String>,
    /// For `compose_override`: the file written instead of a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_override: Option<ComposeOverride>,
    /// With `carry_writable_layer`: the image the old container's writable layer was
    /// committed to, which the new container is made from (removed again on rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried_image: Option<String>,
    pub queued_at_ms: u64,
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
}

/// `GET /v1/applies`: the change in progress, if any, and the history, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApplyList {
    pub running: Option<ApplyRecord>,
    pub applies: Vec<ApplyRecord>,
}

/// `GET /v1/probes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProbeList {
    pub running: Option<ProbeRun>,
    pub queued: Vec<ProbeRun>,
    /// Finished runs, newest first.
    pub runs: Vec<ProbeRun>,
}

/// The probe engine's state in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProbeStatus {
    /// Periodic probing on (manual probes work either way).
    pub enabled: bool,
    /// Where probe traffic goes; `null` while the sink is not ready.
    pub sink: Option<String>,
    /// Why probing cannot run at all, if it cannot (e.g. the sink could not be built).
    pub error: Option<String>,
    pub running: Option<String>,
    pub queued: u32,
    pub next_run_at_ms: Option<u64>,
    /// Why the last scheduled run was skipped or postponed.
    pub last_skip: Option<String>,
    /// The latest multi-container sweep.
    pub sweep: Option<Sweep>,
}

// ------------------------------------------------------------------ recommendations

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Switch,
}

/// Whether the evidence has settled a container's mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Switching pays, with at least `advisor.min_probability`.
    Switch,
    /// Switching does not pay, with at least `advisor.min_probability` (or netmode leaves the
    /// container alone, or a label pins it).
    Keep,
    /// Not known yet.
    #[default]
    Undecided,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Switch => "switch",
            Decision::Keep => "keep",
            Decision::Undecided => "undecided",
        }
    }
}

/// What a recommendation rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The study's rule alone (no measurement yet).
    Prior,
    /// Measurements (probes, sweep) weighed against the prior.
    Measured,
    /// A `netmode.policy=bridge|host` label.
    Pinned,
    /// netmode leaves this container alone (none, container:<id>, other drivers, or
    /// `netmode.policy=ignore`).
    Excluded,
}

/// Something that blocks a switch (in `blockers`) or that the operator should know about it
/// (in `warnings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Blocker {
    /// Stable identifier: `port_conflict`, `published_port`, `docker_dns`,
    /// `shared_namespace`, `host_listener`, `isolation`, `host_dependencies`, ...
    pub kind: String,
    pub message: String,
}

/// One step of the reasoning, for `advisor explain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Evidence {
    pub step: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Recommendation {
    /// The mode the container should run in: `bridge` or `host` (for a container netmode
    /// leaves alone, its own kind: `none`, `container`, `other`).
    pub mode: ModeKind,
    pub action: Action,
    /// A switch that can be applied: `action` is `switch` and nothing blocks it.
    pub applicable: bool,
    /// Expected goodput of `mode` relative to the other mode, as a fraction (0.25 = +25 %);
    /// negative when keeping a mode whose deficit is below the switch threshold, 0 for a
    /// container netmode leaves alone or that is not network-active.
    pub expected_gain: f64,
    /// 0..1: the probability that `action` is the right one with respect to
    /// `advisor.min_gain`: `p_switch_pays` for a switch, one less it for a keep (for a
    /// pinned or excluded container, 1).
    pub confidence: f64,
    /// The posterior probability, given every probe and sweep run so far and the study as
    /// prior, that the other mode's true goodput (for request/response: transactions per
    /// second) beats the current mode's by at least `advisor.min_gain`: the probability that switching pays.
    /// `null` for a container netmode leaves alone, pins or finds not network-active.
    #[serde(default)]
    pub p_switch_pays: Option<f64>,
    /// `switch` (`p_switch_pays` at least `advisor.min_probability`), `keep` (switching is
    /// that unlikely to pay, or the two modes are within `min_gain` of each other with that
    /// probability) or `undecided` (more probe rounds are needed; always with the prior
    /// alone). Apply mode acts on `switch` only.
    #[serde(default)]
    pub decision: Decision,
    /// The 80 % credible interval of `expected_gain` (the same fractions), when measured.
    #[serde(default)]
    pub gain_interval: Option<[f64; 2]>,
    /// Undecided: how many more probe rounds like the ones so far are expected to decide it
    /// (`null`: more than 8, or not measured yet).
    #[serde(default)]
    pub rounds_to_decide: Option<u32>,
    /// With `advisor.mode = "apply"`: why this recommended switch is not applied now (the
    /// rule it waits on: undecided, `advisor.apply_after`, the cooldown, the hourly budget, a
    /// pending probe, ...); it is looked at again at every sample. `null` otherwise.
    #[serde(default)]
    pub apply_waits: Option<String>,
    /// One sentence.
    pub reason: String,
    pub blockers: Vec<Blocker>,
    pub warnings: Vec<Blocker>,
    pub basis: Basis,
    /// Whether the container counts as network-active now.
    pub network_active: bool,
    /// A switch the evidence supports waits for the cooldown until then, Unix ms (the
    /// recommendation is `keep` meanwhile).
    pub held_until_ms: Option<u64>,
    /// The chain of evidence, with numbers.
    pub evidence: Vec<Evidence>,
}

/// Where the crossover the policy used comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CrossoverInfo {
    /// Host mode is expected to win from this many network-active containers on.
    pub containers: Option<u32>,
    /// `measured` (the latest sweep) or `prior` (the CPU count, as on the study's Pi).
    pub source: String,
    /// For measured crossovers: the traffic it is for (the sweep profile most like the
    /// busiest network-active container's traffic).
    #[serde(default)]
    pub direction: Option<Direction>,
    #[serde(default)]
    pub pattern: Option<Pattern>,
    #[serde(default)]
    pub protocol: Option<Protocol>,
    #[serde(default)]
    pub size: Option<u32>,
}

impl CrossoverInfo {
    /// "2 (measured, request/response tcp 64 B)", "beyond the sweep (measured, tcp 1024 B)",
    /// "2 (prior)".
    pub fn describe(&self) -> String {
        let n = self
            .containers
            .map_or_else(|| "beyond the sweep".into(), |n| n.to_string());
        match (self.protocol, self.size) {
            (Some(protocol), Some(size)) => {
                let kind = CellKind {
                    path: Path::Upstream,
                    direction: self.direction.unwrap_or_default(),
                    pattern: self.pattern.unwrap_or_default(),
                    protocol,
                    size,
                };
                format!("{n} ({}, {})", self.source, kind.label())
            }
            _ => format!("{n} ({})", self.source),
        }
    }
}

/// `GET /v1/recommendations`.
/// What the advisor does with its recommendations (`advisor.mode`), as Kubernetes' VPA
/// update modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AdvisorMode {
    /// No recommendations.
    Off,
    /// Recommend; change nothing by itself.
    #[default]
    Recommend,
    /// Also apply confident, settled switches by itself.
    Apply,
}

impl AdvisorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AdvisorMode::Off => "off",
            AdvisorMode::Recommend => "recommend",
            AdvisorMode::Apply => "apply",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Recommendations {
    /// `advisor.mode`: `off` (then `containers` is empty), `recommend` or `apply`.
    #[serde(default)]
    pub mode: AdvisorMode,
    pub generated_at_ms: u64,
    /// Names of the network-active containers.
    pub network_active: Vec<String>,
    pub crossover: CrossoverInfo,
    pub containers: Vec<ContainerRecommendation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ContainerRecommendation {
    pub name: String,
    pub id: String,
    pub network_mode: String,
    pub recommendation: Recommendation,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    pub docker: DockerState,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiError {
    pub error: String,
}

/// A unit enum's name on the wire (`rolled_back`, `advisor`): its serde name, so there is no
/// second spelling to keep in step.
pub fn wire_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}
