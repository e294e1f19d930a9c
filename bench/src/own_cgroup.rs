//! The bench's own memory cgroup, so that the memory its shims pin can be told apart from what
//! other work on a shared host does to `/proc/meminfo`. At start the bench moves itself into a
//! new child of the memory cgroup it runs in (never out of it); the test bed's containerd and
//! every shim it starts are its children and are charged there. The pods' processes are
//! charged to the bed's pod cgroups (`Layout::cgroup_parent`). Their `memory.stat` (v1
//! hierarchical `total_*`, or v2) give the anonymous and shmem memory the bench's pods pin.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// A memory controller hierarchy: v1's `memory` one, or the v2 one.
#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    v1: bool,
}

fn hierarchy() -> Result<Hierarchy> {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.join("memory.stat").exists() {
        return Ok(Hierarchy { mount: v1.into(), v1: true });
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        return Ok(Hierarchy { mount: v2.into(), v1: false });
    }
    bail!("no memory cgroup controller (v1 /sys/fs/cgroup/memory or v2 with memory)")
}

/// This process's cgroup path in `h` (from /proc/self/cgroup).
fn current(h: &Hierarchy) -> Result<String> {
    let text = fs::read_to_string("/proc/self/cgroup")?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let matches = if h.v1 {
            controllers.split(',').any(|c| c == "memory")
        } else {
            controllers.is_empty()
        };
        if matches {
            return Ok(path.to_string());
        }
    }
    bail!("no memory cgroup in /proc/self/cgroup")
}

/// Anonymous and shmem memory charged to a cgroup and its descendants, KiB.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Charged {
    pub anon_kib: u64,
    pub shmem_kib: u64,
}

impl Charged {
    pub fn add(self, other: Charged) -> Charged {
        Charged {
            anon_kib: self.anon_kib + other.anon_kib,
            shmem_kib: self.shmem_kib + other.shmem_kib,
        }
    }
}

fn charged(h: &Hierarchy, cgroup: &str) -> Result<Charged> {
    let dir = h.mount.join(cgroup.trim_start_matches('/'));
    if !dir.exists() {
        return Ok(Charged::default());
    }
    let text = fs::read_to_string(dir.join("memory.stat"))
        .with_context(|| format!("reading {}/memory.stat", dir.display()))?;
    let (anon, shmem) = if h.v1 { ("total_rss", "total_shmem") } else { ("anon", "shmem") };
    let field = |key: &str| -> Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .with_context(|| format!("no {key} in {}/memory.stat", dir.display()))?
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{key} in {}/memory.stat", dir.display()))
    };
    Ok(Charged { anon_kib: field(anon)? / 1024, shmem_kib: field(shmem)? / 1024 })
}

pub struct OwnCgroup {
    h: Hierarchy,
    parent: String,
    path: String,
}

impl OwnCgroup {
    /// Creates `<current>/moat-bench-<pid>` and moves this process into it.
    pub fn enter() -> Result<OwnCgroup> {
        let h = hierarchy()?;
        let parent = current(&h)?;
        let path = format!("{}/moat-bench-{}", parent.trim_end_matches('/'), std::process::id());
        let dir = h.mount.join(path.trim_start_matches('/'));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
            .with_context(|| format!("joining {}", dir.display()))?;
        Ok(OwnCgroup { h, parent, path })
    }

    /// What the bench's processes (containerd, shims) and the cgroup tree `pods` hold.
    pub fn charged_with(&self, pods: &str) -> Result<Charged> {
        Ok(charged(&self.h, &self.path)?.add(charged(&self.h, pods)?))
    }

    /// Back to the cgroup the bench started in; the bench's cgroup is removed once empty.
    pub fn leave(self) {
        let parent = self.h.mount.join(self.parent.trim_start_matches('/'));
        let _ = fs::write(parent.join("cgroup.procs"), std::process::id().to_string());
        let _ = fs::remove_dir(self.h.mount.join(self.path.trim_start_matches('/')));
    }
}
