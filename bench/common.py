"""Shared helpers of netmode's benchmarks: process-tree CPU and memory from /proc, the test
busybox image, containers, the release binaries, HTTP timing. Standard library only."""

import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
IMAGE = "netmode-test-busybox:1"
LABEL = "netmode-bench=1"


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, text=True, capture_output=True, **kw)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


_apt_updated = False


def ensure_installed(command, package):
    """The path of `command`, installing Debian's `package` first if it is missing (benchmarks
    set up their own tools on a fresh machine). A service the package ships is not started
    (a policy-rc.d for the install's duration): a benchmark starts what it measures itself,
    and never has to end another's processes by name."""
    global _apt_updated
    found = sh("sh", "-c", f"command -v {command}", check=False).stdout.strip()
    if found:
        return found
    log(f"{command} not found: installing {package} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        sh("apt-get", "update", "-qq", env=env)
        _apt_updated = True
    policy = "/usr/sbin/policy-rc.d"
    ours = not os.path.exists(policy)
    if ours:
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# bench/common.py: no service starts while a benchmark installs\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", package, env=env)
    finally:
        if ours:
            os.remove(policy)
    found = sh("sh", "-c", f"command -v {command}", check=False).stdout.strip()
    if not found:
        raise SystemExit(f"{package} installed but {command} still not found on PATH")
    return found


def ensure_busybox():
    if not os.path.exists("/bin/busybox"):
        ensure_installed("busybox", "busybox-static")


def install_peer(exe, package):
    """A peer monitor from Debian, installed with its service left stopped (ensure_installed):
    the benchmark measures only the instance it starts itself."""
    if not os.path.exists(exe):
        ensure_installed(os.path.basename(exe), package)


def release_bin(name):
    """Build (if needed) and return a release binary of this workspace."""
    sh("cargo", "build", "--release", "--quiet", "-p", "netmoded", "-p", "netmode-advisor", "-p", "netmode-study",
       "--bins", cwd=ROOT)
    return os.path.join(ROOT, "target", "release", name)


def heap_stats_bin():
    """The static x86_64 netmoded (musl, as shipped) built with feature heap-stats, whose
    /metrics carries netmode_heap_bytes: in target/heap-stats (a target directory of its own,
    so the shipped build in target/ is left as it is). Builds musl-cross's toolchain first if
    it is not there."""
    triple = "x86_64-unknown-linux-musl"
    venv = os.path.join(ROOT, "musl-cross", ".venv")
    if not os.path.exists(os.path.join(venv, "bin", "cargo-zigbuild")):
        sh("musl-cross/build", cwd=ROOT, env=dict(os.environ, TARGETS=triple, NO_DEB="1"))
    env = dict(os.environ, CARGO="/usr/bin/cargo", RUSTC="/usr/bin/rustc", RUSTC_BOOTSTRAP="1",
               RUSTFLAGS="-Clink-self-contained=no", CARGO_TARGET_DIR=os.path.join(ROOT, "target", "heap-stats"),
               PATH=os.path.join(venv, "bin") + ":" + os.environ["PATH"])
    sh("cargo-zigbuild", "build", "--release", "--locked", "-Zbuild-std=std,panic_abort", "--target", triple,
       "-p", "netmoded", "--bin", "netmoded", "--features", "heap-stats", cwd=ROOT, env=env)
    return os.path.join(ROOT, "target", "heap-stats", triple, "release", "netmoded")


def busybox_image():
    if sh("docker", "image", "inspect", IMAGE, check=False).returncode == 0:
        return IMAGE
    ensure_busybox()
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(f"{d}/bin")
        os.makedirs(f"{d}/tmp")
        sh("cp", "/bin/busybox", f"{d}/bin/busybox")
        for a in ["sh", "nc", "sleep", "cat", "echo"]:
            os.symlink("busybox", f"{d}/bin/{a}")
        tar = subprocess.Popen(["tar", "-C", d, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", IMAGE], stdin=tar.stdout, check=True, capture_output=True)
    return IMAGE


def start_containers(n, prefix, host_every=4):
    """n idle containers; every `host_every`-th in host mode, the rest in bridge mode."""
    busybox_image()
    ids = []
    for i in range(n):
        net = ["--network", "host"] if host_every and i % host_every == host_every - 1 else []
        ids.append(sh("docker", "run", "-d", "--label", LABEL, "--name", f"{prefix}-{i}", *net,
                      IMAGE, "sleep", "1000000").stdout.strip())
    return ids


def remove_benchmark_containers():
    ids = sh("docker", "ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    if ids:
        sh("docker", "rm", "-f", *ids, check=False)


def tree(root):
    """root and its descendants (scans /proc)."""
    parent = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    out, i = [root], 0
    while i < len(out):
        out += [c for c, pp in parent.items() if pp == out[i]]
        i += 1
    return out


def cpu_seconds(pids):
    """utime+stime of the processes, plus what their reaped children used."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])
        except OSError:
            pass
    return total / CLK_TCK


def status_kib(pids, key):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Footprint:
    """Samples a process tree's RSS once a second and its CPU over a window."""

    def __init__(self, pid, scrape_url=None, scrape_every=15):
        self.pid = pid
        self.scrape_url = scrape_url
        self.scrape_every = scrape_every

    def measure(self, window):
        """Over `window` seconds; the scrape URL (if any) is fetched every `scrape_every`
        seconds, as a Prometheus server would."""
        pids = tree(self.pid)
        c0, t0 = cpu_seconds(pids), time.monotonic()
        rss = []
        next_scrape = t0
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while time.monotonic() - t0 < window:
            if self.scrape_url and time.monotonic() >= next_scrape:
                with opener.open(self.scrape_url, timeout=30) as r:
                    r.read()
                next_scrape += self.scrape_every
            time.sleep(1)
            pids = tree(self.pid)
            rss.append(status_kib(pids, "VmRSS"))
        c1, t1 = cpu_seconds(pids), time.monotonic()
        return {
            "rss_kib_mean": statistics.mean(rss),
            "rss_kib_max": max(rss),
            "peak_rss_kib": status_kib(pids, "VmHWM"),
            "cpu_percent_of_a_core": 100 * (c1 - c0) / (t1 - t0),
            "cpu_seconds_per_hour": 3600 * (c1 - c0) / (t1 - t0),
            "processes": len(pids),
        }


def wait_http(url, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                r.read()
                return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def latency(url, n):
    """n sequential GETs with a fresh connection each (as a fleet script does)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    times, size = [], 0
    for _ in range(n):
        t = time.perf_counter()
        with opener.open(url, timeout=30) as r:
            size = len(r.read())
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p95_ms": times[int(len(times) * 0.95)],
            "max_ms": times[-1], "bytes": size}


API = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url):
    """A GET of netmoded's API, as JSON."""
    with API.open(url, timeout=30) as r:
        return json.loads(r.read())


def post(url, body, token):
    """A POST to netmoded's API with its bearer token (`state/token` of its state directory)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json",
                                          "authorization": f"Bearer {token}"})
    with API.open(req, timeout=30) as r:
        return json.loads(r.read())


def probe_all(url, token):
    """One probe run of every container with the sweep, waited for; its record."""
    run = post(url + "/v1/probes", {"all": True, "sweep": True}, token)
    while True:
        r = get(f"{url}/v1/probes/{run['id']}")
        if r["state"] not in ("queued", "running"):
            if r["state"] != "done":
                raise SystemExit(f"probe run {r['id']} {r['state']}: {r.get('error')}")
            return r
        time.sleep(1)


def netmoded_config(state_dir, extra="", daemon=""):
    """Write `state_dir`/netmoded.toml: state in `state_dir`/state, a free port; periodic
    probing off unless `extra` says otherwise; `daemon`: more keys of [daemon] (like
    'sample_interval = "1s"'). A running netmoded rereads it on SIGHUP. Returns its path."""
    cfg = os.path.join(state_dir, "netmoded.toml")
    probe = "" if "[probe]" in extra else "[probe]\nenabled = false\n"
    with open(cfg, "w") as f:
        f.write(f'[daemon]\nstate_dir = "{state_dir}/state"\n{daemon}\n[http]\nlisten = "127.0.0.1:0"\n{extra}\n{probe}')
    return cfg


def start_netmoded(state_dir, extra="", exe=None, daemon="", wrapper=()):
    """netmoded (the release build, or `exe`) on `netmoded_config(state_dir, extra, daemon)`,
    under `wrapper` (say, setpriv without a capability) if given; (the process, its URL) once
    it serves."""
    cfg = netmoded_config(state_dir, extra, daemon)
    p = subprocess.Popen([*wrapper, exe or release_bin("netmoded"), "--config", cfg, "run"],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(state_dir, "log"), "w"))
    ep = os.path.join(state_dir, "state", "endpoint")
    for _ in range(300):
        if os.path.exists(ep):
            break
        time.sleep(0.1)
    url = open(ep).read().strip()
    wait_http(url + "/healthz")
    return p, url


def start_peer(name):
    """A peer monitor started the same way as netmoded (foreground, by hand)."""
    if name == "node-exporter":
        exe = "/usr/bin/prometheus-node-exporter"
        install_peer(exe, "prometheus-node-exporter")
        p = subprocess.Popen([exe, "--web.listen-address=127.0.0.1:19101"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = "http://127.0.0.1:19101/metrics"
    elif name == "netdata":
        exe = "/usr/sbin/netdata"
        install_peer(exe, "netdata")
        p = subprocess.Popen([exe, "-D", "-p", "19999"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = "http://127.0.0.1:19999/api/v1/allmetrics?format=prometheus"
    else:
        raise ValueError(name)
    wait_http(url)
    return p, url


def stop(p):
    p.terminate()
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()


def report(title, rows, columns):
    print(f"\n## {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    sys.stdout.flush()


def dump_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


BENCH_IMAGE = "netmode-bench:1"


def ldd_files(exe):
    files = {exe}
    for line in sh("ldd", exe, check=False).stdout.splitlines():
        for part in line.split():
            if part.startswith("/"):
                files.add(part)
    return files


def bench_image(netmoded):
    """An image with busybox (as /bin/sh, sleep), netmoded at /netmoded and iperf3, with their
    shared objects, made from this machine's files (no registry). Rebuilt every call: the
    netmoded inside must be the one being measured."""
    iperf3 = ensure_installed("iperf3", "iperf3")
    ensure_busybox()
    with tempfile.TemporaryDirectory() as d:
        for f in ldd_files(iperf3) | ldd_files(netmoded):
            if f == netmoded:
                dst = d + "/netmoded"
            else:
                dst = d + os.path.realpath(f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            sh("cp", "-L", f, dst)
            if f != netmoded and os.path.realpath(f) != f and not os.path.exists(d + f):
                os.makedirs(os.path.dirname(d + f), exist_ok=True)
                sh("cp", "-L", f, d + f)
        os.makedirs(d + "/bin", exist_ok=True)
        os.makedirs(d + "/tmp", exist_ok=True)
        sh("cp", "/bin/busybox", d + "/bin/busybox")
        for a in ["sh", "sleep", "cat"]:
            os.symlink("busybox", f"{d}/bin/{a}")
        tar = subprocess.Popen(["tar", "-C", d, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", BENCH_IMAGE], stdin=tar.stdout, check=True, capture_output=True)
    return BENCH_IMAGE


class Upstream:
    """An upstream host made here: a network namespace behind a veth pair (host side .1,
    namespace .2 of a /30), for sinks and servers."""

    def __init__(self, ns, host_link, subnet_base):
        self.ns, self.host_link = ns, host_link
        a, b, c, _ = subnet_base.split(".")
        self.host_ip, self.addr = f"{a}.{b}.{c}.1", f"{a}.{b}.{c}.2"
        self.procs = []
        self.teardown()
        peer = host_link + "p"
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", host_link, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", host_link)
        sh("ip", "link", "set", host_link, "up")
        for args in (["addr", "add", f"{self.addr}/30", "dev", peer], ["link", "set", peer, "up"],
                     ["link", "set", "lo", "up"], ["route", "add", "default", "via", self.host_ip]):
            sh("ip", "netns", "exec", ns, "ip", *args)

    def run(self, *argv):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def wait_listening(self, port, proto="t"):
        for _ in range(200):
            out = sh("ip", "netns", "exec", self.ns, "ss", f"-Hl{proto}n", f"sport = :{port}").stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise SystemExit(f"nothing listens on {self.addr}:{port}")

    def teardown(self):
        for p in getattr(self, "procs", []):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        sh("ip", "link", "del", self.host_link, check=False)
        sh("ip", "netns", "del", self.ns, check=False)


# advisor.min_gain's default: a switch pays when the other mode gains at least this.
MIN_GAIN = 0.10


def calibration(rows, path):
    """How well p_switch_pays (the containers run in bridge: the probability that host gains
    at least MIN_GAIN) predicts the oracle: per decile of P, the share where the oracle's host
    gain was at least MIN_GAIN (a reliability diagram, also written as an SVG), the Brier
    score, the expected calibration error, the false-switch rate (decided switch where the
    oracle's gain was below MIN_GAIN) and how often the 80 % interval of the expected gain
    covered the oracle's."""
    got = calibration_figures(rows)
    if got is None:
        return None
    bins, figures = got
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="320" height="320" font-size="10">',
           '<rect x="40" y="10" width="260" height="260" fill="none" stroke="black"/>',
           '<line x1="40" y1="270" x2="300" y2="10" stroke="#aaa" stroke-dasharray="4"/>',
           '<text x="120" y="300">P that switching pays</text>',
           '<text x="2" y="140" transform="rotate(-90 10 140)">observed share</text>']
    for b in bins:
        x, y = 40 + 260 * b["mean P"], 270 - 260 * b["observed"]
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{2 + min(b["n"], 20) / 2:.1f}" fill="steelblue"/>')
    out.append("</svg>")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(out))
    report("Calibration of p_switch_pays against the oracle (reliability diagram: " + path + ")",
           [{**b, "mean P": f"{b['mean P']:.2f}", "observed": f"{b['observed']:.2f}"} for b in bins],
           ["decile", "n", "mean P", "observed"])
    print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in figures.items()))
    return figures


def one_at_a_time(rows):
    """bench/apps rows judged against the oracle of one request at a time (its requests/s
    stand in for the goodput: what a request/response probe measures, the latency of an
    exchange) where the row has one; other rows as they are."""
    return [dict(r, bridge_bps=r["one_bridge"], host_bps=r["one_host"], bridge_runs=r.get("one_bridge_runs"),
                 host_runs=r.get("one_host_runs")) if r.get("one_bridge") else r
            for r in rows]


# The last commit before d59e45c gave the policy a probability: "today's policy" of issue 25,
# a confidence `1 - posterior sd / 0.25` gating apply mode at advisor.min_confidence 0.5.
LEGACY_COMMIT = "a66fc363849063603cb4048bad1ed9a0197bccb2"
LEGACY_MIN_CONFIDENCE = 0.5


def legacy_bin():
    """The replay of the confidence policy (bench/legacy/replay.rs), built against
    LEGACY_COMMIT's own tree in a scratch worktree (target/legacy keeps the build), or None
    with the reason logged when this clone lacks that commit (a shallow clone)."""
    exe = os.path.join(ROOT, "target", "legacy", "release", "examples", "legacy_replay")
    source = os.path.join(ROOT, "bench", "legacy", "replay.rs")
    if os.path.exists(exe) and os.path.getmtime(exe) >= os.path.getmtime(source):
        return exe
    if sh("git", "-C", ROOT, "cat-file", "-e", LEGACY_COMMIT + "^{commit}", check=False).returncode != 0:
        log(f"the confidence policy is not replayed: commit {LEGACY_COMMIT[:7]} is not in this clone "
            "(a shallow one? git fetch --unshallow)")
        return None
    where = tempfile.mkdtemp(prefix="nmlegacy-")
    try:
        sh("git", "-C", ROOT, "worktree", "add", "--detach", "--force", where, LEGACY_COMMIT)
        shutil.copyfile(source, os.path.join(where, "advisor", "examples", "legacy_replay.rs"))
        sh("cargo", "build", "--release", "--quiet", "-p", "netmode-advisor", "--example", "legacy_replay",
           cwd=where, env=dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "legacy")))
    finally:
        sh("git", "-C", ROOT, "worktree", "remove", "--force", where, check=False)
        sh("rm", "-rf", where, check=False)
    return exe


