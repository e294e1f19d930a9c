//! The pool of per-pod host ID ranges.
//!
//! Each pod gets `size` consecutive host IDs (container IDs `0..size` map onto them); ranges
//! never overlap. The pool is shared by every shim process on the host (one per pod), so its
//! state lives on disk under `state_dir`:
//!
//! * `lock`: an empty file; every operation holds an exclusive `flock` on it, so concurrent
//!   shims (or threads, each operation opens its own descriptor) never hand out one range twice;
//! * `<host_base>.range`: one file per allocated range, holding `pod=<id>`, `host_base=<n>`,
//!   `size=<n>` and the identity of the shim process that allocated it (`owner_pid`,
//!   `owner_start`: its start time in clock ticks since boot, `boot_id`). Written to a
//!   temporary name, fsynced and renamed, so a crash leaves either no file or a complete one;
//!   the stored range stays the truth for its pod even if the config changes later (new
//!   ranges avoid every stored one);
//! * `<host_base>.freed`: a range that was released, with `freed_seq=<n>` (higher: freed
//!   later). Files a pod wrote on a shared host path stay owned by its host IDs after it is
//!   gone, so a released range is quarantined: allocation takes never-used ranges first (lowest
//!   first), and only when there are none the least recently freed one.
//!
//! Ranges are freed by `release` when a pod is removed, or by `reclaim_dead` for pods whose
//! shim is gone (killed, crashed, or the host rebooted: another boot id). `reclaim_dead` runs
//! whenever a new pod's shim starts.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::UsernsConfig;
use crate::plan::{IdMapping, UserNamespaceAction, UserNamespacePlan};

const LOCK_FILE: &str = "lock";
const SUFFIX: &str = ".range";
const FREED_SUFFIX: &str = ".freed";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// One pod's host IDs: `host_base .. host_base + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdRange {
    pub host_base: u32,
    pub size: u32,
}

impl IdRange {
    /// The mapping `0..size -> host_base..`, for both uids and gids.
    pub fn mappings(&self) -> Vec<IdMapping> {
        vec![IdMapping { container_id: 0, host_id: self.host_base, size: self.size }]
    }

    /// The pod's user namespace plan with this range.
    pub fn user_namespace_plan(&self, action: UserNamespaceAction) -> UserNamespacePlan {
        UserNamespacePlan { action, uid_mappings: self.mappings(), gid_mappings: self.mappings() }
    }

    /// One past the last host ID.
    pub fn end(&self) -> u64 {
        u64::from(self.host_base) + u64::from(self.size)
    }

    /// True when the two ranges share a host ID.
    pub fn overlaps(&self, other: &IdRange) -> bool {
        u64::from(self.host_base) < other.end() && u64::from(other.host_base) < self.end()
    }
}

/// The shim process that holds a range: a range whose owner is gone belongs to no live pod.
/// A pid alone could be reused; the start time (clock ticks since boot) tells a new process
/// apart, and the boot id tells a new boot apart (start times restart from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    pub start_time: u64,
    pub boot_id: String,
}

impl Owner {
    /// This process.
    pub fn current() -> Result<Owner, PoolError> {
        Owner::of(std::process::id())?
            .ok_or_else(|| PoolError::Owner { reason: "this process has no /proc entry".into() })
    }

    /// The process `pid` as it is now (`None` when there is no such live process): recorded
    /// so that a later signal by pid can first check that it is still the same process.
    pub fn of(pid: u32) -> Result<Option<Owner>, PoolError> {
        let Some(start_time) = process_start_time(pid)? else { return Ok(None) };
        Ok(Some(Owner { pid, start_time, boot_id: boot_id()? }))
    }

    /// False only when it is certain that the owner is gone: another boot, no such process,
    /// or a process of that pid started at another time.
    pub fn is_alive(&self, boot_id: &str) -> bool {
        if self.boot_id != boot_id {
            return false;
        }
        match process_start_time(self.pid) {
            Ok(Some(start)) => start == self.start_time,
            Ok(None) => false,
            // Unreadable for another reason: keep the range (a live pod must never lose it).
            Err(_) => true,
        }
    }
}

