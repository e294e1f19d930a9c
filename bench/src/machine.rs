//! What the numbers were measured on.

use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub containerd: String,
    pub runc: String,
    pub moat_shim: String,
    pub moat_shim_bytes: u64,
    /// 1-minute load average when the run began and ended (other work on the host skews it).
    pub load_at_start: f64,
    pub load_at_end: f64,
    pub date: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let shim = moat_e2e::paths::shim_binary();
        Machine {
            kernel: first_line(&["uname", "-srm"]),
            cpu,
            cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            containerd: first_line(&[
                &moat_e2e::paths::containerd_binary().to_string_lossy(),
                "--version",
            ]),
            runc: first_line(&["runc", "--version"]),
            moat_shim: shim.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            moat_shim_bytes: shim
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .unwrap_or(0),
            load_at_start: load(),
            load_at_end: 0.0,
            date: first_line(&["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        }
    }

    pub fn describe(&self) -> String {
        let load = if self.load_at_end > 0.0 {
            format!("{:.2} -> {:.2}", self.load_at_start, self.load_at_end)
        } else {
            format!("{:.2}", self.load_at_start)
        };
        format!(
            "{} | {} x {} | {} GiB | {} | {} | shim {} ({:.1} MiB) | load {load} | {}",
            self.kernel,
            self.cpus,
            self.cpu,
            self.memory_gib,
            self.containerd,
            self.runc,
            self.moat_shim,
            self.moat_shim_bytes as f64 / 1048576.0,
            self.date
        )
    }
}

/// The 1-minute load average.
pub fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}
