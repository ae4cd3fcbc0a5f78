//! netmoded's TOML configuration.
//!
//! `netmoded.example.toml` (next to this crate's Cargo.toml) is the reference: it lists every
//! key with its default and is also the embedded default configuration, so the documentation
//! cannot drift from what the daemon does (a unit test parses it and compares with
//! `Config::default()`). Unknown keys and bad values are errors naming file, line and key.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use netmode_advisor::api::{AdvisorMode, Direction, Pattern, Protocol};
use serde::{Deserialize, Deserializer};

/// The commented example configuration, embedded: the daemon's defaults.
pub const EXAMPLE: &str = include_str!("../netmoded.example.toml");

/// Where `netmoded run` looks when `--config` is not given; a missing file there means
/// built-in defaults.
pub const DEFAULT_PATH: &str = "/etc/netmode/netmoded.toml";

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: Daemon,
    pub http: Http,
    pub docker: Docker,
    pub probe: Probe,
    pub advisor: Advisor,
    pub apply: Apply,
}

/// How a mode change is carried out (`POST /v1/apply`, `advisor apply`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Apply {
    /// The new container must run this long (not restarting) before the old one is removed.
    #[serde(deserialize_with = "verify_seconds")]
    pub verify: Duration,
    /// A container with a healthcheck must be healthy within this (or within its own
    /// healthcheck's start period and retries, if longer).
    #[serde(deserialize_with = "health_timeout")]
    pub health_timeout: Duration,
    /// After verification, the new container is watched this long more (crashing,
    /// restarting or unhealthy rolls back) before the old one is removed. "0s": no watch.
    #[serde(deserialize_with = "watch_period")]
    pub watch: Duration,
    /// Recreate containers a Compose project manages (`false`: refused, with the reason).
    pub compose: bool,
    /// Changes kept in <state_dir>/applies.jsonl.
    #[serde(deserialize_with = "history")]
    pub history: usize,
}

