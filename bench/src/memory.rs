//! A shim's memory and threads: Rss and Pss from /proc/<pid>/smaps_rollup, Rss split into
//! anonymous, file-backed and shmem pages from /proc/<pid>/status, /proc/<pid>/task; and the
//! node's own view, /proc/meminfo after dropping the page cache (`NodeMemory`).

use std::fs;

use anyhow::{bail, Context, Result};

/// What one pod's shim processes hold (summed when a pod has several).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ShimMemory {
    pub rss_kib: u64,
    pub pss_kib: u64,
    pub threads: usize,
    /// memfd files the shim holds open (before issue 11, moat's sealed copy of its binary):
    /// memory the pod costs that neither Rss nor Pss shows, as the shim does not map them.
    pub memfd_kib: u64,
    /// Rss split (`RssAnon`, `RssFile`, `RssShmem` of /proc/<pid>/status).
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
}

impl ShimMemory {
    pub fn of(pids: &[i32]) -> Result<ShimMemory> {
        if pids.is_empty() {
            bail!("no shim process found");
        }
        let mut total = ShimMemory::default();
        for &pid in pids {
            let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
            let (rss, pss) = parse_smaps_rollup(&text)
                .with_context(|| format!("/proc/{pid}/smaps_rollup: {text:?}"))?;
            total.rss_kib += rss;
            total.pss_kib += pss;
            total.threads += moat_e2e::host::thread_count(pid)
                .with_context(|| format!("counting the threads of {pid}"))?;
            total.memfd_kib += memfd_kib(pid);
            let status = fs::read_to_string(format!("/proc/{pid}/status"))
                .with_context(|| format!("reading /proc/{pid}/status"))?;
            let field = |name: &str| {
                kib_field(&status, name).with_context(|| format!("/proc/{pid}/status: {name}"))
            };
            total.rss_anon_kib += field("RssAnon")?;
            total.rss_file_kib += field("RssFile")?;
            total.rss_shmem_kib += field("RssShmem")?;
        }
        Ok(total)
    }

    pub fn memfd_mib(&self) -> f64 {
        self.memfd_kib as f64 / 1024.0
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn pss_mib(&self) -> f64 {
        self.pss_kib as f64 / 1024.0
    }
}

/// `Name:   123 kB` of a /proc file (status, meminfo), in KiB.
pub fn kib_field(text: &str, name: &str) -> Result<u64> {
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(name))
        .with_context(|| format!("no {name} line"))?;
    let mut words = line.split_whitespace().skip(1);
    let value = words.next().with_context(|| format!("no value on {line:?}"))?.parse::<u64>()?;
    match words.next() {
        Some("kB") => Ok(value),
        other => bail!("unit {other:?} on {line:?}"),
    }
}

/// The node's memory as an operator sees it: `Shmem` and `MemAvailable` of /proc/meminfo,
/// read after the page cache was dropped (so that cached files the run read do not count).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct NodeMemory {
    pub shmem_kib: u64,
    pub mem_available_kib: u64,
}

impl NodeMemory {
    /// `sync`, `echo 3 > /proc/sys/vm/drop_caches`, a moment to settle, then /proc/meminfo.
    pub fn after_dropping_caches() -> Result<NodeMemory> {
        nix::unistd::sync();
        fs::write("/proc/sys/vm/drop_caches", "3").context("writing /proc/sys/vm/drop_caches")?;
        std::thread::sleep(std::time::Duration::from_millis(500));
        let text = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        Ok(NodeMemory {
            shmem_kib: kib_field(&text, "Shmem")?,
            mem_available_kib: kib_field(&text, "MemAvailable")?,
        })
    }

    /// Per pod, in MiB, from `before` to `self` with `pods` more pods up: (Shmem growth,
    /// MemAvailable fall).
    pub fn per_pod_mib(&self, before: &NodeMemory, pods: usize) -> (f64, f64) {
        let n = pods.max(1) as f64 * 1024.0;
        (
            (self.shmem_kib as f64 - before.shmem_kib as f64) / n,
            (before.mem_available_kib as f64 - self.mem_available_kib as f64) / n,
        )
    }
}

/// KiB allocated to the memfd files `pid` holds open (each file counted once).
pub fn memfd_kib(pid: i32) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = Vec::new();
    let mut kib = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten() {
        let is_memfd = fs::read_link(entry.path())
            .map(|t| t.to_string_lossy().starts_with("/memfd:"))
            .unwrap_or(false);
        if !is_memfd {
            continue;
        }
        if let Ok(meta) = fs::metadata(entry.path()) {
            if !seen.contains(&meta.ino()) {
                seen.push(meta.ino());
                kib += meta.blocks() / 2;
            }
        }
    }
    kib
}

