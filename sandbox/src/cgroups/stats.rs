//! Reading a cgroup's statistics, in a v1 flavour (the fields of containerd's cgroups v1
//! `Metrics`) and a v2 flavour (containerd's cgroups v2 `Metrics`). Hybrid machines report v1.
//!
//! Missing files (a controller not mounted, an older kernel) leave their section `None` or
//! empty; unparsable lines in key/value files are skipped; a malformed single-value file is an
//! error naming it. Units are the kernel's: v1 cpu in nanoseconds, v2 cpu in microseconds,
//! memory in bytes.

use std::path::Path;

use super::fsio::{self, parse_flat_keyed};
use super::{Cgroup, CgroupError, Mode};

/// What `sysconf(_SC_CLK_TCK)` returns on Linux: cpuacct.stat counts in these ticks.
const USER_HZ: u64 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupStats {
    V1(V1Stats),
    V2(V2Stats),
}

macro_rules! keyed_struct {
    ($(#[$m:meta])* $name:ident { $($field:ident => $key:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name { $(pub $field: u64),* }
        impl $name {
            /// Fills the fields from a `key value` text; other keys and odd lines are ignored.
            pub fn parse(text: &str) -> $name {
                let mut s = $name::default();
                for (k, v) in parse_flat_keyed(text) {
                    match k {
                        $($key => s.$field = v,)*
                        _ => {}
                    }
                }
                s
            }
        }
    };
}

// ---------------------------------------------------------------- shared

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    /// `None`: no limit ("max"). containerd reports that as 0.
    pub limit: Option<u64>,
}

// ---------------------------------------------------------------- v1

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Stats {
    pub cpu: Option<V1Cpu>,
    pub memory: Option<V1Memory>,
    pub pids: Option<PidsStats>,
    pub hugetlb: Vec<V1Hugetlb>,
    pub blkio: Option<V1Blkio>,
}

/// All times in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Cpu {
    /// cpuacct.usage
    pub usage_total: u64,
    /// cpuacct.usage_sys, else cpuacct.stat `system` ticks converted.
    pub usage_kernel: u64,
    /// cpuacct.usage_user, else cpuacct.stat `user` ticks converted.
    pub usage_user: u64,
    /// cpuacct.usage_percpu
    pub per_cpu: Vec<u64>,
    /// cpu.stat (cpu controller)
    pub throttling: V1Throttling,
}

keyed_struct! {
    /// v1 cpu.stat; `throttled_time` in nanoseconds.
    V1Throttling {
        periods => "nr_periods",
        throttled_periods => "nr_throttled",
        throttled_time => "throttled_time",
    }
}

/// containerd's `MemoryEntry`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Memory {
    pub stat: V1MemoryStat,
    /// memory.{usage,max_usage,limit}_in_bytes, memory.failcnt
    pub usage: MemoryEntry,
    /// memory.memsw.* (memory + swap), when swap accounting is on.
    pub swap: Option<MemoryEntry>,
    /// memory.kmem.*
    pub kernel: Option<MemoryEntry>,
    /// memory.kmem.tcp.*
    pub kernel_tcp: Option<MemoryEntry>,
    pub oom_control: Option<V1OomControl>,
}

keyed_struct! {
    /// v1 memory.stat, with containerd's field names (`pg_fault` is the file's `pgfault`).
    V1MemoryStat {
        cache => "cache",
        rss => "rss",
        rss_huge => "rss_huge",
        shmem => "shmem",
        mapped_file => "mapped_file",
        dirty => "dirty",
        writeback => "writeback",
        swap => "swap",
        pg_pg_in => "pgpgin",
        pg_pg_out => "pgpgout",
        pg_fault => "pgfault",
        pg_maj_fault => "pgmajfault",
        inactive_anon => "inactive_anon",
        active_anon => "active_anon",
        inactive_file => "inactive_file",
        active_file => "active_file",
        unevictable => "unevictable",
        hierarchical_memory_limit => "hierarchical_memory_limit",
        hierarchical_swap_limit => "hierarchical_memsw_limit",
        total_cache => "total_cache",
        total_rss => "total_rss",
        total_rss_huge => "total_rss_huge",
        total_shmem => "total_shmem",
        total_mapped_file => "total_mapped_file",
        total_dirty => "total_dirty",
        total_writeback => "total_writeback",
        total_swap => "total_swap",
        total_pg_pg_in => "total_pgpgin",
        total_pg_pg_out => "total_pgpgout",
        total_pg_fault => "total_pgfault",
        total_pg_maj_fault => "total_pgmajfault",
        total_inactive_anon => "total_inactive_anon",
        total_active_anon => "total_active_anon",
        total_inactive_file => "total_inactive_file",
        total_active_file => "total_active_file",
        total_unevictable => "total_unevictable",
    }
}

