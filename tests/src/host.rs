//! What a test can observe on the host: mounts, shim processes, container processes, cgroups.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    /// The whole line, for messages.
    pub line: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let sep = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fs_type: fields.get(sep + 1)?.to_string(),
                source: unescape(fields.get(sep + 2)?),
                line: line.to_string(),
            })
        })
        .collect()
}

/// The mounts of the test process's mount namespace (the host's), in mount order.
pub fn mounts() -> Vec<MountEntry> {
    parse_mountinfo(&fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// Mountinfo lines that mention any of `needles` (ids, paths) anywhere.
pub fn mounts_mentioning(needles: &[&str]) -> Vec<String> {
    mounts()
        .into_iter()
        .filter(|m| needles.iter().any(|n| !n.is_empty() && m.line.contains(n)))
        .map(|m| m.line)
        .collect()
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<MountEntry> {
    mounts().into_iter().filter(|m| m.mount_point.starts_with(dir)).collect()
}

fn pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The argv of `pid` (empty for kernel threads and vanished processes).
pub fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A running containerd shim v2 process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimProcess {
    pub pid: i32,
    /// argv[0]: e.g. /usr/bin/containerd-shim-runc-v2.
    pub binary: String,
    /// The `-id` argument: the pod sandbox id for a pod's shim.
    pub id: String,
}

/// Shim processes serving the containerd at `socket` (argv holds `-address <socket>`).
pub fn shims(socket: &Path) -> Vec<ShimProcess> {
    let socket = socket.to_string_lossy();
    pids()
        .into_iter()
        .filter_map(|pid| {
            let argv = cmdline(pid);
            let arg = |flag: &str| {
                argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1)).cloned()
            };
            if arg("-address")? != *socket {
                return None;
            }
            Some(ShimProcess {
                pid,
                binary: argv.first().cloned().unwrap_or_default(),
                id: arg("-id")?,
            })
        })
        .collect()
}

/// Processes whose environment holds `key=value` (how test containers are tagged).
pub fn processes_with_env(key: &str, value: &str) -> Vec<i32> {
    let wanted = format!("{key}={value}");
    pids()
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|c| *c == 0).any(|kv| kv == wanted.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// The start time of `pid` (field 22 of /proc/<pid>/stat), to tell a process from a later
/// one that reuses its pid.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19)?.parse().ok()
}

/// The state letter of `pid` (R, S, D, Z, ...).
pub fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Waits until `pid`, just sent SIGKILL, is gone or a zombie (a killed shim's parent, or
/// nobody for the shim's reparented children, may not reap it at once); fails naming `what`
/// after 10 s.
pub fn wait_dead(pid: i32, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(pid).is_some_and(|s| s != 'Z') {
        if Instant::now() > deadline {
            anyhow::bail!("{what} (pid {pid}) is still alive 10 s after SIGKILL");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A process identity that survives pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    pub fn of(pid: i32) -> Option<Self> {
        Some(Self { pid, start_time: start_time(pid)? })
    }

    /// True while this very process exists and has not exited (a zombie is not alive).
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time) && !matches!(state(self.pid), Some('Z' | 'X'))
    }
}

/// The roots of every cgroup hierarchy (v1 controllers and v2/unified).
pub fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| !p.is_symlink() && p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    // On a pure cgroup v2 host /sys/fs/cgroup itself is the hierarchy.
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        roots = vec![PathBuf::from("/sys/fs/cgroup")];
    }
    roots.sort();
    roots
}

/// Cgroup directories named like one of `names` anywhere in any hierarchy.
pub fn cgroup_dirs_named(names: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> = cgroup_roots().into_iter().map(|r| (r, 0)).collect();
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let path = entry.path();
            if names.iter().any(|n| entry.file_name() == **n) {
                found.push(path.clone());
            }
            if depth < 16 {
                stack.push((path, depth + 1));
            }
        }
    }
    found
}

/// All cgroup directories below `relative` (e.g. `moat-e2e/123`) in every hierarchy, deepest
/// first (the order they can be removed in).
pub fn cgroup_tree(relative: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for root in cgroup_roots() {
        let top = root.join(relative.trim_start_matches('/'));
        let mut stack = vec![top];
        while let Some(dir) = stack.pop() {
            if !dir.is_dir() {
                continue;
            }
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        stack.push(e.path());
                    }
                }
            }
            all.push(dir);
        }
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    all
}

/// Pids listed in `cgroup.procs` of the given cgroup directories.
pub fn cgroup_procs(dirs: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = dirs
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<i32>>())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The directory of `pid`'s cgroup in the hierarchy of `controller` ("memory", "pids",
/// "cpu", "freezer", ...), or in the v2 hierarchy when the controller is only there (a pure
/// v2 host). `None` when the process is gone or the hierarchy is not mounted.
pub fn cgroup_dir_of(pid: i32, controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == controller) {
            let dir = Path::new("/sys/fs/cgroup").join(controllers).join(path);
            if dir.is_dir() {
                return Some(dir);
            }
            // Co-mounted controllers are often reachable by one name only (cpu,cpuacct).
            let dir = Path::new("/sys/fs/cgroup").join(controller).join(path);
            if dir.is_dir() {
                return Some(dir);
            }
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        }
    }
    let path = v2?;
    let unified = Path::new("/sys/fs/cgroup/unified");
    let root = if unified.is_dir() { unified } else { Path::new("/sys/fs/cgroup") };
    let dir = root.join(path);
    let listed = fs::read_to_string(dir.join("cgroup.controllers")).ok()?;
    listed.split_whitespace().any(|c| c == controller).then_some(dir)
}

/// How many file descriptors `pid` has open.
pub fn fd_count(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// How many threads `pid` has.
pub fn thread_count(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_with_escapes() {
        let text =
            "46 27 0:40 / /tmp/a\\040b/rootfs rw,relatime - overlay overlay rw,lowerdir=/x\n\
                    42 27 0:39 / /run/shm rw,nosuid shared:5 - tmpfs shm rw,size=65536k\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/tmp/a b/rootfs"));
        assert_eq!(m[0].fs_type, "overlay");
        assert_eq!(m[1].fs_type, "tmpfs");
        assert_eq!(m[1].source, "shm");
    }

    #[test]
    fn start_time_identifies_this_process() {
        let me = ProcessId::of(std::process::id() as i32).expect("own /proc/self/stat");
        assert!(me.alive());
        let other = ProcessId { start_time: me.start_time + 1, ..me };
        assert!(!other.alive(), "a different start time is a different process");
    }
}
