//! netmoded's TOML configuration.
//!
//! `netmoded.example.toml` (next to this crate's Cargo.toml) is the reference: it lists every
//! key with its default and is also the embedded default configuration, so the documentation
//! cannot drift from what the daemon does (a unit test parses it and compares with
//! `Config::default()`). Unknown keys and bad values are errors naming file, line and key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The commented example configuration, embedded: the daemon's defaults.
pub const EXAMPLE: &str = include_str!("../netmoded.example.toml");

/// Where `netmoded run` looks when `--config` is not given; a missing file there means
/// built-in defaults.
pub const DEFAULT_PATH: &str = "/etc/netmode/netmoded.toml";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: Daemon,
    pub http: Http,
    pub docker: Docker,
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
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Docker {
    /// The engine's unix socket. Unset: `$DOCKER_HOST` if it is `unix://...`, else
    /// `/var/run/docker.sock`.
    #[serde(deserialize_with = "docker_socket")]
    pub socket: Option<PathBuf>,
    /// Longest wait for one engine API call (the event stream is not limited).
    #[serde(deserialize_with = "request_timeout")]
    pub request_timeout: Duration,
    /// Upper bound of the reconnect backoff when the engine is unavailable.
    #[serde(deserialize_with = "reconnect_backoff")]
    pub reconnect_max_backoff: Duration,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            daemon: Daemon::default(),
            http: Http::default(),
            docker: Docker::default(),
        }
    }
}

impl Docker {
    /// The socket netmoded connects to: `docker.socket`, else `$DOCKER_HOST` (unix only),
    /// else the standard path. A non-unix `DOCKER_HOST` is an error: netmoded speaks to a
    /// local engine only.
    pub fn effective_socket(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.socket {
            return Ok(p.clone());
        }
        match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => match h.strip_prefix("unix://") {
                Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
                _ => Err(format!(
                    "DOCKER_HOST={h:?} is not supported: netmoded needs the local engine's \
                     unix socket (unix:///path), or set docker.socket in the config"
                )),
            },
            _ => Ok(PathBuf::from("/var/run/docker.sock")),
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
            .effective_socket()
            .map(|_| ())
            .map_err(|message| ConfigError {
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
        return Err(D::Error::custom(format!(
            "{s:?} is out of range: expected between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
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
    fn syntax_error_has_a_line() {
        let e = parse("[daemon\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }
}