/// Where a process's resident memory is: Rss (KiB) per mapping name (file name, `[heap]`,
/// `[stack]`, `[anon]`), largest first, at most `top` entries.
pub fn rss_by_mapping(pid: i32, top: usize) -> Vec<(String, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut current = String::from("[anon]");
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let name = line.split_whitespace().nth(5).unwrap_or("[anon]");
            current = name.rsplit('/').next().unwrap_or(name).to_string();
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *by.entry(current.clone()).or_default() += kib;
        }
    }
    let mut list: Vec<(String, u64)> = by.into_iter().filter(|(_, k)| *k > 0).collect();
    list.sort_by_key(|e| std::cmp::Reverse(e.1));
    list.truncate(top);
    list
}

/// (Rss, Pss) in KiB.
pub fn parse_smaps_rollup(text: &str) -> Result<(u64, u64)> {
    let field = |name: &str| -> Result<u64> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .with_context(|| format!("no {name} line"))?;
        let mut words = line.split_whitespace().skip(1);
        let value =
            words.next().with_context(|| format!("no value on {line:?}"))?.parse::<u64>()?;
        match words.next() {
            Some("kB") => Ok(value),
            other => bail!("unit {other:?} on {line:?}"),
        }
    };
    Ok((field("Rss")?, field("Pss")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_pss_are_read_in_kib() {
        let text = "55d0c000-7ffd0000 ---p 00000000 00:00 0                          [rollup]\n\
                    Rss:               13824 kB\n\
                    Pss:                4507 kB\n\
                    Pss_Dirty:          3000 kB\n\
                    Pss_Anon:           2900 kB\n";
        assert_eq!(parse_smaps_rollup(text).expect("parsed"), (13824, 4507));
    }

    #[test]
    fn a_rollup_without_pss_is_an_error() {
        assert!(parse_smaps_rollup("Rss: 10 kB\n").is_err());
        assert!(parse_smaps_rollup("Rss: 10 MB\nPss: 1 kB\n").is_err());
    }

    #[test]
    fn this_process_has_memory_and_a_thread() {
        let me = ShimMemory::of(&[std::process::id() as i32]).expect("own smaps_rollup");
        assert!(
            me.rss_kib > 0 && me.pss_kib > 0 && me.pss_kib <= me.rss_kib && me.threads >= 1,
            "{me:?}"
        );
        let top = rss_by_mapping(std::process::id() as i32, 3);
        assert!(
            !top.is_empty() && top.len() <= 3 && top.windows(2).all(|w| w[0].1 >= w[1].1),
            "{top:?}"
        );
    }

    #[test]
    fn status_and_meminfo_fields_are_read_in_kib() {
        let text = "VmRSS:\t    7300 kB\nRssAnon:\t    1300 kB\nRssFile:\t    6000 kB\n";
        assert_eq!(kib_field(text, "RssAnon").expect("anon"), 1300);
        assert_eq!(kib_field(text, "RssFile").expect("file"), 6000);
        assert!(kib_field(text, "RssShmem").is_err());
        assert!(kib_field("Shmem: 12 MB\n", "Shmem").is_err());
        let before = NodeMemory { shmem_kib: 1000, mem_available_kib: 100_000 };
        let after =
            NodeMemory { shmem_kib: 1000 + 2 * 1024, mem_available_kib: 100_000 - 10 * 1024 };
        assert_eq!(after.per_pod_mib(&before, 2), (1.0, 5.0));
    }

    #[test]
    fn a_held_memfd_is_counted_once() {
        use std::io::Write;
        let fd =
            nix::sys::memfd::memfd_create(c"moat-bench-test", nix::sys::memfd::MFdFlags::empty())
                .expect("memfd");
        let mut f = std::fs::File::from(fd);
        f.write_all(&vec![1u8; 256 * 1024]).expect("write");
        let dup = f.try_clone().expect("dup");
        // Other tests of this process may hold memfds of their own: at least ours is counted,
        // and only once although two fds refer to it.
        let kib = memfd_kib(std::process::id() as i32);
        assert!((256..2 * 256).contains(&kib), "{kib} KiB");
        drop(dup);
    }
}
