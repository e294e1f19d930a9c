//! Reading and writing cgroup control files, with the path in every error.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::CgroupError;

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path)
        .map_err(|source| CgroupError::Read { path: path.to_path_buf(), source })
}

/// `None` when the file does not exist (controller absent, older kernel).
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read { path: path.to_path_buf(), source }),
    }
}

/// One `write(2)` of `value` to an existing control file (cgroup files take one value per write).
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err =
        |source| CgroupError::Write { path: path.to_path_buf(), value: value.to_string(), source };
    let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

/// A single unsigned number, or `max` (returned as `None`).
pub(crate) fn parse_u64_or_max(path: &Path, content: &str) -> Result<Option<u64>, CgroupError> {
    let t = content.trim();
    if t == "max" {
        return Ok(None);
    }
    t.parse::<u64>().map(Some).map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: truncate(t),
        reason: "expected an unsigned number or \"max\"",
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let s = read(path)?;
    s.trim().parse::<u64>().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: truncate(s.trim()),
        reason: "expected an unsigned number",
    })
}

/// `None` when the file does not exist.
pub(crate) fn read_u64_opt(path: &Path) -> Result<Option<u64>, CgroupError> {
    match read_opt(path)? {
        None => Ok(None),
        Some(s) => s.trim().parse::<u64>().map(Some).map_err(|_| CgroupError::Parse {
            path: path.to_path_buf(),
            content: truncate(s.trim()),
            reason: "expected an unsigned number",
        }),
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, ...). Lines that do not parse are
/// skipped: the kernel adds keys over time and an odd line must not cost the other values.
pub fn parse_flat_keyed(content: &str) -> Vec<(&str, u64)> {
    content
        .lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let key = it.next()?;
            let value = it.next()?.parse::<u64>().ok()?;
            if it.next().is_some() {
                return None;
            }
            Some((key, value))
        })
        .collect()
}

/// The pids in a cgroup.procs text; a line that is not a pid is skipped.
pub fn parse_pids(content: &str) -> Vec<i32> {
    content.lines().filter_map(|l| l.trim().parse::<i32>().ok()).filter(|p| *p > 0).collect()
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The immediate sub-directories of a cgroup directory (child cgroups).
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CgroupError::Read { path: dir.to_path_buf(), source }),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|source| CgroupError::Read { path: dir.to_path_buf(), source })?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_skips_odd_lines() {
        let parsed = parse_flat_keyed("cache 4096\nrss 12\n\nbogus\nweird x\nthree 1 2\nlast 7");
        assert_eq!(parsed, vec![("cache", 4096), ("rss", 12), ("last", 7)]);
    }

    #[test]
    fn pids_parse() {
        assert_eq!(parse_pids("12\n 13 \nx\n-1\n0\n"), vec![12, 13]);
    }

    #[test]
    fn u64_or_max() {
        let p = Path::new("/x");
        assert_eq!(parse_u64_or_max(p, "max\n").ok(), Some(None));
        assert_eq!(parse_u64_or_max(p, "42\n").ok(), Some(Some(42)));
        assert!(parse_u64_or_max(p, "-3").is_err());
    }
}