def legacy_policy(rows, name_of):
    """Per row, the mode the confidence policy's apply mode would have chosen on the row's
    saved evidence (`row["evidence"]`, the container `name_of(row)`, run in bridge mode as
    bench/apps runs them): the recommended mode where it recommended a measured switch at
    confidence >= LEGACY_MIN_CONFIDENCE (its default advisor.min_confidence), bridge
    otherwise; a blocked switch counts as made, as the advisor's do. None for a row it could
    not read; None instead of the list when it cannot be built."""
    exe = legacy_bin()
    if exe is None:
        return None
    req = {"points": [{"dir": r["evidence"], "name": name_of(r)} for r in rows], "active_window_s": 5.0}
    out = subprocess.run([exe], input=json.dumps(req), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"the confidence policy's replay failed: {out.stderr.strip()}")
    modes = []
    for rec in json.loads(out.stdout):
        if rec is None:
            modes.append(None)
            continue
        switch = (rec.get("action") == "switch" and rec.get("basis") == "measured"
                  and rec.get("confidence", 0.0) >= LEGACY_MIN_CONFIDENCE)
        modes.append(rec["mode"] if switch else "bridge")
    return modes


def regret(row, mode):
    """What `mode` loses against the better of the two by the row's oracle, %."""
    best = max(row["bridge_bps"], row["host_bps"])
    return 100 * (best - row[f"{mode}_bps"]) / best