impl Default for Apply {
    fn default() -> Self {
        Apply {
            verify: Duration::from_secs(10),
            health_timeout: Duration::from_secs(90),
            watch: Duration::from_secs(60),
            compose: false,
            history: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Daemon {
    /// Everything the daemon keeps, written atomically.
    pub state_dir: PathBuf,
    /// How often live traffic and host counters are sampled.
    #[serde(deserialize_with = "sample_interval")]
    pub sample_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address of the JSON / Prometheus endpoint. Port 0 picks a free port; the address
    /// actually bound is written to `<state_dir>/endpoint`.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// `/metrics` also carries host series (CPU and softirq shares) that node_exporter has.
    pub host_metrics: bool,
    /// Every request but `/healthz` needs the bearer token, reads too (an endpoint on a LAN).
    pub token_for_reads: bool,
    /// Also write `/metrics` atomically to `<dir>/netmode.prom` every 15 s, for
    /// node_exporter's textfile collector.
    pub textfile_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Docker {
    /// The engine's unix socket. Unset: `$DOCKER_HOST` if it is `unix://...`, else the first
    /// of Docker's (`/var/run/docker.sock`) and Podman's (`/run/podman/podman.sock`) that
    /// answers.
    #[serde(deserialize_with = "docker_socket")]
    pub socket: Option<PathBuf>,
    /// Longest wait for one engine API call (the event stream is not limited).
    #[serde(deserialize_with = "request_timeout")]
    pub request_timeout: Duration,
    /// Upper bound of the reconnect backoff when the engine is unavailable.
    #[serde(deserialize_with = "reconnect_backoff")]
    pub reconnect_max_backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Probe {
    /// Periodic probing (`advisor probe` works either way).
    pub enabled: bool,
    /// Time between the starts of two scheduled runs (at least; see max_duty_cycle).
    #[serde(deserialize_with = "probe_interval")]
    pub interval: Duration,
    /// While a network-active container is undecided, a follow-up run probes the one whose
    /// decision is worth most this often (at least; see max_duty_cycle); `0s`: never.
    #[serde(deserialize_with = "undecided_interval")]
    pub undecided_interval: Duration,
    /// How long each cell sends.
    #[serde(deserialize_with = "cell_duration")]
    pub duration: Duration,
    /// Runs of every cell, the modes interleaved, each on fresh connections: the cell
    /// reports their median and each run, and the advisor reads their spread.
    #[serde(deserialize_with = "repetitions")]
    pub repetitions: u32,
    #[serde(deserialize_with = "protocols")]
    pub protocols: Vec<Protocol>,
    #[serde(deserialize_with = "sizes")]
    pub sizes: Vec<u32>,
    /// What probe traffic looks like: `auto` (chosen from each container's live traffic, see
    /// `Traffic::Auto`) or a fixed list.
    pub traffic: Traffic,
    /// Request/response exchanges a probe keeps in flight, each on its own connection.
    #[serde(deserialize_with = "rr_in_flight")]
    pub rr_in_flight: u32,
    /// Cap per sender, bit/s; `None`: as fast as it goes.
    #[serde(deserialize_with = "optional_rate")]
    pub rate: Option<u64>,
    /// Also probe bridge-mode containers from inside their own namespace.
    pub in_place: bool,
    /// `None`: the local sink; else `netmode://HOST:PORT` or `iperf3://HOST:PORT`.
    #[serde(deserialize_with = "probe_target")]
    pub target: Option<String>,
    #[serde(deserialize_with = "sink_subnet")]
    pub sink_subnet: SinkSubnet,
    #[serde(deserialize_with = "port")]
    pub sink_port: u16,
    /// Largest N of the multi-container sweep; 0: CPU count + 1.
    #[serde(deserialize_with = "concurrency")]
    pub max_concurrency: u32,
    /// Protocols and message sizes the sweep measures (each pair, at every N).
    #[serde(deserialize_with = "protocols")]
    pub sweep_protocols: Vec<Protocol>,
    #[serde(deserialize_with = "sizes")]
    pub sweep_sizes: Vec<u32>,
    /// The kinds of traffic the sweep measures: `auto` (those `traffic` chooses for the
    /// gateway's network-active containers; egress streams when none is active) or a list.
    pub sweep_traffic: Traffic,
    /// Fraction of wall time probing may take (0..1].
    #[serde(deserialize_with = "fraction")]
    pub max_duty_cycle: f64,
    /// Postpone a scheduled run while the containers' live traffic is above this (bit/s).
    #[serde(deserialize_with = "rate")]
    pub skip_above_traffic: u64,
    /// ... or while the host's CPU utilisation is above this (0..1].
    #[serde(deserialize_with = "fraction")]
    pub skip_above_cpu: f64,
    /// How long a postponed run waits before trying again.
    #[serde(deserialize_with = "retry_after")]
    pub retry_after: Duration,
    /// Probe runs kept in `<state_dir>/probes.jsonl`.
    #[serde(deserialize_with = "history")]
    pub history: usize,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            enabled: true,
            interval: Duration::from_secs(30 * 60),
            undecided_interval: Duration::from_secs(5 * 60),
            duration: Duration::from_secs(3),
            repetitions: 2,
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            sizes: vec![64, 1024],
            traffic: Traffic::Auto,
            rr_in_flight: 2,
            rate: None,
            in_place: true,
            target: None,
            sink_subnet: "198.18.78.0/30".parse().expect("valid default"),
            sink_port: 5291,
            max_concurrency: 0,
            sweep_protocols: vec![Protocol::Tcp, Protocol::Udp],
            sweep_sizes: vec![64, 1024],
            sweep_traffic: Traffic::Auto,
            max_duty_cycle: 0.05,
            skip_above_traffic: 50_000_000,
            skip_above_cpu: 0.5,
            retry_after: Duration::from_secs(5 * 60),
            history: 200,
        }
    }
}

impl Probe {
    /// A size (of `probe.sizes` or `probe.sweep_sizes`: the key and a message) that none of
    /// the protocols it goes with can carry: above UDP's 65000 B with UDP alone.
    pub fn uncarried_size(&self) -> Option<(&'static str, String)> {
        [
            (
                "probe.sizes",
                &self.sizes,
                &self.protocols,
                "probe.protocols",
            ),
            (
                "probe.sweep_sizes",
                &self.sweep_sizes,
                &self.sweep_protocols,
                "probe.sweep_protocols",
            ),
        ]
        .into_iter()
        .find_map(|(key, sizes, protocols, with)| {
            let (size, largest) = Protocol::first_uncarried(sizes, protocols)?;
            Some((
                key,
                format!(
                    "message size {size} is above {largest} bytes, the largest {with} carries \
                     (larger sizes are for TCP)"
                ),
            ))
        })
    }

    /// The sweep's largest N on a host with `cpus` CPUs.
    pub fn sweep_max(&self, cpus: u32) -> u32 {
        if self.max_concurrency == 0 {
            cpus + 1
        } else {
            self.max_concurrency
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Advisor {
    /// `off`: no recommendations; `recommend`: recommend only; `apply`: also apply
    /// confident, settled switches by itself (see `netmode_advisor::policy::auto`).
    pub mode: AdvisorMode,
    /// With `mode = "apply"`: at most this many changes by the advisor within an hour.
    #[serde(deserialize_with = "changes_per_hour")]
    pub max_changes_per_hour: u32,
    /// A container is decided once the probability that switching gains at least
    /// `min_gain` is at least this (switch) or at most one less it (keep); apply mode acts
    /// on decided switches only.
    #[serde(deserialize_with = "probability")]
    pub min_probability: f64,
    /// No longer used (decisions rest on `min_probability`): accepted so that an older
    /// configuration loads, with a warning at start.
    #[serde(deserialize_with = "deprecated_unit_interval")]
    pub min_confidence: Option<f64>,
    /// With `mode = "apply"`: a switch must have been recommended this long first.
    #[serde(deserialize_with = "cooldown")]
    pub apply_after: Duration,
    /// Network-active above this rate (rx + tx, averaged over active_window), bit/s.
    #[serde(deserialize_with = "rate")]
    pub active_threshold: u64,
    #[serde(deserialize_with = "active_window")]
    pub active_window: Duration,
    #[serde(deserialize_with = "gain")]
    pub min_gain: f64,
    #[serde(deserialize_with = "gain")]
    pub hysteresis: f64,
    #[serde(deserialize_with = "cooldown")]
    pub cooldown: Duration,
    /// Network-active containers from which the prior favours host mode; 0: CPU count.
    #[serde(deserialize_with = "concurrency")]
    pub prior_crossover: u32,
}

impl Default for Advisor {
    fn default() -> Self {
        Advisor {
            mode: AdvisorMode::Recommend,
            max_changes_per_hour: 2,
            min_probability: 0.95,
            min_confidence: None,
            apply_after: Duration::from_secs(5 * 60),
            active_threshold: 1_000_000,
            active_window: Duration::from_secs(60),
            min_gain: 0.10,
            hysteresis: 0.05,
            cooldown: Duration::from_secs(30 * 60),
            prior_crossover: 0,
        }
    }
}

impl Advisor {
    pub fn auto(&self) -> netmode_advisor::policy::auto::AutoConfig {
        netmode_advisor::policy::auto::AutoConfig {
            max_changes_per_hour: self.max_changes_per_hour,
            min_probability: self.min_probability,
            apply_after_ms: self.apply_after.as_millis() as u64,
            cooldown_ms: self.cooldown.as_millis() as u64,
        }
    }

    pub fn policy(&self) -> netmode_advisor::policy::Config {
        netmode_advisor::policy::Config {
            active_threshold_bps: self.active_threshold as f64,
            active_window_s: self.active_window.as_secs_f64(),
            min_gain: self.min_gain,
            min_probability: self.min_probability,
            hysteresis: self.hysteresis.min(self.min_gain),
            cooldown_ms: self.cooldown.as_millis() as u64,
            prior_crossover: self.prior_crossover,
            ..Default::default()
        }
    }
}

/// The local sink's subnet: the host side takes the first address, the sink the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkSubnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl SinkSubnet {
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }
    pub fn sink_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2)
    }
}

/// A value that cannot be used, in words naming it and what is expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl std::str::FromStr for SinkSubnet {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || {
            ValueError(format!(
                "invalid subnet {s:?}: expected an IPv4 network like \"198.18.78.0/30\" (prefix 8..30)"
            ))
        };
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(ip) & !mask != 0 {
            return Err(ValueError(format!(
                "invalid subnet {s:?}: {ip} is not the network address of a /{prefix}"
            )));
        }
        Ok(SinkSubnet {
            network: ip,
            prefix,
        })
    }
}

