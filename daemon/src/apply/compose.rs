//! Containers of a Compose project are not recreated behind Compose's back (the next
//! `docker compose up` would undo the change, and Compose v1 crashes halfway on a service that
//! has both `network_mode: host` and published ports, leaving the container renamed aside and
//! stopped). Instead netmode writes a Compose override file into the state directory and says
//! how to use it; Compose then makes the change itself.
//!
//! The file is built from the container's inspect output and its Compose labels only (no YAML
//! parser: what it writes is a few fixed lines). Removing a list or mapping in an override
//! needs Compose v2's `!reset` tag: it is written only when the container has published ports
//! or extra networks; Compose v1 then stops with a parse error before it touches anything, and
//! the file's comments say what to edit by hand instead.

use std::path::{Path, PathBuf};

use netmode_advisor::api::{ComposeOverride, ModeKind};
use serde_json::Value;

use crate::error::RequestError;

const PROJECT: &str = "com.docker.compose.project";
const SERVICE: &str = "com.docker.compose.service";
const FILES: &str = "com.docker.compose.project.config_files";
const WORKDIR: &str = "com.docker.compose.project.working_dir";

/// A name safe in a file name: Compose's own names are `[a-z0-9_-]`, anything else becomes `_`.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// YAML double-quoted scalar.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The Compose files the container was created from, absolute.
fn config_files(labels: &Value) -> (Option<PathBuf>, Vec<PathBuf>) {
    let workdir = labels[WORKDIR].as_str().map(PathBuf::from);
    let files = labels[FILES]
        .as_str()
        .unwrap_or("")
        .split(',')
        .filter(|f| !f.is_empty())
        .map(|f| match &workdir {
            Some(w) if Path::new(f).is_relative() => w.join(f),
            _ => PathBuf::from(f),
        })
        .collect();
    (workdir, files)
}

/// The top-level `version:` line of a Compose file (Compose v1 requires every file of a
/// project to declare the same one), if the file can be read and has one.
fn version_line(file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with("version:"))
        .map(|l| l.trim_end().to_string())
}

/// The override's file name in the state directory.
pub fn file_name(project: &str, service: &str) -> String {
    format!("compose-{}-{}.override.yml", safe(project), safe(service))
}