def print_regret(rows):
    """Mean regret of always-bridge, the study's static rule (`row["static"]`), the
    confidence policy (`row["legacy"]`, where legacy_policy gave one for every row) and the
    advisor (`row["advisor"]`) over `rows`, and per kind of bridge when both kinds are there."""
    policies = [("always-bridge", lambda x: "bridge"), ("static rule", lambda x: x["static"]),
                ("confidence policy", lambda x: x.get("legacy")), ("advisor", lambda x: x["advisor"])]
    kinds = [("all", rows)]
    policed = [x for x in rows if x["net"] == "policed"]
    if 0 < len(policed) < len(rows):
        kinds += [("policed", policed), ("unpoliced", [x for x in rows if x["net"] != "policed"])]
    for kind, these in kinds:
        shown = []
        for label, mode in policies:
            got = [regret(x, mode(x)) for x in these if mode(x)]
            if len(got) == len(these):
                shown.append(f"{label} {statistics.mean(got):.2f} %")
        print(f"  mean regret, {kind} ({len(these)}): " + ", ".join(shown))


def brier_ece(pts):
    """The Brier score, the expected calibration error and the reliability diagram's bins of
    (P, outcome, row) points."""
    brier = statistics.mean((p - y) ** 2 for p, y, _ in pts)
    bins = []
    for k in range(10):
        inside = [(p, y) for p, y, _ in pts if k / 10 <= p < (k + 1) / 10 or (k == 9 and p == 1.0)]
        if inside:
            bins.append({"decile": f"{k / 10:.1f}-{(k + 1) / 10:.1f}", "n": len(inside),
                         "mean P": statistics.mean(p for p, _ in inside),
                         "observed": statistics.mean(y for _, y in inside)})
    ece = sum(b["n"] * abs(b["mean P"] - b["observed"]) for b in bins) / len(pts)
    return brier, ece, bins


