//! Harness for netmode's end-to-end tests: the real Docker engine, the real `netmoded` and
//! `advisor` binaries, real sockets and a real HTTP client. No part is mocked.
//!
//! Every test owns what it creates (containers named `nmt-...`, labelled `netmode-test`,
//! temporary state directories) and removes it on drop, also when it fails. Tests need a
//! Docker engine: when none answers they fail, they are never skipped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use netmode_advisor::api;

/// A unique name for something this test process creates.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The directory holding the freshly built `netmoded`, `advisor` and `netmode-study` (built
/// once per test process, in the same profile as the tests: cargo builds a package's
/// binaries only for that package's own tests).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "netmoded",
            "-p",
            "netmode-advisor",
            "-p",
            "netmode-study",
            "--bins",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "building netmoded, advisor and netmode-study failed"
        );
        dir
    })
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(p.exists(), "{} missing after build", p.display());
    p
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(&format!("netmode-{tag}")));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------- Docker

/// Run `docker ARGS`, panicking with its stderr if it fails.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI must be installed (apt-get install docker.io)")
}

/// The engine's socket the tests (the docker CLI, netmoded, Compose) talk to: `$DOCKER_HOST`
/// if it is `unix://PATH` (`tests/run` points it at a second engine for the engine suites),
/// else Docker's default.
pub fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// What the engine reports as `HostConfig.NetworkMode` of a container run without
/// `--network`: `default` up to Docker 24, `bridge` from 25 (API 1.44) on. Read once, from a
/// container created (never started) for the purpose.
pub fn default_network_mode() -> &'static str {
    static MODE: OnceLock<String> = OnceLock::new();
    MODE.get_or_init(|| {
        let name = unique("nmt-netmode-probe");
        docker(&[
            "create",
            "--name",
            &name,
            "--label",
            "netmode-test=1",
            busybox_image(),
            "true",
        ]);
        let mode = docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &name]);
        let _ = docker_output(&["rm", "-f", &name]);
        mode
    })
}

/// The engine the tests talk to, as the docker CLI sees it: `podman` when the server's first
/// component is Podman's, else `docker`.
pub fn expected_engine() -> &'static str {
    static NAME: OnceLock<&'static str> = OnceLock::new();
    NAME.get_or_init(|| {
        let out = docker(&[
            "version",
            "--format",
            "{{range .Server.Components}}{{.Name}};{{end}}",
        ]);
        if out.to_ascii_lowercase().contains("podman") {
            "podman"
        } else {
            "docker"
        }
    })
}

/// Fail (never skip) when no Docker engine answers; say once which engine the tests use.
pub fn require_docker() {
    static OK: OnceLock<()> = OnceLock::new();
    OK.get_or_init(|| {
        let out = docker_output(&[
            "version",
            "--format",
            "{{.Server.Version}} (API {{.Server.APIVersion}})",
        ]);
        assert!(
            out.status.success(),
            "these tests need a running Docker engine: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "engine: {} {} at {}",
            expected_engine(),
            String::from_utf8_lossy(&out.stdout).trim(),
            engine_socket().display()
        );
    });
}

/// The names of every container, running or not, whose name starts with `name` (a
/// container set aside during a change is `NAME-netmode-ID`). Docker matches the filter
/// against "/NAME", Podman against "NAME".
pub fn containers_named(name: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name=^/?{name}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(String::from)
    .collect()
}

/// An image name as the test gave it: Podman reports `docker.io/library/NAME` (or
/// `localhost/NAME`) for the short name Docker reports as given.
pub fn short_image(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("localhost/"))
        .unwrap_or(name)
}

/// A tiny image made from this machine's static busybox (no registry needed): `sh`, `nc`,
/// `sleep`, `cat`.
pub fn busybox_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| import_busybox("netmode-test-busybox:1", &[]))
}

/// The busybox image with Dockerfile-style `changes` (`VOLUME /cache`, `CMD ["sleep", "9"]`),
/// imported once per process under `name`.
pub fn busybox_image_with(name: &str, changes: &[&str]) -> String {
    import_busybox(name, changes)
}

/// The name of the volume mounted at `dst` in `container` (an anonymous volume's generated
/// name: after a mode change it is bound by name, and `docker rm -v` no longer removes it).
pub fn volume_at(container: &str, dst: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{range .Mounts}}}}{{{{if eq .Destination \"{dst}\"}}}}{{{{.Name}}}}{{{{end}}}}{{{{end}}}}"
        ),
        container,
    ])
}