/// The host's boot id.
pub fn boot_id() -> Result<String, PoolError> {
    fs::read_to_string(BOOT_ID).map(|s| s.trim().to_string()).map_err(|source| PoolError::Io {
        path: BOOT_ID.into(),
        action: "read",
        source,
    })
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks after boot); `None` when there
/// is no such process or it is a zombie (it has exited; its pid is not reused before it is
/// reaped, which may take long when its parent is gone too). Hand-parsed (procfs crates pull
/// in much more): fields after the command name, which may itself hold spaces and parentheses
/// (hence the last `)`).
fn process_start_time(pid: u32) -> Result<Option<u64>, PoolError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // ESRCH: the process exited while it was read.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(source) => return Err(PoolError::Io { path, action: "read", source }),
    };
    let after_comm = text.rfind(')').map(|i| &text[i + 1..]).unwrap_or_default();
    // After the command: field 3 (state) is the first; the start time is field 22.
    let mut fields = after_comm.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return Ok(None);
    }
    fields
        .nth(22 - 4)
        .and_then(|f| f.parse().ok())
        .map(Some)
        .ok_or_else(|| PoolError::Owner { reason: format!("{} has no start time", path.display()) })
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "the user namespace ID pool is exhausted: all {count} ranges of {size} IDs from host ID \
         {base} are in use; raise userns.count (or lower userns.size) in the moat config"
    )]
    Exhausted { base: u32, size: u32, count: u32 },
    #[error("the user namespace ID pool state file {path} is corrupt: {reason}; remove it if no running pod uses that range")]
    Corrupt { path: PathBuf, reason: String },
    #[error("ID pool {path}: {action}: {source}")]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
    #[error("ID pool: pod id {pod_id:?} cannot be recorded (empty, or contains a newline or NUL)")]
    InvalidPodId { pod_id: String },
    #[error("ID pool: invalid [userns] config: {reason}")]
    InvalidConfig { reason: String },
    #[error("ID pool: host IDs {}..{} are already held by {holder}", range.host_base, range.end())]
    Taken { range: IdRange, holder: String },
    #[error("ID pool: the owner of a range cannot be identified: {reason}")]
    Owner { reason: String },
}

/// A handle on the on-disk pool. Cheap; holds no descriptor between operations.
#[derive(Debug, Clone)]
pub struct IdRangePool {
    base: u32,
    size: u32,
    count: u32,
    dir: PathBuf,
}

struct Entry {
    pod_id: String,
    range: IdRange,
    /// `None` in files written before owners were recorded: never reclaimed.
    owner: Option<Owner>,
    path: PathBuf,
}

struct Freed {
    range: IdRange,
    seq: u64,
    path: PathBuf,
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> PoolError + 'a {
    move |source| PoolError::Io { path: path.to_path_buf(), action, source }
}