def student_t_cdf(t, df):
    """P(T <= t) for Student's t with `df` degrees of freedom (Simpson's rule on its density:
    the standard library has no t distribution)."""
    if df > 200:
        return statistics.NormalDist().cdf(t)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x, steps = abs(t), 2000
    h = x / steps
    f = [c * (1 + (h * i) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
    area = h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    return 0.5 + area if t >= 0 else 0.5 - area


def oracle_log_gain(row):
    """The oracle's log gain host/bridge as its runs tell it: (the difference of the modes' mean
    log runs, its standard error, Welch's degrees of freedom), or None without two runs per
    mode."""
    b = [math.log(x) for x in row.get("bridge_runs") or [] if x > 0]
    h = [math.log(x) for x in row.get("host_runs") or [] if x > 0]
    if len(b) < 2 or len(h) < 2:
        return None
    vb, vh = statistics.variance(b) / len(b), statistics.variance(h) / len(h)
    df = (vb + vh) ** 2 / (vb ** 2 / (len(b) - 1) + vh ** 2 / (len(h) - 1)) if vb + vh > 0 else math.inf
    return statistics.mean(h) - statistics.mean(b), math.sqrt(vb + vh), df


def oracle_below(row, log_gain):
    """The oracle's probability, given its runs, that host's true log gain is below `log_gain`."""
    got = oracle_log_gain(row)
    if got is None:
        return None
    d, se, df = got
    if se == 0:
        return 1.0 if d < log_gain else 0.0
    return student_t_cdf((log_gain - d) / se, df)


def oracle_probability(row):
    """The probability, given the oracle's own runs, that host's true gain over bridge is at
    least MIN_GAIN (Welch's t on the logs of its runs). The oracle is a few runs too: where its
    gain is near MIN_GAIN its yes/no is close to a coin's, and the Brier score and ECE against
    it carry that noise. None without two runs per mode."""
    below = oracle_below(row, math.log1p(MIN_GAIN))
    return None if below is None else 1.0 - below


def host_log(row, gain):
    """A gain in the row's recommendation's direction as a log gain host/bridge."""
    g = math.log1p(gain)
    return g if row.get("rec_mode") == "host" else -g


def oracle_coverage(row):
    """The oracle's probability, given its runs, that host's true gain lies in the row's 80 %
    interval (the coverage its yes/no would be, without its noise)."""
    iv = row.get("gain_interval")
    if not iv:
        return None
    lo, hi = sorted(host_log(row, g) for g in iv)
    below_hi, below_lo = oracle_below(row, hi), oracle_below(row, lo)
    return None if below_hi is None else below_hi - below_lo


def scenario_of(row):
    """What makes a row's scenario (its readings after 1, 2 and 4 rounds share the servers,
    the probes and the oracle: they are not independent points)."""
    return tuple(row.get(k) for k in ("app", "protocol", "size", "kind", "n", "cpus", "net"))


def by_scenario(pts):
    """(P, outcome, row) points grouped by their row's scenario."""
    groups = {}
    for pt in pts:
        groups.setdefault(scenario_of(pt[2]), []).append(pt)
    return groups


def scenario_bootstrap(pts, draws=2000):
    """90 % intervals (5th and 95th percentiles) of the Brier score and the ECE over
    resamplings of whole scenarios with replacement (seeded: the same rows give the same
    figures). With ten scenarios they say how far the figures themselves can be trusted: an
    ECE goal of 0.05 is only shown met when the interval's top is under it."""
    groups = by_scenario(pts)
    keys = sorted(groups, key=repr)
    if len(keys) < 2:
        return None, None
    rng = random.Random(0)
    briers, eces = [], []
    for _ in range(draws):
        sample = [pt for k in rng.choices(keys, k=len(keys)) for pt in groups[k]]
        b, e, _ = brier_ece(sample)
        briers.append(b)
        eces.append(e)

    def interval(v):
        v = sorted(v)
        return f"{v[int(0.05 * len(v))]:.3f}..{v[int(0.95 * len(v)) - 1]:.3f}"

    return interval(briers), interval(eces)


def calibrated_ece(pts, draws=2000):
    """The ECE that a perfectly calibrated P would show on these points: outcomes drawn from
    the points' own P (one uniform draw per scenario, shared by its readings, as they share
    one oracle), the ECE of each draw; its median and 95th percentile. An ECE below the
    median is all that so few points can show."""
    groups = by_scenario(pts)
    rng = random.Random(1)
    eces = []
    for _ in range(draws):
        sample = []
        for g in groups.values():
            u = rng.random()
            sample += [(p, 1.0 if u < p else 0.0, r) for p, _, r in g]
        eces.append(brier_ece(sample)[1])
    eces.sort()
    return f"{eces[len(eces) // 2]:.3f} (95th {eces[int(0.95 * len(eces)) - 1]:.3f})"


def calibration_figures(rows):
    """calibration()'s figures without printing them: (the reliability diagram's bins, the
    figures), or None when no row has a probability."""
    pts = [(r["p_switch_pays"], 1.0 if r["host_bps"] >= (1 + MIN_GAIN) * r["bridge_bps"] else 0.0, r)
           for r in rows if r.get("p_switch_pays") is not None]
    if not pts:
        return None
    brier, ece, bins = brier_ece(pts)
    brier_90, ece_90 = scenario_bootstrap(pts)
    switches = [(p, y) for p, y, r in pts if r.get("decision") == "switch"]
    false_switch = (sum(1 for _, y in switches if y == 0.0) / len(switches)) if switches else None
    covered = []
    for _, _, r in pts:
        iv = r.get("gain_interval")
        if not iv:
            continue
        host_gain = r["host_bps"] / r["bridge_bps"] - 1
        gain = host_gain if r.get("rec_mode") == "host" else r["bridge_bps"] / r["host_bps"] - 1
        covered.append(iv[0] <= gain <= iv[1])
    figures = {"scenarios": len(pts), "brier": brier, "brier 90% (scenario bootstrap)": brier_90,
               "ece": ece, "ece 90% (scenario bootstrap)": ece_90,
               "ece of a calibrated P here": calibrated_ece(pts),
               "decided switches": len(switches), "false-switch rate": false_switch,
               "80% interval coverage": (sum(covered) / len(covered)) if covered else None,
               "undecided": sum(1 for _, _, r in pts if r.get("decision") == "undecided")}
    soft = [(p, oracle_probability(r), r) for p, _, r in pts]
    soft = [pt for pt in soft if pt[1] is not None]
    if soft:
        # Against q, the oracle's own probability (oracle_probability): what the Brier score
        # and ECE would be against an oracle that knew its gain, and the Brier score its noise
        # adds, mean q (1 - q) (E[(P - Y)^2] = (P - q)^2 + q (1 - q) for Y drawn with
        # probability q). Day-to-day changes of the gain itself are not in q: they are the
        # gateway's, and an advisor's P has to carry them.
        b, e, _ = brier_ece(soft)
        figures.update({"brier against the oracle's own P": b, "ece against the oracle's own P": e,
                        "brier the oracle's noise adds": statistics.mean(q * (1 - q) for _, q, _ in soft)})
        decided = [q for _, q, r in soft if r.get("decision") == "switch"]
        if decided:
            figures["false-switch rate by the oracle's own P"] = statistics.mean(1 - q for q in decided)
    cover = [c for c in (oracle_coverage(r) for _, _, r in pts) if c is not None]
    if cover:
        figures["80% coverage of the oracle's own gain"] = statistics.mean(cover)
    # Discrimination, which no recalibration gives: how often P ranks a point where host paid
    # above one where it did not (0.5 is a coin), over all points and without the policed
    # ones (whose gains are not in doubt).
    for label, these in (("auc", pts), ("auc unpoliced", [pt for pt in pts if pt[2].get("net") != "policed"])):
        pos = [p for p, y, _ in these if y == 1.0]
        neg = [p for p, y, _ in these if y == 0.0]
        if pos and neg:
            figures[label] = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / (len(pos) * len(neg))
    return bins, figures