/// Remove the images `netmode-carry:<container>-*` a carried-over writable layer left.
pub fn remove_carried_images(container: &str) {
    let ids = docker_output(&[
        "image",
        "ls",
        "-q",
        "--filter",
        &format!("reference=netmode-carry:{container}-*"),
    ]);
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        let _ = docker_output(&["rmi", "-f", id]);
    }
}

fn import_busybox(name: &str, changes: &[&str]) -> String {
    {
        require_docker();
        if docker_output(&["image", "inspect", name]).status.success() {
            return name.to_string();
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("busybox-static must be installed (apt-get install busybox-static)");
        let tmp = TempDir::new("bbimg");
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for applet in ["sh", "nc", "sleep", "cat", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("tar");
        let mut import = Command::new("docker");
        import.arg("import");
        for c in changes {
            import.args(["--change", c]);
        }
        let out = import
            .args(["-", name])
            .stdin(tar.stdout.take().expect("tar stdout"))
            .output()
            .expect("docker import");
        assert!(
            tar.wait().expect("tar").success(),
            "tar of the busybox image"
        );
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        name.to_string()
    }
}

/// The steps of a mode change, in order, as the fault-injection hooks name them.
pub const APPLY_STEPS: [&str; 11] = [
    "plan",
    "clear_restart_policy",
    "rename_aside",
    "stop",
    "commit",
    "create",
    "connect",
    "start",
    "verify",
    "watch",
    "remove_old",
];

/// A container this test started; removed (with `-f`) on drop.
pub struct Container {
    pub name: String,
    pub id: String,
}

impl Container {
    /// `docker run -d --name <unique> --label netmode-test <extra...> <image> <cmd...>`.
    pub fn run(prefix: &str, extra: &[&str], image: &str, cmd: &[&str]) -> Container {
        let name = unique(&format!("nmt-{prefix}"));
        let mut args = vec!["run", "-d", "--name", &name, "--label", "netmode-test=1"];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        let id = docker(&args);
        Container { name, id }
    }

    /// A busybox container that accepts TCP connections on `port` forever and discards
    /// what it receives.
    pub fn tcp_sink(prefix: &str, extra: &[&str], port: u16) -> Container {
        let script = format!("while true; do nc -l -p {port} > /dev/null; done");
        Container::run(prefix, extra, busybox_image(), &["sh", "-c", &script])
    }

    /// A busybox container that streams about 30 Mbit/s (its busybox binary, every half
    /// second) to `gateway:port` (a [`discard_listener`] on the host) for as long as it runs,
    /// reconnecting when the connection drops: in bridge mode or in host mode, which is what
    /// a change of mode does to it.
    pub fn streaming(prefix: &str, extra: &[&str], gateway: &str, port: u16) -> Container {
        let script = format!(
            "while true; do (while true; do cat /bin/busybox; sleep 0.5; done) | nc {gateway} {port}; sleep 1; done"
        );
        Container::run(prefix, extra, busybox_image(), &["sh", "-c", &script])
    }

    pub fn ip(&self) -> String {
        docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &self.id,
        ])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // By id, and by name: a mode change recreates it under the same name, new id.
        let _ = docker_output(&["rm", "-f", &self.id]);
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// The gateway of Docker network `network` (`bridge`: Docker's default): the host's address
/// as the network's containers reach it.
pub fn network_gateway(network: &str) -> String {
    let gateway = docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        network,
    ]);
    if !gateway.is_empty() {
        return gateway;
    }
    // An engine that found its bridge already addressed when it started (dockerd restarted
    // on a machine whose docker0 kept its address) leaves the IPAM gateway out: the
    // bridge's own address is the gateway.
    let bridge = docker(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.bridge.name\"}}|{{.Id}}",
        network,
    ]);
    let (name, id) = bridge.split_once('|').unwrap_or((&bridge, ""));
    let name = match name {
        "" | "<no value>" => format!("br-{}", &id[..id.len().min(12)]),
        n => n.to_string(),
    };
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &name])
        .output()
        .expect("ip (iproute2) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!("network {network}: no IPAM gateway and no IPv4 address on {name}: {text}")
        })
}

/// A TCP discard server on all of the host's addresses, for as long as the test runs: what
/// containers send to it (at `network_gateway`) reaches the host, not forwarded. Its port.
pub fn discard_listener() -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