impl IdRangePool {
    /// Opens (creating if needed, mode 0700) the pool directory.
    pub fn open(config: &UsernsConfig) -> Result<IdRangePool, PoolError> {
        let invalid = |reason: String| PoolError::InvalidConfig { reason };
        if config.size == 0 || config.count == 0 {
            return Err(invalid("size and count must be at least 1".into()));
        }
        if config.base == 0 {
            return Err(invalid("base 0 would map a pod onto host root".into()));
        }
        let end = u64::from(config.base) + u64::from(config.size) * u64::from(config.count);
        if end > u64::from(u32::MAX) {
            return Err(invalid(format!("base + size * count = {end} exceeds the host ID space")));
        }
        let dir = config.state_dir.clone();
        {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io(&dir, "create the state directory"))?;
        }
        Ok(IdRangePool { base: config.base, size: config.size, count: config.count, dir })
    }

    /// Every host ID the pool may hand out: `base .. base + size * count`.
    pub fn span(&self) -> IdRange {
        // `open` checked that this fits in u32.
        IdRange { host_base: self.base, size: self.size.saturating_mul(self.count) }
    }

    /// The indexes of the pool's slots that `range` overlaps.
    fn slots_over(&self, range: &IdRange) -> std::ops::Range<usize> {
        let (base, size) = (u64::from(self.base), u64::from(self.size));
        let start = u64::from(range.host_base).saturating_sub(base) / size;
        let end = range.end().saturating_sub(base).div_ceil(size).min(u64::from(self.count));
        // Both fit in usize: they are at most `count` (a u32).
        start as usize..(end as usize).max(start as usize)
    }

    /// The range of `pod_id`, allocating one if it has none (owned by this process).
    /// Idempotent.
    pub fn allocate(&self, pod_id: &str) -> Result<IdRange, PoolError> {
        self.allocate_for(pod_id, &Owner::current()?)
    }

    /// `allocate`, recording `owner` as the range's holder. Never-used ranges go first (lowest
    /// first), then the least recently freed one (see the module docs).
    pub fn allocate_for(&self, pod_id: &str, owner: &Owner) -> Result<IdRange, PoolError> {
        check_pod_id(pod_id)?;
        let _lock = self.lock()?;
        let entries = self.entries()?;
        if let Some(e) = entries.iter().find(|e| e.pod_id == pod_id) {
            return Ok(e.range);
        }
        let freed = self.freed()?;
        // Per candidate slot: when it was last freed (the latest of the records over it), and
        // whether a live range covers it. One pass over each list, not one per slot.
        let mut last_freed: Vec<Option<u64>> = vec![None; self.count as usize];
        let mut taken = vec![false; self.count as usize];
        for (range, seq) in freed
            .iter()
            .map(|f| (f.range, Some(f.seq)))
            .chain(entries.iter().map(|e| (e.range, None)))
        {
            for i in self.slots_over(&range) {
                match seq {
                    Some(seq) => last_freed[i] = last_freed[i].max(Some(seq)),
                    None => taken[i] = true,
                }
            }
        }
        let free = (0..self.count as usize)
            .filter(|&i| !taken[i])
            .min_by_key(|&i| (last_freed[i].is_some(), last_freed[i].unwrap_or(0), i))
            .map(|i| IdRange { host_base: self.base + i as u32 * self.size, size: self.size });
        let Some(range) = free else {
            return Err(PoolError::Exhausted {
                base: self.base,
                size: self.size,
                count: self.count,
            });
        };
        self.write_entry(pod_id, range, owner)?;
        for f in freed.iter().filter(|f| f.range.overlaps(&range)) {
            fs::remove_file(&f.path).map_err(io(&f.path, "remove"))?;
        }
        Ok(range)
    }

    /// Records the host IDs of a user namespace handed over by containerd (`hostUsers: false`:
    /// kubelet chose them) as `pod_id`'s, owned by this process, so that no other pod is given
    /// or accepted with them while it lives; `release` and `reclaim_dead` free them like an
    /// allocated range. Refused when they overlap moat's pool or another pod's range.
    /// Idempotent.
    pub fn claim(&self, pod_id: &str, ranges: &[IdRange]) -> Result<(), PoolError> {
        check_pod_id(pod_id)?;
        let owner = Owner::current()?;
        let _lock = self.lock()?;
        let entries = self.entries()?;
        let span = self.span();
        let mut bases: Vec<IdRange> = Vec::new();
        for range in ranges {
            if range.overlaps(&span) {
                return Err(PoolError::Taken { range: *range, holder: "moat's pool".into() });
            }
            if let Some(e) = entries.iter().find(|e| e.pod_id != pod_id && e.range.overlaps(range))
            {
                return Err(PoolError::Taken {
                    range: *range,
                    holder: format!("pod {}", e.pod_id),
                });
            }
            // One file per host base: the larger of two extents starting there.
            match bases.iter_mut().find(|b| b.host_base == range.host_base) {
                Some(b) => b.size = b.size.max(range.size),
                None => bases.push(*range),
            }
        }
        for range in bases {
            if !entries.iter().any(|e| e.pod_id == pod_id && e.range == range) {
                self.write_entry(pod_id, range, &owner)?;
            }
        }
        Ok(())
    }

    /// The range `pod_id` holds, if any.
    pub fn lookup(&self, pod_id: &str) -> Result<Option<IdRange>, PoolError> {
        let _lock = self.lock()?;
        Ok(self.entries()?.into_iter().find(|e| e.pod_id == pod_id).map(|e| e.range))
    }

    /// Frees the range of `pod_id` (to the back of the queue). Releasing a pod that holds none
    /// is not an error.
    pub fn release(&self, pod_id: &str) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        for e in self.entries()?.into_iter().filter(|e| e.pod_id == pod_id) {
            self.free_entry(&e)?;
        }
        Ok(())
    }

    /// Frees the ranges of every pod for which `live` returns false; returns their ids.
    pub fn reclaim(&self, live: impl Fn(&str) -> bool) -> Result<Vec<String>, PoolError> {
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for e in self.entries()? {
            if !live(&e.pod_id) {
                self.free_entry(&e)?;
                freed.push(e.pod_id);
            }
        }
        Ok(freed)
    }

    /// Frees the ranges whose owning shim is gone (no such process, a process started at
    /// another time, or another boot); returns their pod ids. Ranges without a recorded owner
    /// are kept.
    pub fn reclaim_dead(&self) -> Result<Vec<String>, PoolError> {
        let boot = boot_id()?;
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for e in self.entries()? {
            if e.owner.as_ref().is_some_and(|o| !o.is_alive(&boot)) {
                self.free_entry(&e)?;
                freed.push(e.pod_id);
            }
        }
        Ok(freed)
    }

    /// Every allocation: (pod id, range), sorted by host base.
    pub fn allocations(&self) -> Result<Vec<(String, IdRange)>, PoolError> {
        let _lock = self.lock()?;
        Ok(self.entries()?.into_iter().map(|e| (e.pod_id, e.range)).collect())
    }

    fn lock(&self) -> Result<Flock<File>, PoolError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path, "open the lock file"))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| PoolError::Io {
            path,
            action: "lock",
            source: std::io::Error::from(errno),
        })
    }

    /// Reads every range file (the caller holds the lock). Leftover temporary files from an
    /// interrupted write are removed.
    fn entries(&self) -> Result<Vec<Entry>, PoolError> {
        let mut out = Vec::new();
        for (path, stem) in self.files(SUFFIX)? {
            let text = fs::read_to_string(&path).map_err(io(&path, "read"))?;
            let (pod_id, range, owner) = parse_entry(&text)
                .map_err(|reason| PoolError::Corrupt { path: path.clone(), reason })?;
            if stem != range.host_base.to_string() {
                return Err(PoolError::Corrupt {
                    path,
                    reason: format!("the file name does not match host_base={}", range.host_base),
                });
            }
            out.push(Entry { pod_id, range, owner, path });
        }
        out.sort_by_key(|e| e.range.host_base);
        Ok(out)
    }

    /// Reads every freed-range record (the caller holds the lock).
    fn freed(&self) -> Result<Vec<Freed>, PoolError> {
        let mut out = Vec::new();
        for (path, _) in self.files(FREED_SUFFIX)? {
            let text = fs::read_to_string(&path).map_err(io(&path, "read"))?;
            let (range, seq) = parse_freed(&text)
                .map_err(|reason| PoolError::Corrupt { path: path.clone(), reason })?;
            out.push(Freed { range, seq, path });
        }
        Ok(out)
    }

    /// The files named `<stem><suffix>`, with their stems; removes leftover temporary files.
    fn files(&self, suffix: &str) -> Result<Vec<(PathBuf, String)>, PoolError> {
        let mut out = Vec::new();
        let listing = fs::read_dir(&self.dir).map_err(io(&self.dir, "list"))?;
        for item in listing {
            let item = item.map_err(io(&self.dir, "list"))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            let path = item.path();
            if name.starts_with(".tmp-") {
                fs::remove_file(&path).map_err(io(&path, "remove a leftover temporary file"))?;
                continue;
            }
            if let Some(stem) = name.strip_suffix(suffix) {
                out.push((path.clone(), stem.to_string()));
            }
        }
        Ok(out)
    }

    /// Records `e`'s range as freed after every other freed range, then removes its entry. A
    /// claimed range outside the pool (kubelet's) needs no record: moat never hands it out.
    fn free_entry(&self, e: &Entry) -> Result<(), PoolError> {
        if !e.range.overlaps(&self.span()) {
            return fs::remove_file(&e.path).map_err(io(&e.path, "remove"));
        }
        let seq = self.freed()?.iter().map(|f| f.seq).max().unwrap_or(0) + 1;
        let text =
            format!("host_base={}\nsize={}\nfreed_seq={seq}\n", e.range.host_base, e.range.size);
        self.write_file(&format!("{}{FREED_SUFFIX}", e.range.host_base), &text)?;
        fs::remove_file(&e.path).map_err(io(&e.path, "remove"))
    }

    fn write_entry(&self, pod_id: &str, range: IdRange, owner: &Owner) -> Result<(), PoolError> {
        let text = format!(
            "pod={pod_id}\nhost_base={}\nsize={}\nowner_pid={}\nowner_start={}\nboot_id={}\n",
            range.host_base, range.size, owner.pid, owner.start_time, owner.boot_id
        );
        self.write_file(&format!("{}{SUFFIX}", range.host_base), &text)
    }

    /// Writes `name` atomically: a temporary file, fsynced, renamed, directory fsynced.
    fn write_file(&self, name: &str, text: &str) -> Result<(), PoolError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".tmp-{}-{name}", std::process::id()));
        let mut f = File::create(&tmp).map_err(io(&tmp, "create"))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp, "write"))?;
        f.sync_all().map_err(io(&tmp, "sync"))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path, "rename into place"))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir, "sync"))?;
        Ok(())
    }
}

