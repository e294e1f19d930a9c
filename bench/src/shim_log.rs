//! The moat shim's own timing of each Create, read back from containerd's log (the shims'
//! log fifos are copied there): `create <id>: <ms> ms in the shim (sandbox|container)`,
//! written by shim/src/task/confine.rs.

use std::path::Path;

/// Create durations (ms) the shim logged, split by kind.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ShimCreates {
    pub sandbox_ms: Vec<f64>,
    pub container_ms: Vec<f64>,
}

/// Reads the log written since byte `from` (the log's length before the measured run).
pub fn read_since(log: &Path, from: u64) -> ShimCreates {
    let text = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
    parse(&String::from_utf8_lossy(&text[start..]))
}

pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

pub fn parse(text: &str) -> ShimCreates {
    let mut out = ShimCreates::default();
    for line in text.lines() {
        let Some(at) = line.find("create ") else {
            continue;
        };
        let rest = &line[at + "create ".len()..];
        let Some((id, rest)) = rest.split_once(": ") else {
            continue;
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let Some((ms, rest)) = rest.split_once(" ms in the shim (") else {
            continue;
        };
        let Ok(ms) = ms.parse::<f64>() else { continue };
        if rest.starts_with("sandbox)") {
            out.sandbox_ms.push(ms);
        } else if rest.starts_with("container)") {
            out.container_ms.push(ms);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_lines_are_found_in_containerd_log_lines() {
        let text = "time=\"2026-01-01T00:00:00Z\" level=info msg=\"create 0af3: 12.500 ms in the shim (sandbox)\" runtime=io.containerd.moat.v2\n\
                    time=\"2026-01-01T00:00:01Z\" level=info msg=\"create 1bc: 7.250 ms in the shim (container)\"\n\
                    time=\"2026-01-01T00:00:02Z\" level=info msg=\"CreateContainer within sandbox\"\n\
                    create not-hex: 1.0 ms in the shim (container)\n";
        let got = parse(text);
        assert_eq!(got, ShimCreates { sandbox_ms: vec![12.5], container_ms: vec![7.25] });
    }
}