impl fmt::Display for SinkSubnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon {
            state_dir: PathBuf::from("/var/lib/netmode"),
            sample_interval: Duration::from_secs(5),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: SocketAddr::from(([127, 0, 0, 1], 9431)),
            host_metrics: false,
            token_for_reads: false,
            textfile_dir: None,
        }
    }
}

impl Default for Docker {
    fn default() -> Self {
        Docker {
            socket: None,
            request_timeout: Duration::from_secs(30),
            reconnect_max_backoff: Duration::from_secs(30),
        }
    }
}

/// Where the engines listen when nothing says otherwise: Docker (and Moby engines such as
/// balenaEngine), then Podman's rootful service (`podman.socket`).
pub const STANDARD_SOCKETS: [&str; 2] = ["/var/run/docker.sock", "/run/podman/podman.sock"];

impl Docker {
    /// The sockets netmoded tries, in order: `docker.socket`, else `$DOCKER_HOST` (unix
    /// only), else Docker's and Podman's rootful standard paths (the first that answers is
    /// used). A non-unix `DOCKER_HOST` is an error: netmoded speaks to a local engine only.
    pub fn engine_sockets(&self) -> Result<Vec<PathBuf>, ValueError> {
        if let Some(p) = &self.socket {
            return Ok(vec![p.clone()]);
        }
        match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => match h.strip_prefix("unix://") {
                Some(p) if !p.is_empty() => Ok(vec![PathBuf::from(p)]),
                _ => Err(ValueError(format!(
                    "DOCKER_HOST={h:?} is not supported: netmoded needs the local engine's \
                     unix socket (unix:///path), or set docker.socket in the config"
                ))),
            },
            _ => Ok(STANDARD_SOCKETS.iter().map(PathBuf::from).collect()),
        }
    }
}