/// A TCP port free on the host right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Send bytes to `addr` for `duration` from a background thread (retrying the connection
/// while the listener comes up). Returns the thread; its result is the number of bytes sent.
pub fn stream_tcp(addr: String, duration: Duration) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + duration;
        let buf = vec![0x5au8; 16 * 1024];
        let mut sent = 0u64;
        while Instant::now() < deadline {
            let Ok(mut s) =
                TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1))
            else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
            while Instant::now() < deadline {
                match s.write(&buf) {
                    Ok(n) => sent += n as u64,
                    Err(_) => break,
                }
                // Keep it a steady stream, not a CPU hog on a 2-core machine.
                if sent % (4 << 20) < buf.len() as u64 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        sent
    })
}

// ---------------------------------------------------------------- the daemon

/// A `netmoded run` process with its own state directory and port; killed on drop. Its log
/// is printed when the test is failing.
pub struct Daemon {
    child: Option<Child>,
    pub dir: TempDir,
    pub endpoint: String,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// The netmoded executable: the workspace build unless [`Daemon::start_exe`] chose one.
    exe: Option<PathBuf>,
    /// A command netmoded runs under (`strace -f ...`), if any.
    wrapper: Vec<String>,
}

pub const FAST_SAMPLING: &str = "sample_interval = \"500ms\"";

/// A `/30` of 198.18.0.0/15 (the benchmarking range) for one daemon's local sink, unique
/// among the daemons of this test process.
pub fn unique_sink_subnet() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    format!(
        "198.19.{}.{}/30",
        pid % 256,
        (n * 4 + (pid / 256) * 16) % 256
    )
}

/// A `[probe]` section with a unique sink subnet and `keys`.
pub fn probe_section(keys: &str) -> String {
    format!(
        "[probe]\nsink_subnet = \"{}\"\n{keys}\n",
        unique_sink_subnet()
    )
}

impl Daemon {
    /// Start with `daemon_keys` in `[daemon]` and `extra` sections appended. Without a
    /// `[probe]` section in `extra`, periodic probing is off.
    pub fn start(daemon_keys: &str, extra: &str) -> Daemon {
        Daemon::start_with_env(daemon_keys, extra, &[])
    }

    pub fn start_with_env(daemon_keys: &str, extra: &str, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_full(None, &[], daemon_keys, extra, env)
    }

    /// Like [`Daemon::start`], with another netmoded executable (a static build).
    pub fn start_exe(exe: &Path, daemon_keys: &str, extra: &str) -> Daemon {
        Daemon::start_full(Some(exe.to_path_buf()), &[], daemon_keys, extra, &[])
    }

