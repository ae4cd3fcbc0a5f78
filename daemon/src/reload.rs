//! `SIGHUP` (`systemctl reload netmoded`): reread the configuration file. A file with an
//! error leaves the running configuration in force and says why (key and line); a good one
//! takes effect at once, except for the settings fixed at start (the listening address, the
//! state directory, the Docker socket, the probe sink), which say so and keep their value
//! until the next restart.

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::probe::queue::ProbeQueue;
use crate::state::Shared;

/// Where the configuration came from at start.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: std::path::PathBuf,
    /// The default path, which may be absent (then: the embedded defaults).
    pub default_path: bool,
}

impl Source {
    pub fn load(&self) -> Result<Config, ConfigError> {
        let config = Config::load(&self.path, self.default_path)?;
        config.check_environment(&self.path)?;
        Ok(config)
    }
}

/// Settings the running daemon cannot change: `fresh` keeps `running`'s values for them. The
/// keys that differed, for the log.
pub fn keep_fixed(running: &Config, fresh: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    macro_rules! fixed {
        ($key:literal, $($field:ident).+) => {
            if running.$($field).+ != fresh.$($field).+ {
                fresh.$($field).+ = running.$($field).+.clone();
                kept.push($key);
            }
        };
    }
    fixed!("daemon.state_dir", daemon.state_dir);
    fixed!("http.listen", http.listen);
    fixed!("docker.socket", docker.socket);
    fixed!("probe.target", probe.target);
    fixed!("probe.sink_subnet", probe.sink_subnet);
    fixed!("probe.sink_port", probe.sink_port);
    kept
}

/// Reread the configuration; true if a new one is in force.
pub fn reload(shared: &Shared, probes: &ProbeQueue, source: &Source) -> bool {
    let mut fresh = match source.load() {
        Ok(c) => c,
        Err(e) => {
            log::error!("configuration reload failed, the running configuration stays: {e}");
            shared.reload_failed();
            return false;
        }
    };
    let running = shared.config();
    for key in keep_fixed(&running, &mut fresh) {
        log::warn!(
            "configuration reload: {key} changed; it takes effect at the next restart (the running value stays)"
        );
    }
    let changed = *running != fresh;
    probes.configure(fresh.probe.enabled, fresh.probe.duration.as_secs_f64());
    shared.set_config(fresh);
    log::info!(
        "configuration reloaded from {}{}",
        describe(&source.path),
        if changed { "" } else { " (nothing changed)" }
    );
    true
}

fn describe(path: &Path) -> String {
    if path.exists() {
        path.display().to_string()
    } else {
        format!("{} (absent: the embedded defaults)", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_settings_keep_their_running_value_and_others_change() {
        let p = Path::new("t.toml");
        let running = Config::parse("[http]\nlisten = \"127.0.0.1:9431\"\n", p).unwrap();
        let mut fresh = Config::parse(
            "[http]\nlisten = \"0.0.0.0:1\"\nhost_metrics = true\n[probe]\nsink_port = 6000\n[advisor]\nmode = \"off\"\n",
            p,
        )
        .unwrap();
        let kept = keep_fixed(&running, &mut fresh);
        assert_eq!(kept, ["http.listen", "probe.sink_port"]);
        assert_eq!(fresh.http.listen, running.http.listen);
        assert_eq!(fresh.probe.sink_port, running.probe.sink_port);
        assert!(fresh.http.host_metrics);
        assert_eq!(fresh.advisor.mode, netmode_advisor::api::AdvisorMode::Off);
        assert!(keep_fixed(&running, &mut running.clone()).is_empty());
    }
}