/// A configuration that cannot be used, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key (`daemon.sample_interval`), when the error concerns one.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parse `text` (the contents of `path`, used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let at = |message: String, span: Option<std::ops::Range<usize>>, key: Option<String>| {
            let (line, column) = match span {
                Some(s) => {
                    let (l, c) = line_col(text, s.start);
                    (Some(l), Some(c))
                }
                None => (None, None),
            };
            ConfigError {
                path: path.to_path_buf(),
                line,
                column,
                key,
                message,
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| {
            // A syntax error about a key (a duplicate, ...) points at it: name it.
            let key = e
                .span()
                .and_then(|s| text.get(s.start..))
                .map(|rest| {
                    rest.trim_start_matches('[')
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c))
                        .collect::<String>()
                })
                .filter(|k| !k.is_empty());
            at(first_line(e.message()), e.span(), key)
        })?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let mut key = e.path().to_string();
            let inner = e.inner();
            let mut message = inner.message().to_string();
            // For an unknown key serde names it in the message; make it part of the path.
            if let Some(unknown) = unknown_field(&message) {
                if key == "." || key.is_empty() {
                    key = unknown.clone();
                } else if !key.ends_with(&format!(".{unknown}")) && key != unknown {
                    key = format!("{key}.{unknown}");
                }
                message = message.replacen(&format!("unknown field `{unknown}`"), "unknown key", 1);
            }
            let key = (key != "." && !key.is_empty()).then_some(key);
            at(message, inner.span(), key)
        })?;
        if let Some((key, message)) = config.probe.uncarried_size() {
            return Err(at(message, size_span(text, key), Some(key.to_string())));
        }
        Ok(config)
    }

    /// Read and parse `path`. With `allow_missing`, a file that does not exist yields the
    /// defaults (the behaviour for the default path).
    pub fn load(path: &Path, allow_missing: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if allow_missing && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(e) => Err(ConfigError {
                path: path.to_path_buf(),
                line: None,
                column: None,
                key: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// Checks that need the environment, not only the file.
    pub fn check_environment(&self, path: &Path) -> Result<(), ConfigError> {
        self.docker
            .engine_sockets()
            .map(|_| ())
            .map_err(|ValueError(message)| ConfigError {
                path: path.to_path_buf(),
                line: None,
                column: None,
                key: Some("docker.socket".into()),
                message,
            })
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---- value parsers: each validates its range so the error carries the value's position ----

/// The one wording of a value out of its bounds: `<value> is out of range: expected
/// <min>..<max>` (and the unit, where there is one).
fn out_of_range<E: serde::de::Error>(
    value: impl fmt::Display,
    min: impl fmt::Display,
    max: impl fmt::Display,
    unit: &str,
) -> E {
    E::custom(format!(
        "{value} is out of range: expected {min}..{max}{unit}"
    ))
}

/// A number within `min..=max` (`unit` follows the range in the error, like " bytes").
fn number_in<'de, D, T>(d: D, min: T, max: T, unit: &str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + fmt::Display,
{
    let v = T::deserialize(d)?;
    if v < min || v > max {
        return Err(out_of_range(v, min, max, unit));
    }
    Ok(v)
}

/// A duration written like "5s" within `min..=max`.
fn duration_in<'de, D: Deserializer<'de>>(
    d: D,
    min: Duration,
    max: Duration,
) -> Result<Duration, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(s.trim()).map_err(|e| {
        D::Error::custom(format!(
            "invalid duration {s:?} ({e}); write it like \"5s\", \"500ms\" or \"30m\""
        ))
    })?;
    if v < min || v > max {
        return Err(out_of_range(
            format!("{s:?}"),
            humantime::format_duration(min),
            humantime::format_duration(max),
            "",
        ));
    }
    Ok(v)
}

fn sample_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_millis(100), Duration::from_secs(3600))
}

fn request_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_secs(1), Duration::from_secs(600))
}

fn reconnect_backoff<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_millis(100), Duration::from_secs(3600))
}

fn undecided_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::ZERO, Duration::from_secs(7 * 24 * 3600))
}