/// Write the override that puts the container's service in `target` mode. `why`: one line
/// on why (the recommendation, or "asked by advisor apply").
pub fn write_override(
    state_dir: &Path,
    inspect: &Value,
    target: ModeKind,
    why: &str,
) -> Result<ComposeOverride, RequestError> {
    let labels = &inspect["Config"]["Labels"];
    let project = labels[PROJECT].as_str().unwrap_or("");
    let service = labels[SERVICE].as_str().unwrap_or("");
    let (workdir, files) = config_files(labels);
    let own = state_dir.join(file_name(project, service));
    // The override already in use (a second call) is not one of the user's files.
    let files: Vec<PathBuf> = files.into_iter().filter(|f| *f != own).collect();
    let version = files.first().and_then(|f| version_line(f));

    let bindings = inspect["HostConfig"]["PortBindings"]
        .as_object()
        .is_some_and(|m| !m.is_empty());
    let default_net = format!("{project}_default");
    let extra_networks: Vec<&str> = inspect["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| {
            m.keys()
                .map(String::as_str)
                .filter(|n| *n != default_net)
                .collect()
        })
        .unwrap_or_default();

    let mut text = String::new();
    text.push_str(&format!(
        "# Written by netmoded {}: run service {service:?} of Compose project {project:?} in {} mode.\n",
        env!("CARGO_PKG_VERSION"),
        target.as_str()
    ));
    text.push_str(&format!("# Why: {why}\n"));
    text.push_str(
        "# netmode does not recreate a Compose project's containers itself: the next\n\
         # `docker compose up` would undo it. Use this file as an extra -f (the command below),\n\
         # or copy its settings into your own docker-compose.override.yml.\n",
    );
    let mut body = String::new();
    match target {
        ModeKind::Host => {
            body.push_str("    network_mode: host\n");
            if bindings {
                text.push_str(
                    "# In host mode the service uses the host's ports directly: its published\n\
                     # ports are removed (`!reset` needs Compose v2.24 or later; with Compose v1,\n\
                     # delete the service's `ports:` from your file instead of using this one).\n",
                );
                body.push_str("    ports: !reset []\n");
            }
            if !extra_networks.is_empty() {
                text.push_str(&format!(
                    "# Host mode cannot be combined with networks ({}): they are removed.\n",
                    extra_networks.join(", ")
                ));
                body.push_str("    networks: !reset {}\n");
            }
        }
        ModeKind::Bridge => {
            text.push_str(
                "# Bridge mode on Docker's default bridge; to use the project's own network,\n\
                 # remove `network_mode: host` from your file instead.\n",
            );
            body.push_str("    network_mode: bridge\n");
        }
        other => {
            return Err(RequestError::Invalid(format!(
                "no Compose override for {} mode",
                other.as_str()
            )));
        }
    }
    if let Some(v) = &version {
        text.push_str(v);
        text.push('\n');
    }
    text.push_str(&format!("services:\n  {}:\n{body}", quoted(service)));

    let mut command = String::new();
    if let Some(w) = &workdir {
        command.push_str(&format!("cd {} && ", shell_quote(&w.display().to_string())));
    }
    command.push_str(&format!("docker compose -p {}", shell_quote(project)));
    for f in files.iter().chain(std::iter::once(&own)) {
        command.push_str(&format!(" -f {}", shell_quote(&f.display().to_string())));
    }
    command.push_str(&format!(" up -d {}", shell_quote(service)));

    crate::state_dir::write_atomic_mode(&own, text.as_bytes(), 0o644).map_err(|e| {
        RequestError::Unavailable(format!("cannot write the Compose override: {e}"))
    })?;
    Ok(ComposeOverride {
        file: own.display().to_string(),
        command,
        content: text,
    })
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inspect(ports: bool, networks: &[&str], workdir: &str) -> Value {
        let nets: serde_json::Map<String, Value> = networks
            .iter()
            .map(|n| (n.to_string(), json!({})))
            .collect();
        json!({
            "Config": {"Labels": {
                PROJECT: "gw", SERVICE: "web",
                FILES: "docker-compose.yml", WORKDIR: workdir,
            }},
            "HostConfig": {"PortBindings": if ports { json!({"80/tcp": [{"HostPort": "8080"}]}) } else { json!({}) }},
            "NetworkSettings": {"Networks": nets},
        })
    }

    #[test]
    fn host_override_keeps_the_projects_version_and_resets_only_what_is_there() {
        let dir = tempfile_dir("ovr");
        std::fs::write(
            dir.join("docker-compose.yml"),
            "version: \"3.7\"\nservices:\n  web:\n    image: x\n",
        )
        .unwrap();
        let w = dir.display().to_string();
        let o = write_override(
            &dir,
            &inspect(false, &["gw_default"], &w),
            ModeKind::Host,
            "test",
        )
        .unwrap();
        assert!(
            o.content
                .contains("version: \"3.7\"\nservices:\n  \"web\":\n    network_mode: host\n"),
            "{}",
            o.content
        );
        assert!(!o.content.contains("!reset"), "{}", o.content);
        assert_eq!(std::fs::read_to_string(&o.file).unwrap(), o.content);
        assert!(o.file.ends_with("compose-gw-web.override.yml"));
        assert_eq!(
            o.command,
            format!(
                "cd {w} && docker compose -p gw -f {w}/docker-compose.yml -f {} up -d web",
                o.file
            )
        );

        let o = write_override(
            &dir,
            &inspect(true, &["gw_default", "backend"], &w),
            ModeKind::Host,
            "t",
        )
        .unwrap();
        assert!(
            o.content.contains("    ports: !reset []\n"),
            "{}",
            o.content
        );
        assert!(
            o.content.contains("    networks: !reset {}\n"),
            "{}",
            o.content
        );
        assert!(o.content.contains("backend"), "{}", o.content);

        let o = write_override(&dir, &inspect(false, &[], &w), ModeKind::Bridge, "t").unwrap();
        assert!(
            o.content.contains("    network_mode: bridge\n"),
            "{}",
            o.content
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netmode-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