fn check_pod_id(pod_id: &str) -> Result<(), PoolError> {
    if pod_id.is_empty() || pod_id.contains(['\n', '\0']) {
        return Err(PoolError::InvalidPodId { pod_id: pod_id.to_string() });
    }
    Ok(())
}

/// `key=value` lines; every key must be one of `keys`.
fn parse_lines<'a>(
    text: &'a str,
    keys: &[&str],
) -> Result<std::collections::HashMap<&'a str, &'a str>, String> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        let (key, value) =
            line.split_once('=').ok_or_else(|| format!("line {line:?} is not key=value"))?;
        if !keys.contains(&key) {
            return Err(format!("unexpected line {line:?}"));
        }
        out.insert(key, value);
    }
    Ok(out)
}

fn number<T: std::str::FromStr>(
    fields: &std::collections::HashMap<&str, &str>,
    key: &str,
) -> Result<Option<T>, String> {
    fields
        .get(key)
        .map(|v| v.parse::<T>().map_err(|_| format!("{key}={v:?} is not a number")))
        .transpose()
}

fn parse_range(fields: &std::collections::HashMap<&str, &str>) -> Result<IdRange, String> {
    match (number::<u32>(fields, "host_base")?, number::<u32>(fields, "size")?) {
        (Some(host_base), Some(size)) if size > 0 && host_base > 0 => {
            Ok(IdRange { host_base, size })
        }
        _ => Err("it needs a non-zero host_base and a non-zero size".into()),
    }
}