fn probe_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(
        d,
        Duration::from_secs(10),
        Duration::from_secs(7 * 24 * 3600),
    )
}

fn cell_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_millis(200), Duration::from_secs(60))
}

fn retry_after<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_secs(1), Duration::from_secs(24 * 3600))
}

/// One kind of probe traffic (`probe.traffic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrafficKind {
    /// A stream from the probe to the sink (the study's experiment).
    Egress,
    /// A stream from the sink to the probe (the receive path).
    Ingress,
    /// Requests from the probe, answered by the sink, one at a time.
    RequestResponse,
}

impl TrafficKind {
    pub fn direction_and_pattern(self) -> (Direction, Pattern) {
        match self {
            TrafficKind::Egress => (Direction::Egress, Pattern::Stream),
            TrafficKind::Ingress => (Direction::Ingress, Pattern::Stream),
            TrafficKind::RequestResponse => (Direction::Egress, Pattern::RequestResponse),
        }
    }
}

/// `probe.traffic`: `"auto"` or a list of `"egress"`, `"ingress"`, `"request_response"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Traffic {
    /// Request/response cells alone for a container whose traffic looks like it; else egress
    /// and/or ingress cells by a quarter of its bytes (`probe::plan::traffic`).
    Auto,
    List(Vec<TrafficKind>),
}

impl<'de> Deserialize<'de> for Traffic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<String>),
        }
        let expected =
            "expected \"auto\" or a list of \"egress\", \"ingress\", \"request_response\"";
        match Raw::deserialize(d).map_err(|_| D::Error::custom(expected))? {
            Raw::Word(w) if w == "auto" => Ok(Traffic::Auto),
            Raw::Word(w) => Err(D::Error::custom(format!("{w:?}: {expected}"))),
            Raw::List(v) if v.is_empty() => Err(D::Error::custom(expected)),
            Raw::List(v) => v
                .iter()
                .map(|w| match w.as_str() {
                    "egress" => Ok(TrafficKind::Egress),
                    "ingress" => Ok(TrafficKind::Ingress),
                    "request_response" => Ok(TrafficKind::RequestResponse),
                    other => Err(D::Error::custom(format!("{other:?}: {expected}"))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Traffic::List),
        }
    }
}

fn protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Protocol>, D::Error> {
    use serde::de::Error;
    let v = Vec::<Protocol>::deserialize(d)?;
    if v.is_empty() {
        return Err(D::Error::custom(
            "expected at least one of \"tcp\", \"udp\"",
        ));
    }
    Ok(v)
}

/// Where `probe.sizes` or `probe.sweep_sizes` (`key`) is written, for an error about it.
fn size_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    #[derive(Deserialize)]
    struct Doc {
        probe: Option<Probe>,
    }
    #[derive(Deserialize)]
    struct Probe {
        sizes: Option<toml::Spanned<toml::Value>>,
        sweep_sizes: Option<toml::Spanned<toml::Value>>,
    }
    let probe = Doc::deserialize(toml::Deserializer::parse(text).ok()?)
        .ok()?
        .probe?;
    match key {
        "probe.sizes" => probe.sizes,
        _ => probe.sweep_sizes,
    }
    .map(|v| v.span())
}

/// Message sizes: 16 bytes (a UDP probe's header) up to a TCP write's largest (131072);
/// UDP cells take those up to 65000 (`Protocol::max_message`), larger ones are TCP's alone.
fn check_size<E: serde::de::Error>(v: u32) -> Result<u32, E> {
    let max = Protocol::Tcp.max_message();
    if !(16..=max).contains(&v) {
        return Err(out_of_range(format!("message size {v}"), 16, max, " bytes"));
    }
    Ok(v)
}

fn sizes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    use serde::de::Error;
    let v = Vec::<u32>::deserialize(d)?;
    if v.is_empty() {
        return Err(D::Error::custom(
            "expected at least one message size, like [64, 1024]",
        ));
    }
    v.into_iter().map(check_size).collect()
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    parse_rate(&String::deserialize(d)?).map_err(D::Error::custom)
}

fn optional_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    parse_rate(&s).map(Some).map_err(D::Error::custom)
}

fn probe_target<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let ok = ["netmode://", "iperf3://"].iter().any(|p| {
        t.strip_prefix(p).is_some_and(|rest| {
            rest.rsplit_once(':')
                .is_some_and(|(h, port)| !h.is_empty() && port.parse::<u16>().is_ok())
        })
    });
    if !ok {
        return Err(D::Error::custom(format!(
            "invalid target {t:?}: expected \"\" (the local sink), \"netmode://HOST:PORT\" or \"iperf3://HOST:PORT\""
        )));
    }
    Ok(Some(t.to_string()))
}

