//! A container's cgroup statistics as the `Any` the task service's Stats returns.
//!
//! containerd's CRI (`container_stats_list.go`, 1.6 to 2.x) decodes `StatsResponse.stats` with
//! `typeurl.UnmarshalAny` and switches on the type: cgroups v1 `Metrics` or v2 `Metrics`. The
//! type URLs are the bare proto names, as runc's shim produces them (`typeurl.MarshalAny` of a
//! gogo/protobuf message): `io.containerd.cgroups.v1.Metrics` / `io.containerd.cgroups.v2.Metrics`.
//! A `type.googleapis.com/` prefix would not resolve in containerd 1.6's typeurl registry.
//!
//! What CRI reads: v1 `cpu.usage.total` (ns) and `memory.usage.usage` minus
//! `memory.total_inactive_file` (working set); v2 `cpu.usage_usec` (µs, CRI multiplies by 1000)
//! and `memory.usage` minus `memory.inactive_file`. Everything else the sandbox measured is
//! filled in too, in containerd's units (those of the kernel files: v1 cpu in ns, v2 cpu in µs,
//! memory in bytes) and with containerd's conventions for "no limit": v1 reports an unlimited
//! pids.max as 0, v2 reports every "max" as `u64::MAX`.

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use moat_sandbox::cgroups::stats::{BlkioEntry, MemoryEntry, V1Memory, V1Stats, V2Memory, V2Stats};
use moat_sandbox::cgroups::CgroupStats;

/// containerd's type URL for cgroups v1 metrics.
pub const V1_METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";
/// containerd's type URL for cgroups v2 metrics.
pub const V2_METRICS_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";

/// Packing the stats failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Protobuf encoding of the `Metrics` of type `type_url`.
    #[error("encoding {type_url} for Stats: {source}")]
    Encode { type_url: &'static str, source: containerd_shim_protos::protobuf::Error },
}

/// The stats as containerd's v1 or v2 `Metrics`, packed for `StatsResponse.stats`.
pub fn to_any(stats: &CgroupStats) -> Result<Any, MetricsError> {
    let (type_url, encoded) = match stats {
        CgroupStats::V1(s) => (V1_METRICS_TYPE_URL, v1_metrics(s).write_to_bytes()),
        CgroupStats::V2(s) => (V2_METRICS_TYPE_URL, v2_metrics(s).write_to_bytes()),
    };
    let value = encoded.map_err(|source| MetricsError::Encode { type_url, source })?;
    Ok(Any { type_url: type_url.to_string(), value, ..Default::default() })
}

// ---------------------------------------------------------------- v1

fn v1_metrics(s: &V1Stats) -> v1::Metrics {
    v1::Metrics {
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v1::HugetlbStat {
                usage: h.usage,
                max: h.max,
                failcnt: h.failcnt,
                pagesize: h.pagesize.clone(),
                ..Default::default()
            })
            .collect(),
        pids: MessageField::from_option(s.pids.as_ref().map(|p| v1::PidsStat {
            current: p.current,
            limit: p.limit.unwrap_or(0),
            ..Default::default()
        })),
        cpu: MessageField::from_option(s.cpu.as_ref().map(|c| v1::CPUStat {
            usage: MessageField::some(v1::CPUUsage {
                total: c.usage_total,
                kernel: c.usage_kernel,
                user: c.usage_user,
                per_cpu: c.per_cpu.clone(),
                ..Default::default()
            }),
            throttling: MessageField::some(v1::Throttle {
                periods: c.throttling.periods,
                throttled_periods: c.throttling.throttled_periods,
                throttled_time: c.throttling.throttled_time,
                ..Default::default()
            }),
            ..Default::default()
        })),
        memory: MessageField::from_option(s.memory.as_ref().map(v1_memory)),
        blkio: MessageField::from_option(s.blkio.as_ref().map(|b| v1::BlkIOStat {
            io_service_bytes_recursive:
                b.io_service_bytes_recursive.iter().map(blkio_entry).collect(),
            io_serviced_recursive: b.io_serviced_recursive.iter().map(blkio_entry).collect(),
            ..Default::default()
        })),
        memory_oom_control: MessageField::from_option(
            s.memory.as_ref().and_then(|m| m.oom_control.as_ref()).map(|o| v1::MemoryOomControl {
                oom_kill_disable: o.oom_kill_disable,
                under_oom: o.under_oom,
                oom_kill: o.oom_kill,
                ..Default::default()
            }),
        ),
        ..Default::default()
    }
}