keyed_struct! {
    /// v1 memory.oom_control.
    V1OomControl {
        oom_kill_disable => "oom_kill_disable",
        under_oom => "under_oom",
        oom_kill => "oom_kill",
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Hugetlb {
    /// As in the file names: `2MB`, `1GB`.
    pub pagesize: String,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Blkio {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    /// `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`.
    pub op: String,
    pub major: u64,
    pub minor: u64,
    pub value: u64,
}

// ---------------------------------------------------------------- v2

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Stats {
    pub cpu: Option<V2Cpu>,
    pub memory: Option<V2Memory>,
    pub memory_events: Option<MemoryEvents>,
    pub pids: Option<PidsStats>,
    pub io: Vec<IoEntry>,
    pub hugetlb: Vec<V2Hugetlb>,
}

keyed_struct! {
    /// v2 cpu.stat, microseconds.
    V2Cpu {
        usage_usec => "usage_usec",
        user_usec => "user_usec",
        system_usec => "system_usec",
        nr_periods => "nr_periods",
        nr_throttled => "nr_throttled",
        throttled_usec => "throttled_usec",
        nr_bursts => "nr_bursts",
        burst_usec => "burst_usec",
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Memory {
    pub stat: V2MemoryStat,
    /// memory.current
    pub usage: u64,
    /// memory.max; `None` = "max".
    pub usage_limit: Option<u64>,
    /// memory.peak (kernel >= 5.19)
    pub max_usage: Option<u64>,
    /// memory.swap.current
    pub swap_usage: Option<u64>,
    /// memory.swap.max; `None` = "max" or no swap accounting.
    pub swap_limit: Option<u64>,
    /// memory.swap.peak
    pub swap_max_usage: Option<u64>,
}

keyed_struct! {
    /// v2 memory.stat.
    V2MemoryStat {
        anon => "anon",
        file => "file",
        kernel => "kernel",
        kernel_stack => "kernel_stack",
        slab => "slab",
        sock => "sock",
        shmem => "shmem",
        file_mapped => "file_mapped",
        file_dirty => "file_dirty",
        file_writeback => "file_writeback",
        anon_thp => "anon_thp",
        inactive_anon => "inactive_anon",
        active_anon => "active_anon",
        inactive_file => "inactive_file",
        active_file => "active_file",
        unevictable => "unevictable",
        slab_reclaimable => "slab_reclaimable",
        slab_unreclaimable => "slab_unreclaimable",
        pgfault => "pgfault",
        pgmajfault => "pgmajfault",
        workingset_refault => "workingset_refault",
        workingset_refault_anon => "workingset_refault_anon",
        workingset_refault_file => "workingset_refault_file",
        workingset_activate => "workingset_activate",
        workingset_nodereclaim => "workingset_nodereclaim",
        pgrefill => "pgrefill",
        pgscan => "pgscan",
        pgsteal => "pgsteal",
        pgactivate => "pgactivate",
        pgdeactivate => "pgdeactivate",
        pglazyfree => "pglazyfree",
        pglazyfreed => "pglazyfreed",
        thp_fault_alloc => "thp_fault_alloc",
        thp_collapse_alloc => "thp_collapse_alloc",
    }
}

keyed_struct! {
    /// v2 memory.events (hierarchical).
    MemoryEvents {
        low => "low",
        high => "high",
        max => "max",
        oom => "oom",
        oom_kill => "oom_kill",
        oom_group_kill => "oom_group_kill",
    }
}

/// One device of v2 io.stat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoEntry {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Hugetlb {
    pub pagesize: String,
    pub current: u64,
    /// `None` = "max".
    pub max: Option<u64>,
    /// hugetlb.<size>.events `max`.
    pub failcnt: u64,
}

// ---------------------------------------------------------------- parsers (pure)

/// `8:0 Read 4096` lines of v1 blkio files; `Total N` and odd lines are skipped.
pub fn parse_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let (major, minor) = parse_dev(it.next()?)?;
            let op = it.next()?.to_string();
            let value = it.next()?.parse().ok()?;
            Some(BlkioEntry { op, major, minor, value })
        })
        .collect()
}

/// v2 io.stat: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`.
pub fn parse_io_stat(text: &str) -> Vec<IoEntry> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let (major, minor) = parse_dev(it.next()?)?;
            let mut e = IoEntry { major, minor, ..IoEntry::default() };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else { continue };
                let Ok(v) = v.parse::<u64>() else { continue };
                match k {
                    "rbytes" => e.rbytes = v,
                    "wbytes" => e.wbytes = v,
                    "rios" => e.rios = v,
                    "wios" => e.wios = v,
                    _ => {}
                }
            }
            Some(e)
        })
        .collect()
}