fn sink_subnet<'de, D: Deserializer<'de>>(d: D) -> Result<SinkSubnet, D::Error> {
    use serde::de::Error;
    String::deserialize(d)?.parse().map_err(D::Error::custom)
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    number_in(d, 1u64, 65_535, "").map(|p| p as u16)
}

fn repetitions<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    number_in(d, 1, 10, " runs")
}

/// The most request/response exchanges one sender keeps in flight (a thread and a connection
/// each): `probe.rr_in_flight` and `send --in-flight` are
/// bounded by it. It lives here, the lowest layer, because both config and traffic need it.
pub const MAX_RR_IN_FLIGHT: u32 = 64;

fn rr_in_flight<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    number_in(d, 1, MAX_RR_IN_FLIGHT, " exchanges at once")
}

fn concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    number_in(d, 0, 32, " containers (0: the CPU count + 1)")
}

/// A share of time: more than 0, at most 1.
fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = number_in(d, 0.0, 1.0, " (more than 0)")?;
    if v == 0.0 {
        return Err(out_of_range(v, 0, 1, " (more than 0)"));
    }
    Ok(v)
}

fn active_window<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(
        d,
        Duration::from_millis(100),
        Duration::from_secs(24 * 3600),
    )
}

fn verify_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_millis(500), Duration::from_secs(3600))
}

fn watch_period<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::ZERO, Duration::from_secs(3600))
}

fn health_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::from_secs(1), Duration::from_secs(3600))
}

fn cooldown<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_in(d, Duration::ZERO, Duration::from_secs(7 * 24 * 3600))
}

/// A fraction for gains: 0 .. 1 (0.10 = 10 %).
fn gain<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    number_in(d, 0.0, 1.0, " (0.10 is 10 %)")
}

/// A number from 0 to 1.
fn deprecated_unit_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    number_in(d, 0.0, 1.0, "").map(Some)
}

fn probability<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    number_in(d, 0.5, 0.999, "")
}

fn changes_per_hour<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    number_in(d, 0u64, 60, " changes per hour").map(|v| v as u32)
}

fn history<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    number_in(d, 1u64, 10_000, " entries").map(|v| v as usize)
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        D::Error::custom(format!(
            "invalid address {s:?}: expected IP:PORT, like \"127.0.0.1:9431\" or \"[::1]:9431\""
        ))
    })
}

fn docker_socket<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    use serde::de::Error;
    let s = String::deserialize(d)?;
    let p = s.strip_prefix("unix://").unwrap_or(&s);
    if !p.starts_with('/') {
        return Err(D::Error::custom(format!(
            "invalid socket {s:?}: expected an absolute path (or unix:///path)"
        )));
    }
    Ok(Some(PathBuf::from(p)))
}