fn memory_entry(e: &MemoryEntry) -> v1::MemoryEntry {
    v1::MemoryEntry {
        limit: e.limit,
        usage: e.usage,
        max: e.max,
        failcnt: e.failcnt,
        ..Default::default()
    }
}

fn v1_memory(m: &V1Memory) -> v1::MemoryStat {
    let s = &m.stat;
    // containerd always sends the four entries (zeros for files the kernel lacks); consumers
    // dereference them without checking.
    let entry =
        |e: Option<&MemoryEntry>| MessageField::some(e.map(memory_entry).unwrap_or_default());
    v1::MemoryStat {
        cache: s.cache,
        rss: s.rss,
        rss_huge: s.rss_huge,
        mapped_file: s.mapped_file,
        dirty: s.dirty,
        writeback: s.writeback,
        pg_pg_in: s.pg_pg_in,
        pg_pg_out: s.pg_pg_out,
        pg_fault: s.pg_fault,
        pg_maj_fault: s.pg_maj_fault,
        inactive_anon: s.inactive_anon,
        active_anon: s.active_anon,
        inactive_file: s.inactive_file,
        active_file: s.active_file,
        unevictable: s.unevictable,
        hierarchical_memory_limit: s.hierarchical_memory_limit,
        hierarchical_swap_limit: s.hierarchical_swap_limit,
        total_cache: s.total_cache,
        total_rss: s.total_rss,
        total_rss_huge: s.total_rss_huge,
        total_mapped_file: s.total_mapped_file,
        total_dirty: s.total_dirty,
        total_writeback: s.total_writeback,
        total_pg_pg_in: s.total_pg_pg_in,
        total_pg_pg_out: s.total_pg_pg_out,
        total_pg_fault: s.total_pg_fault,
        total_pg_maj_fault: s.total_pg_maj_fault,
        total_inactive_anon: s.total_inactive_anon,
        total_active_anon: s.total_active_anon,
        total_inactive_file: s.total_inactive_file,
        total_active_file: s.total_active_file,
        total_unevictable: s.total_unevictable,
        usage: entry(Some(&m.usage)),
        swap: entry(m.swap.as_ref()),
        kernel: entry(m.kernel.as_ref()),
        kernel_tcp: entry(m.kernel_tcp.as_ref()),
        ..Default::default()
    }
}

fn blkio_entry(e: &BlkioEntry) -> v1::BlkIOEntry {
    v1::BlkIOEntry {
        op: e.op.clone(),
        major: e.major,
        minor: e.minor,
        value: e.value,
        ..Default::default()
    }
}

// ---------------------------------------------------------------- v2