fn parse_dev(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// cpuacct.usage_percpu: space-separated nanoseconds; unparsable words are skipped.
pub fn parse_per_cpu(text: &str) -> Vec<u64> {
    text.split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

/// cpuacct.stat `user`/`system` ticks (USER_HZ) to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000 / USER_HZ)
}

/// Page sizes (`2MB`) of the hugetlb files in a directory: `hugetlb.<size>.<suffix>`.
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CgroupError::Read { path: dir.to_path_buf(), source }),
    };
    let mut sizes: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?.strip_suffix('.')?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    Ok(sizes)
}

// ---------------------------------------------------------------- readers

impl Cgroup {
    /// The cgroup's statistics now. `NotFound` when the cgroup is gone.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        if !self.dirs().any(Path::is_dir) {
            return Err(CgroupError::NotFound {
                path: self.path(),
                dir: self.dirs().next().map(Path::to_path_buf).unwrap_or_default(),
            });
        }
        match self.mode() {
            Mode::V2 => self.stats_v2().map(CgroupStats::V2),
            Mode::V1 | Mode::Hybrid => self.stats_v1().map(CgroupStats::V1),
        }
    }

    fn stats_v1(&self) -> Result<V1Stats, CgroupError> {
        Ok(V1Stats {
            cpu: self.cpu_v1()?,
            memory: match self.v1_dir("memory") {
                Some(dir) => memory_v1(dir)?,
                None => None,
            },
            pids: match self.v1_dir("pids") {
                Some(dir) => pids(dir)?,
                None => None,
            },
            hugetlb: match self.v1_dir("hugetlb") {
                Some(dir) => hugetlb_v1(dir)?,
                None => Vec::new(),
            },
            blkio: match self.v1_dir("blkio") {
                Some(dir) => Some(blkio_v1(dir)?),
                None => None,
            },
        })
    }

    fn cpu_v1(&self) -> Result<Option<V1Cpu>, CgroupError> {
        let mut cpu = V1Cpu::default();
        let mut any = false;
        if let Some(dir) = self.v1_dir("cpuacct") {
            if let Some(total) = fsio::read_u64_opt(&dir.join("cpuacct.usage"))? {
                any = true;
                cpu.usage_total = total;
                cpu.per_cpu = fsio::read_opt(&dir.join("cpuacct.usage_percpu"))?
                    .map(|t| parse_per_cpu(&t))
                    .unwrap_or_default();
                let user = fsio::read_u64_opt(&dir.join("cpuacct.usage_user"))?;
                let sys = fsio::read_u64_opt(&dir.join("cpuacct.usage_sys"))?;
                if let (Some(user), Some(sys)) = (user, sys) {
                    cpu.usage_user = user;
                    cpu.usage_kernel = sys;
                } else if let Some(stat) = fsio::read_opt(&dir.join("cpuacct.stat"))? {
                    for (k, v) in parse_flat_keyed(&stat) {
                        match k {
                            "user" => cpu.usage_user = ticks_to_ns(v),
                            "system" => cpu.usage_kernel = ticks_to_ns(v),
                            _ => {}
                        }
                    }
                }
            }
        }
        if let Some(dir) = self.v1_dir("cpu") {
            if let Some(stat) = fsio::read_opt(&dir.join("cpu.stat"))? {
                any = true;
                cpu.throttling = V1Throttling::parse(&stat);
            }
        }
        Ok(any.then_some(cpu))
    }

    fn stats_v2(&self) -> Result<V2Stats, CgroupError> {
        let Some(dir) = self.v2_dir() else { return Ok(V2Stats::default()) };
        let mut s = V2Stats {
            cpu: fsio::read_opt(&dir.join("cpu.stat"))?.map(|t| V2Cpu::parse(&t)),
            memory_events: fsio::read_opt(&dir.join("memory.events"))?
                .map(|t| MemoryEvents::parse(&t)),
            pids: pids(dir)?,
            io: fsio::read_opt(&dir.join("io.stat"))?
                .map(|t| parse_io_stat(&t))
                .unwrap_or_default(),
            ..V2Stats::default()
        };
        if let Some(usage) = fsio::read_u64_opt(&dir.join("memory.current"))? {
            let opt_max = |file: &str| -> Result<Option<u64>, CgroupError> {
                let path = dir.join(file);
                match fsio::read_opt(&path)? {
                    Some(t) => fsio::parse_u64_or_max(&path, &t),
                    None => Ok(None),
                }
            };
            s.memory = Some(V2Memory {
                stat: fsio::read_opt(&dir.join("memory.stat"))?
                    .map(|t| V2MemoryStat::parse(&t))
                    .unwrap_or_default(),
                usage,
                usage_limit: opt_max("memory.max")?,
                max_usage: fsio::read_u64_opt(&dir.join("memory.peak"))?,
                swap_usage: fsio::read_u64_opt(&dir.join("memory.swap.current"))?,
                swap_limit: opt_max("memory.swap.max")?,
                swap_max_usage: fsio::read_u64_opt(&dir.join("memory.swap.peak"))?,
            });
        }
        for size in hugetlb_sizes(dir, "current")? {
            let f = |suffix: &str| dir.join(format!("hugetlb.{size}.{suffix}"));
            let max_path = f("max");
            let max = match fsio::read_opt(&max_path)? {
                Some(t) => fsio::parse_u64_or_max(&max_path, &t)?,
                None => None,
            };
            let failcnt = fsio::read_opt(&f("events"))?
                .and_then(|t| {
                    parse_flat_keyed(&t).into_iter().find(|(k, _)| *k == "max").map(|(_, v)| v)
                })
                .unwrap_or(0);
            s.hugetlb.push(V2Hugetlb {
                current: fsio::read_u64(&f("current"))?,
                max,
                failcnt,
                pagesize: size,
            });
        }
        Ok(s)
    }
}