    fn start_full(
        exe: Option<PathBuf>,
        wrapper: &[&str],
        daemon_keys: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = TempDir::new("daemon");
        let state = dir.path().join("state");
        let config = dir.path().join("netmoded.toml");
        let probe = if extra.contains("[probe]") {
            String::new()
        } else {
            probe_section("enabled = false")
        };
        std::fs::write(
            &config,
            format!(
                "[daemon]\nstate_dir = \"{}\"\n{daemon_keys}\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}\n{probe}",
                state.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("netmoded.log");
        let mut d = Daemon {
            child: None,
            dir,
            endpoint: String::new(),
            config,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            log,
            exe,
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
        };
        d.spawn();
        d
    }

    /// Like [`Daemon::start`], netmoded running under `wrapper` (for example `strace -f`);
    /// [`Daemon::pid`] and signals still reach netmoded itself.
    pub fn start_wrapped(wrapper: &[&str], daemon_keys: &str, extra: &str) -> Daemon {
        Daemon::start_full(None, wrapper, daemon_keys, extra, &[])
    }

    /// Start the process (again) on the same configuration and state directory.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let endpoint_file = self.state_dir().join("endpoint");
        let _ = std::fs::remove_file(&endpoint_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let exe = self.exe.clone().unwrap_or_else(|| bin("netmoded"));
        let mut cmd = match self.wrapper.split_first() {
            Some((w, args)) => {
                let mut c = Command::new(w);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "netmoded=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start netmoded");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = std::fs::read_to_string(&endpoint_file) {
                self.endpoint = s.trim().to_string();
                if http_get(&format!("{}/healthz", self.endpoint))
                    .is_ok_and(|(code, _)| code == 200)
                {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("netmoded exited early ({status}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "netmoded did not come up:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// This daemon's instance id (labels its probe containers).
    pub fn instance(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("instance-id"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Probe containers of this daemon that exist (running or not).
    pub fn probe_containers(&self) -> Vec<String> {
        let filter = format!("label=netmode.probe.owner={}", self.instance());
        docker(&["ps", "-aq", "--filter", &filter])
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
        if self.wrapper.is_empty() || pid == 0 {
            return pid;
        }
        // The wrapper's child (strace), or the wrapper itself if it exec'd netmoded (setpriv).
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
            .unwrap_or(pid)
    }

    /// `GET path` -> (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.endpoint)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The daemon's bearer token (`<state_dir>/token`), as advisor reads it.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state_dir().join("token"))
            .expect("the daemon's token")
            .trim()
            .to_string()
    }

    /// `POST path` with a JSON body and the daemon's token -> (status, body).
    pub fn post(&self, path: &str, json: &str) -> (u16, String) {
        let auth = format!("Bearer {}", self.token());
        http_post_with(
            &format!("{}{path}", self.endpoint),
            json,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
        )
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Queue a probe and wait for it to end; the finished run.
    pub fn probe(&self, request: &str, timeout: Duration) -> api::ProbeRun {
        let (code, body) = self.post("/v1/probes", request);
        assert_eq!(code, 202, "{body}");
        let queued: api::ProbeRun = serde_json::from_str(&body).unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.get(&format!("/v1/probes/{}", queued.id));
            assert_eq!(code, 200, "{body}");
            let run: api::ProbeRun = serde_json::from_str(&body).unwrap();
            if !matches!(run.state, api::RunState::Queued | api::RunState::Running) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "probe {} still {:?} after {timeout:?}",
                run.id,
                run.state
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn status(&self) -> api::Status {
        let (code, body) = self.get("/v1/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("status JSON: {e}\n{body}"))
    }

    /// Poll `/v1/status` until `f` returns `Some`, or panic after `timeout` with `what`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&api::Status) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if let Some(v) = f(&s) {
                return v;
            }
            if Instant::now() >= deadline {
                // Everything that says why: the status, the probe runs (a container's cells
                // and error), the daemon's own log.
                let (_, probes) = self.get("/v1/probes");
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().rev().take(80).collect();
                panic!(
                    "timed out waiting for {what}; last status:\n{}\nprobe runs:\n{probes}\n\
                     the daemon's log (last 80 lines):\n{}",
                    serde_json::to_string_pretty(&s).unwrap(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Run `advisor --endpoint <this> ARGS`.
    /// Run `advisor --endpoint <this daemon> ARGS`: the advisor built next to the daemon's
    /// executable.
    pub fn advisor(&self, args: &[&str]) -> Output {
        let exe = match &self.exe {
            Some(netmoded) => netmoded.with_file_name("advisor"),
            None => bin("advisor"),
        };
        Command::new(exe)
            .arg("--endpoint")
            .arg(&self.endpoint)
            .arg("--token-file")
            .arg(self.state_dir().join("token"))
            .args(args)
            .output()
            .expect("run advisor")
    }

    /// The configuration file it was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Send a signal by name ("HUP") to the running daemon.
    pub fn signal(&self, name: &str) {
        unsafe_kill(self.pid(), name);
    }

    /// Wait (up to 20 s) until the daemon lists the container named `name`.
    pub fn wait_container(&self, name: &str) {
        self.wait_for(&format!("container {name}"), Duration::from_secs(20), |s| {
            find(s, name).map(|_| ())
        });
    }

    /// SIGTERM, and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_kill(self.pid(), "TERM");
        self.wait_exit(Duration::from_secs(20))
    }

    /// Set (or, with `None`, remove) an environment variable for the next `spawn`.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Wait for the process to exit (signalled, aborted, crashed): its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "netmoded did not exit within {timeout:?}:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Daemon {
    /// SIGTERM, as systemd stops it, so that the daemon removes what it made (probe
    /// containers of a run in flight, the local sink's veth pair); SIGKILL after 15 s. A test
    /// that wants no clean-up says so (`kill9`).
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- netmoded log ({}) ----\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

fn into_text(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut resp = resp.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    let mut body = String::new();
    resp.body_mut()
        .as_reader()
        .read_to_string(&mut body)
        .map_err(|e| e.to_string())?;
    Ok((code, body))
}

/// POST a JSON body with a real client, no credential.
pub fn http_post(url: &str, json: &str) -> Result<(u16, String), String> {
    http_post_with(url, json, &[("content-type", "application/json")])
}

/// POST a body with exactly these headers.
pub fn http_post_with(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut req = agent().post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    into_text(req.send(body))
}

/// GET with these headers.
pub fn http_get_with(url: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    into_text(req.call())
}

/// A plain HTTP GET with a real client (ureq), no proxy; non-2xx statuses are returned, not
/// turned into errors.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    http(url, "GET")
}

pub fn http(url: &str, method: &str) -> Result<(u16, String), String> {
    let agent = agent();
    into_text(match method {
        "POST" => agent.post(url).send_empty(),
        "PUT" => agent.put(url).send_empty(),
        "DELETE" => agent.delete(url).call(),
        _ => agent.get(url).call(),
    })
}

/// The container named `name` in a status document.
pub fn find<'a>(s: &'a api::Status, name: &str) -> Option<&'a api::Container> {
    s.containers.iter().find(|c| c.name == name)
}

// ---------------------------------------------------------------- an engine that comes and goes

/// A unix-socket proxy in front of the real Docker socket. Stopping it closes every
/// connection through it, as an engine restart does; starting it again brings the engine
/// "back" at the same path.
pub struct DockerProxy {
    pub path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl DockerProxy {
    pub fn start(path: &Path) -> DockerProxy {
        use std::os::unix::net::{UnixListener, UnixStream};
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind proxy socket");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::<UnixStream>::new()));
        let (stop2, conns2) = (stop.clone(), conns.clone());
        // The engine the tests use (`$DOCKER_HOST` when tests/run points it elsewhere).
        let target = engine_socket();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(engine) = UnixStream::connect(&target) else {
                    continue;
                };
                let mut list = conns2.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(engine.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), engine.try_clone().unwrap()),
                    (engine, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        DockerProxy {
            path: path.to_path_buf(),
            stop,
            conns,
            accept: Some(accept),
        }
    }

    /// Close every connection and the listening socket.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::os::unix::net::UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------- an upstream host of our own

/// An "upstream host" made here: a network namespace behind a veth pair, with an address in
/// a unique /30 of 198.18.0.0/15, running stock `iperf3 -s` servers. Removed on drop.
pub struct UpstreamHost {
    pub ns: String,
    pub addr: std::net::Ipv4Addr,
    host_link: String,
    servers: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 (ip) must be installed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl UpstreamHost {
    pub fn with_iperf3(ports: &[u16]) -> UpstreamHost {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let ns = unique("nmt-up");
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        let (host_link, peer) = (format!("nmth{tag}"), format!("nmtp{tag}"));
        let subnet = unique_sink_subnet();
        let net: std::net::Ipv4Addr = subnet.split('/').next().unwrap().parse().unwrap();
        let host_ip = std::net::Ipv4Addr::from(u32::from(net) + 1);
        let addr = std::net::Ipv4Addr::from(u32::from(net) + 2);
        ip(&["netns", "add", &ns]);
        let mut up = UpstreamHost {
            ns: ns.clone(),
            addr,
            host_link: host_link.clone(),
            servers: Vec::new(),
        };
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&["link", "set", &peer, "netns", &ns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_link]);
        ip(&["link", "set", &host_link, "up"]);
        for args in [
            vec!["addr", "add", &format!("{addr}/30"), "dev", &peer],
            vec!["link", "set", &peer, "up"],
            vec!["link", "set", "lo", "up"],
            vec!["route", "add", "default", "via", &host_ip.to_string()],
        ] {
            let mut full = vec!["netns", "exec", &ns, "ip"];
            full.extend(args.iter().map(|s| &**s));
            ip(&full);
        }
        for port in ports {
            let log = std::fs::File::create(format!("/tmp/{ns}-{port}.log")).unwrap();
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "iperf3",
                    "-s",
                    "-V",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("iperf3 must be installed (apt-get install iperf3)");
            up.servers.push(child);
        }
        // Wait until each server listens (asking the kernel, not connecting: iperf3 would
        // take a bare connection for a client).
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in ports {
            loop {
                let out = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        &ns,
                        "ss",
                        "-Hltn",
                        &format!("sport = :{port}"),
                    ])
                    .output()
                    .expect("ss (iproute2)");
                if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "iperf3 -s on port {port} did not come up"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        up
    }
}

impl Drop for UpstreamHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.ns) {
                    eprintln!(
                        "---- {name} ----\n{}",
                        std::fs::read_to_string(entry.path()).unwrap_or_default()
                    );
                }
            }
        }
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
