//! The versioned JSON that `netmoded` serves and that `advisor` and fleet scripts read.
//!
//! Every type here is plain data: the daemon fills it, the CLI prints it, the policy reads it.
//! Field names are part of the v1 API (see `docs/api.md`); add fields, never rename them.

use serde::{Deserialize, Serialize};

/// The API generation served under `/v1/`.
pub const API_VERSION: &str = "v1";

/// `GET /v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

/// Host-level figures, from `/proc/stat` and `/proc/softirqs`, over the last sample interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct DockerInfo {
    pub state: DockerState,
    /// Where netmoded talks to the engine, e.g. `unix:///var/run/docker.sock`.
    pub endpoint: String,
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
}

/// `GET /v1/containers/{id-or-name}`, and one element of `Status::containers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
pub struct PortBinding {
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub host_ip: Option<String>,
    pub host_port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compose {
    pub project: Option<String>,
    pub service: Option<String>,
}

/// How much of a container's traffic netmode can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
pub struct Live {
    /// Bits per second received by the container.
    pub rx_bps: f64,
    /// Bits per second sent by the container.
    pub tx_bps: f64,
    pub rx_pps: f64,
    pub tx_pps: f64,
    /// Mean size of a packet in either direction over the interval; `null` without packets.
    /// For host-mode containers this is TCP payload per segment, not frame size.
    pub mean_packet_bytes: Option<f64>,
    pub attributed: Attribution,
    /// Where the counters come from: `veth`, `sock_diag` or `none`.
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
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub docker: DockerState,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}