fn pids(dir: &Path) -> Result<Option<PidsStats>, CgroupError> {
    let Some(current) = fsio::read_u64_opt(&dir.join("pids.current"))? else { return Ok(None) };
    let max_path = dir.join("pids.max");
    let limit = match fsio::read_opt(&max_path)? {
        Some(t) => fsio::parse_u64_or_max(&max_path, &t)?,
        None => None,
    };
    Ok(Some(PidsStats { current, limit }))
}

/// usage/max_usage/limit/failcnt files sharing a prefix (`memory.`, `memory.memsw.`, ...).
fn memory_entry(dir: &Path, prefix: &str) -> Result<Option<MemoryEntry>, CgroupError> {
    let Some(usage) = fsio::read_u64_opt(&dir.join(format!("{prefix}usage_in_bytes")))? else {
        return Ok(None);
    };
    let get = |name: &str| {
        fsio::read_u64_opt(&dir.join(format!("{prefix}{name}"))).map(Option::unwrap_or_default)
    };
    Ok(Some(MemoryEntry {
        usage,
        max: get("max_usage_in_bytes")?,
        limit: get("limit_in_bytes")?,
        failcnt: get("failcnt")?,
    }))
}

fn memory_v1(dir: &Path) -> Result<Option<V1Memory>, CgroupError> {
    let Some(usage) = memory_entry(dir, "memory.")? else { return Ok(None) };
    Ok(Some(V1Memory {
        stat: fsio::read_opt(&dir.join("memory.stat"))?
            .map(|t| V1MemoryStat::parse(&t))
            .unwrap_or_default(),
        usage,
        swap: memory_entry(dir, "memory.memsw.")?,
        kernel: memory_entry(dir, "memory.kmem.")?,
        kernel_tcp: memory_entry(dir, "memory.kmem.tcp.")?,
        oom_control: fsio::read_opt(&dir.join("memory.oom_control"))?
            .map(|t| V1OomControl::parse(&t)),
    }))
}