fn v2_metrics(s: &V2Stats) -> v2::Metrics {
    v2::Metrics {
        pids: MessageField::from_option(s.pids.as_ref().map(|p| v2::PidsStat {
            current: p.current,
            limit: p.limit.unwrap_or(u64::MAX),
            ..Default::default()
        })),
        cpu: MessageField::from_option(s.cpu.as_ref().map(|c| v2::CPUStat {
            usage_usec: c.usage_usec,
            user_usec: c.user_usec,
            system_usec: c.system_usec,
            nr_periods: c.nr_periods,
            nr_throttled: c.nr_throttled,
            throttled_usec: c.throttled_usec,
            nr_bursts: c.nr_bursts,
            burst_usec: c.burst_usec,
            ..Default::default()
        })),
        memory: MessageField::from_option(s.memory.as_ref().map(v2_memory)),
        io: if s.io.is_empty() {
            MessageField::none()
        } else {
            MessageField::some(v2::IOStat {
                usage: s
                    .io
                    .iter()
                    .map(|e| v2::IOEntry {
                        major: e.major,
                        minor: e.minor,
                        rbytes: e.rbytes,
                        wbytes: e.wbytes,
                        rios: e.rios,
                        wios: e.wios,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
        },
        hugetlb: s
            .hugetlb
            .iter()
            .map(|h| v2::HugeTlbStat {
                current: h.current,
                max: h.max.unwrap_or(u64::MAX),
                pagesize: h.pagesize.clone(),
                failcnt: h.failcnt,
                ..Default::default()
            })
            .collect(),
        memory_events: MessageField::from_option(s.memory_events.as_ref().map(|e| {
            v2::MemoryEvents {
                low: e.low,
                high: e.high,
                max: e.max,
                oom: e.oom,
                oom_kill: e.oom_kill,
                oom_group_kill: e.oom_group_kill,
                ..Default::default()
            }
        })),
        ..Default::default()
    }
}

fn v2_memory(m: &V2Memory) -> v2::MemoryStat {
    let s = &m.stat;
    // Kernels >= 5.9 split workingset_refault into _anon and _file; the proto has one field.
    let workingset_refault = if s.workingset_refault != 0 {
        s.workingset_refault
    } else {
        s.workingset_refault_anon.saturating_add(s.workingset_refault_file)
    };
    let swap_accounted = m.swap_usage.is_some();
    v2::MemoryStat {
        anon: s.anon,
        file: s.file,
        kernel_stack: s.kernel_stack,
        slab: s.slab,
        sock: s.sock,
        shmem: s.shmem,
        file_mapped: s.file_mapped,
        file_dirty: s.file_dirty,
        file_writeback: s.file_writeback,
        anon_thp: s.anon_thp,
        inactive_anon: s.inactive_anon,
        active_anon: s.active_anon,
        inactive_file: s.inactive_file,
        active_file: s.active_file,
        unevictable: s.unevictable,
        slab_reclaimable: s.slab_reclaimable,
        slab_unreclaimable: s.slab_unreclaimable,
        pgfault: s.pgfault,
        pgmajfault: s.pgmajfault,
        workingset_refault,
        workingset_activate: s.workingset_activate,
        workingset_nodereclaim: s.workingset_nodereclaim,
        pgrefill: s.pgrefill,
        pgscan: s.pgscan,
        pgsteal: s.pgsteal,
        pgactivate: s.pgactivate,
        pgdeactivate: s.pgdeactivate,
        pglazyfree: s.pglazyfree,
        pglazyfreed: s.pglazyfreed,
        thp_fault_alloc: s.thp_fault_alloc,
        thp_collapse_alloc: s.thp_collapse_alloc,
        usage: m.usage,
        usage_limit: m.usage_limit.unwrap_or(u64::MAX),
        swap_usage: m.swap_usage.unwrap_or(0),
        // containerd: "max" reads as u64::MAX; without swap accounting the file is missing: 0.
        swap_limit: match m.swap_limit {
            Some(limit) => limit,
            None if swap_accounted => u64::MAX,
            None => 0,
        },
        max_usage: m.max_usage.unwrap_or(0),
        swap_max_usage: m.swap_max_usage.unwrap_or(0),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageFull;
    use moat_sandbox::cgroups::stats::{
        IoEntry, MemoryEvents, PidsStats, V1Blkio, V1Cpu, V1Hugetlb, V1MemoryStat, V1OomControl,
        V1Throttling, V2Cpu, V2Hugetlb, V2MemoryStat,
    };

    fn v1_stats() -> V1Stats {
        V1Stats {
            cpu: Some(V1Cpu {
                usage_total: 5_000_000_000,
                usage_kernel: 1_000_000_000,
                usage_user: 4_000_000_000,
                per_cpu: vec![3_000_000_000, 2_000_000_000],
                throttling: V1Throttling {
                    periods: 10,
                    throttled_periods: 4,
                    throttled_time: 123_456,
                },
            }),
            memory: Some(V1Memory {
                stat: V1MemoryStat {
                    cache: 4096,
                    rss: 8192,
                    pg_fault: 100,
                    total_inactive_file: 10 << 20,
                    inactive_file: 1 << 20,
                    hierarchical_memory_limit: 256 << 20,
                    ..Default::default()
                },
                usage: MemoryEntry { limit: 256 << 20, usage: 64 << 20, max: 80 << 20, failcnt: 3 },
                swap: None,
                kernel: Some(MemoryEntry {
                    limit: u64::MAX,
                    usage: 2 << 20,
                    max: 3 << 20,
                    failcnt: 0,
                }),
                kernel_tcp: None,
                oom_control: Some(V1OomControl { oom_kill_disable: 0, under_oom: 1, oom_kill: 2 }),
            }),
            pids: Some(PidsStats { current: 7, limit: None }),
            hugetlb: vec![V1Hugetlb {
                pagesize: "2MB".into(),
                usage: 4 << 20,
                max: 6 << 20,
                failcnt: 1,
            }],
            blkio: Some(V1Blkio {
                io_service_bytes_recursive: vec![BlkioEntry {
                    op: "Read".into(),
                    major: 8,
                    minor: 0,
                    value: 4096,
                }],
                io_serviced_recursive: vec![BlkioEntry {
                    op: "Write".into(),
                    major: 8,
                    minor: 0,
                    value: 2,
                }],
            }),
        }
    }

    fn decode_v1(any: &Any) -> v1::Metrics {
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        v1::Metrics::parse_from_bytes(&any.value).expect("decodes as cgroups v1 Metrics")
    }

    fn decode_v2(any: &Any) -> v2::Metrics {
        assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
        v2::Metrics::parse_from_bytes(&any.value).expect("decodes as cgroups v2 Metrics")
    }

    #[test]
    fn type_urls_are_the_proto_full_names() {
        assert_eq!(V1_METRICS_TYPE_URL, v1::Metrics::descriptor().full_name());
        assert_eq!(V2_METRICS_TYPE_URL, v2::Metrics::descriptor().full_name());
    }

    #[test]
    fn v1_stats_become_containerd_v1_metrics_in_nanoseconds_and_bytes() {
        let m = decode_v1(&to_any(&CgroupStats::V1(v1_stats())).expect("packs"));
        // What CRI reads: cpu usage total (ns) and the working set inputs.
        assert_eq!(m.cpu.usage.total, 5_000_000_000);
        assert_eq!((m.cpu.usage.kernel, m.cpu.usage.user), (1_000_000_000, 4_000_000_000));
        assert_eq!(m.cpu.usage.per_cpu, vec![3_000_000_000, 2_000_000_000]);
        assert_eq!(
            (
                m.cpu.throttling.periods,
                m.cpu.throttling.throttled_periods,
                m.cpu.throttling.throttled_time
            ),
            (10, 4, 123_456)
        );
        assert_eq!(m.memory.usage.usage, 64 << 20);
        assert_eq!(m.memory.total_inactive_file, 10 << 20);
        let working_set = m.memory.usage.usage - m.memory.total_inactive_file;
        assert_eq!(working_set, 54 << 20);
        assert_eq!(
            (m.memory.usage.limit, m.memory.usage.max, m.memory.usage.failcnt),
            (256 << 20, 80 << 20, 3)
        );
        assert_eq!(
            (m.memory.cache, m.memory.rss, m.memory.pg_fault, m.memory.inactive_file),
            (4096, 8192, 100, 1 << 20)
        );
        assert_eq!(m.memory.hierarchical_memory_limit, 256 << 20);
        assert_eq!(m.memory.kernel.usage, 2 << 20);
        // Entries the kernel lacked are present and zero, as containerd sends them.
        assert!(m.memory.swap.is_some() && m.memory.kernel_tcp.is_some());
        assert_eq!(m.memory.swap.usage, 0);
        assert_eq!((m.memory_oom_control.under_oom, m.memory_oom_control.oom_kill), (1, 2));
        // An unlimited pids.max is 0 in containerd's v1 metrics.
        assert_eq!((m.pids.current, m.pids.limit), (7, 0));
        assert_eq!(m.hugetlb.len(), 1);
        assert_eq!(
            (
                m.hugetlb[0].pagesize.as_str(),
                m.hugetlb[0].usage,
                m.hugetlb[0].max,
                m.hugetlb[0].failcnt
            ),
            ("2MB", 4 << 20, 6 << 20, 1)
        );
        let read = &m.blkio.io_service_bytes_recursive[0];
        assert_eq!((read.op.as_str(), read.major, read.minor, read.value), ("Read", 8, 0, 4096));
        assert_eq!(m.blkio.io_serviced_recursive[0].value, 2);
    }

    #[test]
    fn v1_sections_the_sandbox_could_not_read_stay_absent() {
        // Input: a cgroup with no cpuacct, memory, pids or blkio controller.
        let m = decode_v1(&to_any(&CgroupStats::V1(V1Stats::default())).expect("packs"));
        assert!(m.cpu.is_none() && m.memory.is_none() && m.pids.is_none() && m.blkio.is_none());
        assert!(m.memory_oom_control.is_none() && m.hugetlb.is_empty());
    }

    fn v2_stats() -> V2Stats {
        V2Stats {
            cpu: Some(V2Cpu {
                usage_usec: 406_793_244,
                user_usec: 342_467_140,
                system_usec: 64_326_103,
                nr_periods: 3,
                nr_throttled: 1,
                throttled_usec: 55,
                nr_bursts: 2,
                burst_usec: 9,
            }),
            memory: Some(V2Memory {
                stat: V2MemoryStat {
                    anon: 30 << 20,
                    file: 20 << 20,
                    inactive_file: 8 << 20,
                    pgfault: 1000,
                    workingset_refault_anon: 5,
                    workingset_refault_file: 7,
                    ..Default::default()
                },
                usage: 50 << 20,
                usage_limit: None,
                max_usage: Some(60 << 20),
                swap_usage: Some(0),
                swap_limit: None,
                swap_max_usage: None,
            }),
            memory_events: Some(MemoryEvents {
                low: 0,
                high: 0,
                max: 12,
                oom: 2,
                oom_kill: 1,
                oom_group_kill: 0,
            }),
            pids: Some(PidsStats { current: 3, limit: Some(100) }),
            io: vec![IoEntry { major: 253, minor: 1, rbytes: 1, wbytes: 2, rios: 3, wios: 4 }],
            hugetlb: vec![V2Hugetlb { pagesize: "1GB".into(), current: 0, max: None, failcnt: 0 }],
        }
    }

    #[test]
    fn v2_stats_become_containerd_v2_metrics_in_microseconds_and_bytes() {
        let m = decode_v2(&to_any(&CgroupStats::V2(v2_stats())).expect("packs"));
        // CRI reads usage_usec (and multiplies by 1000 itself).
        assert_eq!(m.cpu.usage_usec, 406_793_244);
        assert_eq!((m.cpu.user_usec, m.cpu.system_usec), (342_467_140, 64_326_103));
        assert_eq!(
            (
                m.cpu.nr_periods,
                m.cpu.nr_throttled,
                m.cpu.throttled_usec,
                m.cpu.nr_bursts,
                m.cpu.burst_usec
            ),
            (3, 1, 55, 2, 9)
        );
        assert_eq!(m.memory.usage, 50 << 20);
        assert_eq!(m.memory.usage - m.memory.inactive_file, 42 << 20, "working set");
        assert_eq!((m.memory.anon, m.memory.file, m.memory.pgfault), (30 << 20, 20 << 20, 1000));
        assert_eq!(m.memory.workingset_refault, 12, "anon + file on kernels that split it");
        // "max" limits read as u64::MAX, as containerd's cgroup2 reader reports them.
        assert_eq!(m.memory.usage_limit, u64::MAX);
        assert_eq!(m.memory.swap_limit, u64::MAX);
        assert_eq!(
            (m.memory.max_usage, m.memory.swap_usage, m.memory.swap_max_usage),
            (60 << 20, 0, 0)
        );
        assert_eq!(
            (m.memory_events.max, m.memory_events.oom, m.memory_events.oom_kill),
            (12, 2, 1)
        );
        assert_eq!((m.pids.current, m.pids.limit), (3, 100));
        let io = &m.io.usage[0];
        assert_eq!(
            (io.major, io.minor, io.rbytes, io.wbytes, io.rios, io.wios),
            (253, 1, 1, 2, 3, 4)
        );
        assert_eq!((m.hugetlb[0].pagesize.as_str(), m.hugetlb[0].max), ("1GB", u64::MAX));
    }

    #[test]
    fn v2_limits_and_missing_sections() {
        let mut s = v2_stats();
        let mem = s.memory.as_mut().expect("memory");
        mem.usage_limit = Some(128 << 20);
        mem.swap_usage = None; // no swap accounting: memory.swap.* absent
        mem.stat.workingset_refault = 40; // an older kernel's single counter wins
        s.pids = Some(PidsStats { current: 1, limit: None });
        let m = decode_v2(&to_any(&CgroupStats::V2(s)).expect("packs"));
        assert_eq!(m.memory.usage_limit, 128 << 20);
        assert_eq!((m.memory.swap_usage, m.memory.swap_limit), (0, 0));
        assert_eq!(m.memory.workingset_refault, 40);
        assert_eq!(m.pids.limit, u64::MAX);
        // Input: a cgroup with no controllers enabled (this machine's unified hierarchy).
        let m = decode_v2(&to_any(&CgroupStats::V2(V2Stats::default())).expect("packs"));
        assert!(m.cpu.is_none() && m.memory.is_none() && m.pids.is_none() && m.io.is_none());
        assert!(m.memory_events.is_none() && m.hugetlb.is_empty());
    }
}