fn parse_entry(text: &str) -> Result<(String, IdRange, Option<Owner>), String> {
    let fields =
        parse_lines(text, &["pod", "host_base", "size", "owner_pid", "owner_start", "boot_id"])?;
    let pod = fields.get("pod").filter(|p| !p.is_empty()).map(|p| p.to_string());
    number::<u32>(&fields, "host_base")?;
    number::<u32>(&fields, "size")?;
    let (Some(pod), Ok(range)) = (pod, parse_range(&fields)) else {
        return Err("it needs a pod, a non-zero host_base and a non-zero size".into());
    };
    let owner = match (
        number::<u32>(&fields, "owner_pid")?,
        number::<u64>(&fields, "owner_start")?,
        fields.get("boot_id"),
    ) {
        (Some(pid), Some(start_time), Some(boot)) if pid > 0 && !boot.is_empty() => {
            Some(Owner { pid, start_time, boot_id: boot.to_string() })
        }
        (None, None, None) => None,
        _ => return Err("owner_pid, owner_start and boot_id go together".into()),
    };
    Ok((pod, range, owner))
}

fn parse_freed(text: &str) -> Result<(IdRange, u64), String> {
    let fields = parse_lines(text, &["host_base", "size", "freed_seq"])?;
    let range = parse_range(&fields)?;
    let seq = number::<u64>(&fields, "freed_seq")?.ok_or("it needs freed_seq")?;
    Ok((range, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn config(dir: &Path, count: u32) -> UsernsConfig {
        UsernsConfig { base: 100_000, size: 1000, count, state_dir: dir.join("pool") }
    }

    #[test]
    fn ranges_are_consecutive_and_map_container_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        let a = pool.allocate("pod-a").expect("a");
        let b = pool.allocate("pod-b").expect("b");
        assert_eq!(a, IdRange { host_base: 100_000, size: 1000 });
        assert_eq!(b, IdRange { host_base: 101_000, size: 1000 });
        let plan = b.user_namespace_plan(UserNamespaceAction::Create);
        assert_eq!(plan.host_uid(0), Some(101_000));
        assert_eq!(plan.host_gid(999), Some(101_999));
        assert_eq!(plan.host_uid(1000), None);
    }

    #[test]
    fn allocate_is_idempotent_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path(), 4);
        let first = IdRangePool::open(&c).expect("open").allocate("pod-a").expect("a");
        // A new handle (a restarted shim) sees the same state.
        let pool = IdRangePool::open(&c).expect("reopen");
        assert_eq!(pool.allocate("pod-a").expect("again"), first);
        assert_eq!(pool.lookup("pod-a").expect("lookup"), Some(first));
        assert_eq!(pool.lookup("pod-x").expect("lookup"), None);
        assert_eq!(pool.allocations().expect("list").len(), 1);
    }

    #[test]
    fn release_frees_the_range_for_reuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 2)).expect("open");
        let a = pool.allocate("pod-a").expect("a");
        pool.allocate("pod-b").expect("b");
        pool.release("pod-a").expect("release");
        pool.release("pod-a").expect("releasing twice is fine");
        assert_eq!(pool.lookup("pod-a").expect("lookup"), None);
        assert_eq!(pool.allocate("pod-c").expect("c"), a, "the only free range is reused");
    }

    #[test]
    fn a_released_range_goes_to_the_back_of_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        let a = pool.allocate("pod-a").expect("a");
        let b = pool.allocate("pod-b").expect("b");
        pool.release("pod-a").expect("release a");
        pool.release("pod-b").expect("release b");
        // Never-used ranges first, lowest first: the next pod must not own pod-a's files.
        let c = pool.allocate("pod-c").expect("c");
        assert_eq!(c, IdRange { host_base: 102_000, size: 1000 }, "a never-used range");
        let d = pool.allocate("pod-d").expect("d");
        assert_eq!(d, IdRange { host_base: 103_000, size: 1000 }, "a never-used range");
        // Then the least recently freed: pod-a's range (freed before pod-b's).
        assert_eq!(pool.allocate("pod-e").expect("e"), a, "the least recently freed range");
        assert_eq!(pool.allocate("pod-f").expect("f"), b, "then the next least recent");
        // A range freed again goes behind every other freed range.
        pool.release("pod-c").expect("release c");
        pool.release("pod-e").expect("release e");
        pool.release("pod-d").expect("release d");
        assert_eq!(pool.allocate("pod-g").expect("g"), c);
        assert_eq!(pool.allocate("pod-h").expect("h"), a);
        assert_eq!(pool.allocate("pod-i").expect("i"), d);
        // The order survives a new handle (another shim).
        let again = IdRangePool::open(&config(dir.path(), 4)).expect("reopen");
        assert!(matches!(again.allocate("pod-j"), Err(PoolError::Exhausted { .. })));
    }

    #[test]
    fn the_default_pool_is_clear_of_kubelets_and_useradds_ranges() {
        let pool = IdRangePool::open(&UsernsConfig {
            state_dir: tempfile::tempdir().expect("tempdir").path().join("pool"),
            ..UsernsConfig::default()
        })
        .expect("open");
        let span = pool.span();
        // kubelet's range as its docs configure it (`kubelet:65536:7208960`, 110 pods of
        // 65536), and the most it can use with its default of 110 pods counted from 65536.
        let kubelet = IdRange { host_base: 65_536, size: 110 * 65_536 };
        // useradd's subordinate IDs for host users (login.defs SUB_UID_MIN..SUB_UID_MAX).
        let useradd = IdRange { host_base: 100_000, size: 600_100_000 - 100_000 + 1 };
        assert!(!span.overlaps(&kubelet), "{span:?} overlaps kubelet's {kubelet:?}");
        assert!(!span.overlaps(&useradd), "{span:?} overlaps useradd's {useradd:?}");
        assert!(span.end() <= 1 << 31, "{span:?} reaches IDs that read as negative");
        assert_eq!(span.host_base % 65_536, 0, "not aligned like kubelet's ranges");
    }

    #[test]
    fn claimed_ranges_are_held_until_released_and_refused_when_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        let kubelets = IdRange { host_base: 200_000, size: 1000 };
        pool.claim("handed-over", &[kubelets, kubelets]).expect("claim");
        pool.claim("handed-over", &[kubelets]).expect("claiming again is fine");
        assert_eq!(pool.lookup("handed-over").expect("lookup"), Some(kubelets));
        // Input: another pod handed an overlapping range.
        let e = pool
            .claim("other", &[IdRange { host_base: 200_500, size: 1000 }])
            .expect_err("overlap");
        assert!(e.to_string().contains("pod handed-over"), "{e}");
        // Input: a range inside moat's pool.
        let e = pool.claim("third", &[IdRange { host_base: 101_000, size: 10 }]).expect_err("pool");
        assert!(e.to_string().contains("moat's pool"), "{e}");
        pool.release("handed-over").expect("release");
        assert!(!dir.path().join("pool/200000.freed").exists(), "kubelet's range is not queued");
        pool.claim("other", &[IdRange { host_base: 200_500, size: 1000 }]).expect("now free");
    }

    #[test]
    fn exhaustion_names_the_pool_and_the_config_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 2)).expect("open");
        pool.allocate("pod-a").expect("a");
        pool.allocate("pod-b").expect("b");
        let e = pool.allocate("pod-c").expect_err("exhausted");
        assert!(matches!(e, PoolError::Exhausted { base: 100_000, size: 1000, count: 2 }));
        let msg = e.to_string();
        assert!(msg.contains("all 2 ranges of 1000 IDs from host ID 100000"), "{msg}");
        assert!(msg.contains("userns.count"), "{msg}");
        // An existing pod still gets its range when the pool is full.
        assert!(pool.allocate("pod-a").is_ok());
    }

    #[test]
    fn reclaim_frees_dead_pods_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        for p in ["live-1", "dead-1", "live-2", "dead-2"] {
            pool.allocate(p).expect("allocate");
        }
        let mut freed = pool.reclaim(|id| id.starts_with("live")).expect("reclaim");
        freed.sort();
        assert_eq!(freed, vec!["dead-1", "dead-2"]);
        let left: Vec<String> =
            pool.allocations().expect("list").into_iter().map(|(p, _)| p).collect();
        assert_eq!(left, vec!["live-1", "live-2"]);
    }

    /// The identity of a process that has exited (and been reaped).
    fn dead_owner() -> Owner {
        let (mut child, owner) = sleeper();
        child.kill().expect("kill");
        child.wait().expect("reap");
        owner
    }

    /// A child process and its identity.
    fn sleeper() -> (std::process::Child, Owner) {
        let child = std::process::Command::new("sleep").arg("60").spawn().expect("spawn sleep");
        let pid = child.id();
        let start_time = process_start_time(pid).expect("stat").expect("alive");
        (child, Owner { pid, start_time, boot_id: boot_id().expect("boot id") })
    }

    #[test]
    fn reclaim_dead_frees_ranges_of_gone_shims_and_other_boots_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 8)).expect("open");
        let me = Owner::current().expect("this process");
        assert!(me.is_alive(&boot_id().expect("boot id")));
        let live = pool.allocate("live").expect("live");
        pool.allocate_for("dead-shim", &dead_owner()).expect("dead");
        // A process with the live pid but another start time: the pid was reused.
        let reused = Owner { start_time: me.start_time + 1, ..me.clone() };
        pool.allocate_for("reused-pid", &reused).expect("reused");
        // This very process, recorded in another boot: the host rebooted since.
        let rebooted = Owner { boot_id: "another-boot".into(), ..me.clone() };
        pool.allocate_for("other-boot", &rebooted).expect("rebooted");
        // A range file from before owners were recorded: kept (its pod may be alive).
        fs::write(
            dir.path().join("pool/107000.range"),
            "pod=legacy\nhost_base=107000\nsize=1000\n",
        )
        .expect("legacy file");
        let mut freed = pool.reclaim_dead().expect("reclaim");
        freed.sort();
        assert_eq!(freed, vec!["dead-shim", "other-boot", "reused-pid"]);
        let left: Vec<String> =
            pool.allocations().expect("list").into_iter().map(|(p, _)| p).collect();
        assert_eq!(left, vec!["live", "legacy"]);
        assert_eq!(pool.lookup("live").expect("lookup"), Some(live), "a live range is kept");
        assert!(pool.reclaim_dead().expect("again").is_empty(), "nothing more to reclaim");
    }

    #[test]
    fn a_zombie_owner_is_gone() {
        let (mut child, owner) = sleeper();
        assert!(owner.is_alive(&owner.boot_id), "a running shim holds its pod");
        child.kill().expect("kill");
        // Not reaped yet: a zombie until `wait` (a killed shim's parent may be gone too).
        let stat = format!("/proc/{}/stat", owner.pid);
        while std::fs::read_to_string(&stat).is_ok_and(|s| !s.contains(") Z")) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!owner.is_alive(&owner.boot_id), "a zombie shim holds no pod");
        child.wait().expect("reap");
        assert!(!owner.is_alive(&owner.boot_id));
    }

    #[test]
    fn owner_fields_go_together() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        // Input: an owner pid without its start time and boot id.
        fs::write(
            dir.path().join("pool/100000.range"),
            "pod=a\nhost_base=100000\nsize=1000\nowner_pid=5\n",
        )
        .expect("write");
        let msg = pool.reclaim_dead().expect_err("half an owner").to_string();
        assert!(msg.contains("100000.range") && msg.contains("go together"), "{msg}");
    }

    #[test]
    fn corrupt_state_file_is_a_clear_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        pool.allocate("pod-a").expect("a");
        let file = dir.path().join("pool/100000.range");
        fs::write(&file, "pod=pod-a\nhost_base=banana\nsize=1000\n").expect("corrupt it");
        let e = pool.allocate("pod-b").expect_err("corrupt");
        let msg = e.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("banana"), "{msg}");
        fs::write(&file, "").expect("empty it");
        let msg = pool.lookup("pod-a").expect_err("empty file").to_string();
        assert!(msg.contains("100000.range") && msg.contains("needs a pod"), "{msg}");
        fs::write(&file, "pod=pod-a\nhost_base=101000\nsize=1000\n").expect("mismatch");
        let msg = pool.lookup("pod-a").expect_err("name mismatch").to_string();
        assert!(msg.contains("does not match"), "{msg}");
    }

    #[test]
    fn leftover_temporary_files_are_ignored_and_cleaned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        let tmp = dir.path().join("pool/.tmp-999-100000");
        fs::write(&tmp, "pod=half-writ").expect("write");
        assert_eq!(pool.allocate("pod-a").expect("a").host_base, 100_000);
        assert!(!tmp.exists());
    }

    #[test]
    fn a_config_change_never_overlaps_existing_ranges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        old.allocate("old-pod").expect("old");
        // Same directory, ranges now 1500 wide: the first candidate (100000..101500) overlaps.
        let new =
            IdRangePool::open(&UsernsConfig { size: 1500, ..config(dir.path(), 4) }).expect("open");
        assert_eq!(
            new.allocate("new-pod").expect("new"),
            IdRange { host_base: 101_500, size: 1500 }
        );
        assert_eq!(
            new.lookup("old-pod").expect("old"),
            Some(IdRange { host_base: 100_000, size: 1000 })
        );
    }

    #[test]
    fn bad_pod_ids_and_configs_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = IdRangePool::open(&config(dir.path(), 4)).expect("open");
        assert!(matches!(pool.allocate("a\nb"), Err(PoolError::InvalidPodId { .. })));
        assert!(matches!(pool.allocate(""), Err(PoolError::InvalidPodId { .. })));
        let bad = UsernsConfig { base: u32::MAX - 10, ..config(dir.path(), 4) };
        assert!(matches!(IdRangePool::open(&bad), Err(PoolError::InvalidConfig { .. })));
    }

    #[test]
    fn concurrent_handles_in_threads_never_share_a_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Arc::new(config(dir.path(), 64));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    let pool = IdRangePool::open(&c).expect("open");
                    (0..8)
                        .map(|i| pool.allocate(&format!("t{t}-p{i}")).expect("allocate"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in threads {
            all.extend(t.join().expect("thread"));
        }
        let unique: HashSet<u32> = all.iter().map(|r| r.host_base).collect();
        assert_eq!(unique.len(), 64, "64 pods, 64 distinct ranges");
        assert!(IdRangePool::open(&c).expect("open").allocate("one-more").is_err(), "pool full");
    }

    const CHILD_ENV: &str = "MOAT_POOL_TEST_CHILD_DIR";

    /// Not a test of its own: the body of each child process of the test below.
    #[test]
    fn child_allocator() {
        let Ok(dir) = std::env::var(CHILD_ENV) else { return };
        let c =
            UsernsConfig { base: 100_000, size: 1000, count: 64, state_dir: PathBuf::from(dir) };
        let pool = IdRangePool::open(&c).expect("open");
        for i in 0..8 {
            let pod = format!("proc{}-p{i}", std::process::id());
            let r = pool.allocate(&pod).expect("allocate");
            println!("range:{pod}={}", r.host_base);
        }
    }

    #[test]
    fn concurrent_processes_never_share_a_range() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("pool");
        let exe = std::env::current_exe().expect("test binary");
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "userns::pool::tests::child_allocator",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, &state)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn a child allocator")
            })
            .collect();
        let mut bases = Vec::new();
        for child in children {
            let out = child.wait_with_output().expect("child output");
            assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stdout));
            let text = String::from_utf8_lossy(&out.stdout);
            for line in text.lines().filter_map(|l| l.find("range:").map(|i| &l[i..])) {
                let base: u32 =
                    line.rsplit('=').next().and_then(|b| b.parse().ok()).expect("a base");
                bases.push(base);
            }
        }
        assert_eq!(bases.len(), 64, "8 processes x 8 pods");
        let unique: HashSet<u32> = bases.iter().copied().collect();
        assert_eq!(unique.len(), 64, "every pod got its own range: {bases:?}");
        let c = UsernsConfig { base: 100_000, size: 1000, count: 64, state_dir: state };
        assert_eq!(IdRangePool::open(&c).expect("open").allocations().expect("list").len(), 64);
    }
}