fn hugetlb_v1(dir: &Path) -> Result<Vec<V1Hugetlb>, CgroupError> {
    let mut out = Vec::new();
    for size in hugetlb_sizes(dir, "usage_in_bytes")? {
        let get = |suffix: &str| {
            fsio::read_u64_opt(&dir.join(format!("hugetlb.{size}.{suffix}")))
                .map(Option::unwrap_or_default)
        };
        out.push(V1Hugetlb {
            usage: get("usage_in_bytes")?,
            max: get("max_usage_in_bytes")?,
            failcnt: get("failcnt")?,
            pagesize: size,
        });
    }
    Ok(out)
}

/// Prefers the I/O scheduler's recursive counters when they have data, else blk-throttle's
/// (which count all I/O through the block layer).
fn blkio_v1(dir: &Path) -> Result<V1Blkio, CgroupError> {
    let pick = |name: &str| -> Result<Vec<BlkioEntry>, CgroupError> {
        for prefix in ["blkio.", "blkio.bfq.", "blkio.throttle."] {
            if let Some(t) = fsio::read_opt(&dir.join(format!("{prefix}{name}")))? {
                let entries = parse_blkio(&t);
                if !entries.is_empty() {
                    return Ok(entries);
                }
            }
        }
        Ok(Vec::new())
    };
    Ok(V1Blkio {
        io_service_bytes_recursive: pick("io_service_bytes_recursive")?,
        io_serviced_recursive: pick("io_serviced_recursive")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_memory_stat_maps_containerd_names() {
        let s = V1MemoryStat::parse(
            "cache 4096\nrss 8192\nrss_huge 0\nmapped_file 12\npgfault 100\npgmajfault 2\n\
             hierarchical_memsw_limit 9223372036854771712\ntotal_rss 8192\ntotal_pgpgin 7\nnew_key 1\nbroken\n",
        );
        assert_eq!(s.cache, 4096);
        assert_eq!(s.rss, 8192);
        assert_eq!(s.mapped_file, 12);
        assert_eq!(s.pg_fault, 100);
        assert_eq!(s.pg_maj_fault, 2);
        assert_eq!(s.hierarchical_swap_limit, 9_223_372_036_854_771_712);
        assert_eq!(s.total_rss, 8192);
        assert_eq!(s.total_pg_pg_in, 7);
    }

    #[test]
    fn v2_cpu_and_events() {
        let c = V2Cpu::parse("usage_usec 406793244\nuser_usec 342467140\nsystem_usec 64326103\nnice_usec 0\nnr_periods 3\nnr_throttled 1\nthrottled_usec 55\n");
        assert_eq!(
            (c.usage_usec, c.user_usec, c.system_usec),
            (406_793_244, 342_467_140, 64_326_103)
        );
        assert_eq!((c.nr_periods, c.nr_throttled, c.throttled_usec), (3, 1, 55));
        let e = MemoryEvents::parse("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n");
        assert_eq!((e.max, e.oom, e.oom_kill), (12, 2, 1));
    }

    #[test]
    fn v1_cpu_pieces() {
        assert_eq!(
            parse_per_cpu("193810276620 219407836988 \n"),
            vec![193_810_276_620, 219_407_836_988]
        );
        assert_eq!(parse_per_cpu("1 x 2"), vec![1, 2]);
        assert_eq!(ticks_to_ns(34787), 347_870_000_000);
        let t = V1Throttling::parse(
            "nr_periods 10\nnr_throttled 4\nthrottled_time 123456\nnr_bursts 0\n",
        );
        assert_eq!((t.periods, t.throttled_periods, t.throttled_time), (10, 4, 123_456));
    }

    #[test]
    fn blkio_and_io_stat() {
        let b = parse_blkio("8:0 Read 4096\n8:0 Write 0\n8:0 Sync 4096\nTotal 4096\ngarbage\n");
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], BlkioEntry { op: "Read".into(), major: 8, minor: 0, value: 4096 });
        let io = parse_io_stat(
            "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n253:1 rbytes=x wbytes=9\nbad\n",
        );
        assert_eq!(io.len(), 2);
        assert_eq!((io[0].rbytes, io[0].wbytes, io[0].rios, io[0].wios), (1, 2, 3, 4));
        assert_eq!((io[1].major, io[1].minor, io[1].rbytes, io[1].wbytes), (253, 1, 0, 9));
    }
}