/// A bit rate: `"20Mbit"`, `"500kbit"`, `"1.5Gbit"`, or a plain number of bit/s.
pub fn parse_rate(s: &str) -> Result<u64, ValueError> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower.trim_end_matches("/s").trim_end_matches("ps");
    let (num, mult) = if let Some(n) = lower.strip_suffix("gbit") {
        (n, 1e9)
    } else if let Some(n) = lower.strip_suffix("mbit") {
        (n, 1e6)
    } else if let Some(n) = lower.strip_suffix("kbit") {
        (n, 1e3)
    } else if let Some(n) = lower.strip_suffix("bit") {
        (n, 1.0)
    } else {
        (lower, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok((v * mult) as u64),
        _ => Err(ValueError(format!(
            "invalid rate {t:?}: write it like \"20Mbit\", \"500kbit\" or a number of bit/s"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/netmode/netmoded.toml"))
    }

    #[test]
    fn example_config_is_the_default() {
        assert_eq!(parse(EXAMPLE).unwrap(), Config::default());
    }

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn values_are_read() {
        let c = parse(
            "[daemon]\nsample_interval = \"250ms\"\nstate_dir = \"/tmp/x\"\n\
             [http]\nlisten = \"[::1]:0\"\n[docker]\nsocket = \"unix:///run/d.sock\"\n",
        )
        .unwrap();
        assert_eq!(c.daemon.sample_interval, Duration::from_millis(250));
        assert_eq!(c.daemon.state_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.http.listen.to_string(), "[::1]:0");
        assert_eq!(c.docker.socket, Some(PathBuf::from("/run/d.sock")));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("[daemon]\nstate_dir = \"/tmp/x\"\nsampel_interval = \"5s\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("daemon.sampel_interval"), "{e}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("/etc/netmode/netmoded.toml:3:"),
            "{shown}"
        );
        assert!(shown.contains("unknown key"), "{shown}");
        assert!(
            shown.contains("sample_interval"),
            "lists the valid keys: {shown}"
        );
    }

    #[test]
    fn unknown_section_names_it() {
        let e = parse("[daemon]\n\n[htttp]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("htttp"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn bad_duration_names_key_and_line() {
        let e = parse("\n[daemon]\nsample_interval = \"fast\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("daemon.sample_interval"), "{e}");
        assert!(e.to_string().contains("invalid duration \"fast\""), "{e}");
    }

    #[test]
    fn out_of_range_duration_is_refused() {
        let e = parse("[daemon]\nsample_interval = \"1ms\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = parse("[http]\nlisten = 9431\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.key.as_deref(), Some("http.listen"), "{e}");
    }

    #[test]
    fn bad_address_names_key_and_line() {
        let e = parse("[http]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("http.listen")),
            "{e}"
        );
        assert!(e.to_string().contains("expected IP:PORT"), "{e}");
    }

    #[test]
    fn relative_socket_is_refused() {
        let e = parse("[docker]\nsocket = \"docker.sock\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("docker.socket"), "{e}");
    }

    #[test]
    fn duplicate_key_is_named() {
        let e =
            parse("[daemon]\nsample_interval = \"1s\"\nsample_interval = \"2s\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("sample_interval")),
            "{e}"
        );
        assert!(e.to_string().contains("duplicate"), "{e}");
    }

    #[test]
    fn probe_values_are_checked_with_key_and_line() {
        let e = parse("[probe]\nsizes = [64, 8]\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("probe.sizes")),
            "{e}"
        );
        assert!(e.to_string().contains("16..131072"), "{e}");
        // Above a UDP datagram's largest: TCP's alone, an error with UDP alone.
        let c = parse("[probe]\nsizes = [64, 131072]\n").unwrap();
        assert_eq!(c.probe.sizes, [64, 131_072]);
        let e = parse("[probe]\nsweep_protocols = [\"udp\"]\n\nsweep_sizes = [64, 70000]\n")
            .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(4), Some("probe.sweep_sizes")),
            "{e}"
        );
        assert!(e.to_string().contains("70000 is above 65000"), "{e}");
        let e = parse("[probe]\nprotocols = [\"icmp\"]\n").unwrap_err();
        assert!(
            e.key
                .as_deref()
                .is_some_and(|k| k.starts_with("probe.protocols")),
            "{e}"
        );
        assert!(e.to_string().contains("icmp"), "{e}");
        let e = parse("[probe]\n\ntarget = \"10.0.0.5:5201\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("probe.target")),
            "{e}"
        );
        let e = parse("[probe]\nsink_subnet = \"198.18.78.1/30\"\n").unwrap_err();
        assert!(e.to_string().contains("not the network address"), "{e}");
        let e = parse("[probe]\nduration = \"2m\"\n").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = parse("[probe]\n\ntraffic = [\"sideways\"]\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("probe.traffic")),
            "{e}"
        );
        assert!(e.to_string().contains("sideways"), "{e}");
        assert!(parse("[probe]\ntraffic = []\n").is_err());
        assert!(parse("[probe]\ntraffic = \"all\"\n").is_err());
        assert_eq!(
            parse("[probe]\ntraffic = [\"ingress\", \"request_response\"]\n")
                .unwrap()
                .probe
                .traffic,
            Traffic::List(vec![TrafficKind::Ingress, TrafficKind::RequestResponse])
        );
        let e = parse("[probe]\nmax_duty_cycle = 0\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("probe.max_duty_cycle"), "{e}");
        let c =
            parse("[probe]\ntarget = \"iperf3://gw-upstream:5201\"\nrate = \"20Mbit\"\n").unwrap();
        assert_eq!(c.probe.target.as_deref(), Some("iperf3://gw-upstream:5201"));
        assert_eq!(c.probe.rate, Some(20_000_000));
        let s: SinkSubnet = "10.99.0.0/30".parse().unwrap();
        assert_eq!(
            (s.host_ip().to_string(), s.sink_ip().to_string()),
            ("10.99.0.1".into(), "10.99.0.2".into())
        );
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("20Mbit"), Ok(20_000_000));
        assert_eq!(parse_rate("1.5Gbit/s"), Ok(1_500_000_000));
        assert_eq!(parse_rate("500kbit"), Ok(500_000));
        assert_eq!(parse_rate("64000"), Ok(64_000));
        assert!(parse_rate("fast").unwrap_err().0.contains("invalid rate"));
        assert!(parse_rate("-3Mbit").is_err());
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("[daemon\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// (line number, `section.key`) of every `key = value` line of the example.
        fn value_lines() -> Vec<(usize, String)> {
            let mut section = String::new();
            let mut out = Vec::new();
            for (i, line) in EXAMPLE.lines().enumerate() {
                if let Some(s) = line.strip_prefix('[') {
                    section = s.trim_end_matches(']').to_string();
                } else if let Some((key, _)) = line.split_once(" = ")
                    && !line.starts_with('#')
                {
                    out.push((i + 1, format!("{section}.{key}")));
                }
            }
            out
        }

        fn with_value(line: usize, value: &str) -> String {
            EXAMPLE
                .lines()
                .enumerate()
                .map(|(i, l)| match l.split_once(" = ") {
                    Some((key, _)) if i + 1 == line => format!("{key} = {value}"),
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        }

        /// A TOML basic string holding `s`.
        fn quoted(s: &str) -> String {
            let mut out = String::from('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }

        /// Values that are valid TOML but maybe not a valid setting.
        fn toml_value() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC{0,16}".prop_map(|s| quoted(&s)),
                "[0-9]{1,4}(ms|s|m|h|d|x|)".prop_map(|s| quoted(&s)),
                "[0-9a-f.:/\\[\\]]{0,24}".prop_map(|s| quoted(&s)),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| format!("{f:?}")),
                any::<bool>().prop_map(|b| b.to_string()),
                prop::collection::vec("[a-z0-9]{0,6}", 0..4).prop_map(|v| format!(
                    "[{}]",
                    v.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", ")
                )),
                prop::collection::vec(any::<i32>(), 0..4).prop_map(|v| format!("{v:?}")),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            /// One setting changed to any TOML value: accepted, or one error naming that
            /// key and its line.
            #[test]
            fn a_bad_value_names_its_key_and_line(
                pick in any::<prop::sample::Index>(),
                value in toml_value(),
            ) {
                let lines = value_lines();
                let (line, key) = &lines[pick.index(lines.len())];
                let text = with_value(*line, &value);
                if let Err(e) = parse(&text) {
                    prop_assert_eq!(e.line, Some(*line), "{} = {}: {}", key, value, e);
                    // The key, or an element of it (`probe.sizes[1]`).
                    let named = e.key.as_deref().unwrap_or("");
                    prop_assert!(
                        named == key || named.strip_prefix(key.as_str()).is_some_and(|r| r.starts_with('[')),
                        "{} = {}: {}", key, value, e
                    );
                    prop_assert!(!e.message.is_empty());
                }
            }

            /// Any text at all: a config or an error with a line inside the file, never a
            /// panic.
            #[test]
            fn any_text_parses_or_errs_with_a_line(
                pick in any::<prop::sample::Index>(),
                junk in "\\PC{0,40}",
            ) {
                let lines = value_lines();
                let (line, _) = &lines[pick.index(lines.len())];
                for text in [junk.clone(), with_value(*line, &junk)] {
                    if let Err(e) = parse(&text) {
                        let n = text.lines().count().max(1);
                        prop_assert!(e.line.is_none_or(|l| l >= 1 && l <= n + 1), "{:?}: {}", text, e);
                        prop_assert!(!e.to_string().is_empty());
                    }
                }
            }
        }
    }

    /// Every bounded value says the same thing when out of its bounds, with the key's line.
    #[test]
    fn every_bound_has_one_wording() {
        for (toml, says) in [
            (
                "[daemon]\nsample_interval = \"1ms\"",
                "\"1ms\" is out of range: expected 100ms..1h",
            ),
            (
                "[probe]\nrepetitions = 11",
                "11 is out of range: expected 1..10 runs",
            ),
            (
                "[probe]\nrr_in_flight = 0",
                "0 is out of range: expected 1..64 exchanges at once",
            ),
            (
                "[probe]\nsizes = [8]",
                "message size 8 is out of range: expected 16..131072 bytes",
            ),
            (
                "[probe]\nmax_duty_cycle = 0.0",
                "0 is out of range: expected 0..1 (more than 0)",
            ),
            (
                "[advisor]\nmin_gain = 1.5",
                "1.5 is out of range: expected 0..1 (0.10 is 10 %)",
            ),
            (
                "[advisor]\nmin_confidence = -1",
                "-1 is out of range: expected 0..1",
            ),
            (
                "[advisor]\nmax_changes_per_hour = 61",
                "61 is out of range: expected 0..60 changes per hour",
            ),
            (
                "[apply]\nhistory = 0",
                "0 is out of range: expected 1..10000 entries",
            ),
        ] {
            let e = parse(toml).expect_err(toml).to_string();
            assert!(e.contains(says), "{toml}: {e}");
            assert!(e.contains(".toml:2:"), "{toml}: {e}");
        }
    }
}
