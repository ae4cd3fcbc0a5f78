//! The machine a study ran on, as flent records it: kernel, CPU, memory, Docker, interfaces
//! and their queueing disciplines.

use netmoded::docker::EngineVersion;
use netmoded::sys::hoststat;

use crate::results::Machine;

fn cpu_model() -> String {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "Hardware" | "cpu model")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let mtu = std::fs::read_to_string(e.path().join("mtu")).unwrap_or_default();
                    format!("{name} mtu {}", mtu.trim())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn qdiscs() -> Vec<String> {
    std::process::Command::new("tc")
        .args(["qdisc", "show"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub fn describe(engine: &EngineVersion, sink: &str, perf: String) -> Machine {
    Machine {
        hostname: hoststat::hostname(),
        kernel: hoststat::kernel(),
        arch: std::env::consts::ARCH.to_string(),
        cpu_model: cpu_model(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_bytes: memory_bytes(),
        docker_version: engine.server.clone(),
        docker_api: engine.api.clone(),
        interfaces: interfaces(),
        qdiscs: qdiscs(),
        perf,
        sink: sink.to_string(),
    }
}
