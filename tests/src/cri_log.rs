//! The CRI container log format: one line per write chunk,
//! `<RFC3339Nano time> <stdout|stderr> <P|F> <text>`, where `P` marks a partial line that the
//! next entries of the same stream continue and `F` ends it.

use std::path::Path;

use anyhow::{Context, Result};

/// One logical line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// "stdout" or "stderr".
    pub stream: String,
    pub text: String,
}

/// Parses CRI log text into whole lines (partial entries joined). Malformed lines are kept
/// as stdout text so that nothing a container printed is silently lost.
pub fn parse(text: &str) -> Vec<LogLine> {
    let mut lines = Vec::new();
    let mut partial: Vec<(String, String)> = Vec::new(); // (stream, text so far)
    for raw in text.lines() {
        let mut fields = raw.splitn(4, ' ');
        let (Some(_time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            lines.push(LogLine { stream: "stdout".into(), text: raw.to_string() });
            continue;
        };
        let body = fields.next().unwrap_or("");
        if !matches!(stream, "stdout" | "stderr") || !(tag == "P" || tag.starts_with("F")) {
            lines.push(LogLine { stream: "stdout".into(), text: raw.to_string() });
            continue;
        }
        let slot = match partial.iter().position(|(s, _)| s == stream) {
            Some(i) => i,
            None => {
                partial.push((stream.to_string(), String::new()));
                partial.len() - 1
            }
        };
        partial[slot].1.push_str(body);
        if tag != "P" {
            let (stream, text) = partial.remove(slot);
            lines.push(LogLine { stream, text });
        }
    }
    for (stream, text) in partial {
        lines.push(LogLine { stream, text });
    }
    lines
}

/// Reads and parses a container's CRI log file (empty if it does not exist yet).
pub fn read(path: &Path) -> Result<Vec<LogLine>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading the CRI log {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_partial_lines_are_joined_per_stream() {
        let text = "2024-01-01T00:00:00.000000001Z stdout P hel\n\
                    2024-01-01T00:00:00.000000002Z stderr F oops\n\
                    2024-01-01T00:00:00.000000003Z stdout F lo world\n\
                    2024-01-01T00:00:00.000000004Z stdout F \n";
        assert_eq!(
            parse(text),
            vec![
                LogLine { stream: "stderr".into(), text: "oops".into() },
                LogLine { stream: "stdout".into(), text: "hello world".into() },
                LogLine { stream: "stdout".into(), text: "".into() },
            ]
        );
    }

    #[test]
    fn a_malformed_line_is_kept_as_text() {
        assert_eq!(
            parse("garbage"),
            vec![LogLine { stream: "stdout".into(), text: "garbage".into() }]
        );
    }
}
