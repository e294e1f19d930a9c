//! Where the cgroup hierarchies are mounted, read from /proc/self/mountinfo.

use std::path::{Path, PathBuf};

use super::CgroupError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One mounted cgroup v1 hierarchy and the controllers bound to it (`cpu`, `cpuacct`, ...).
/// Named hierarchies without controllers (`name=systemd`) are not listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mount: PathBuf,
    pub controllers: Vec<String>,
}

/// How the machine's cgroups are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 controller hierarchies.
    V1,
    /// v1 controller hierarchies plus a v2 hierarchy (normally without controllers), used here
    /// to track processes.
    Hybrid,
    /// One v2 hierarchy holding every controller.
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    v1: Vec<V1Hierarchy>,
    v2: Option<PathBuf>,
}

impl Layout {
    /// Reads /proc/self/mountinfo.
    pub fn detect() -> Result<Layout, CgroupError> {
        let text = std::fs::read_to_string(MOUNTINFO)
            .map_err(|source| CgroupError::Read { path: MOUNTINFO.into(), source })?;
        let layout = Layout::from_mountinfo(&text);
        if layout.v1.is_empty() && layout.v2.is_none() {
            return Err(CgroupError::NoCgroupFs { mountinfo: MOUNTINFO.into() });
        }
        Ok(layout)
    }

    /// Pure: the layout described by a mountinfo text. Malformed lines are skipped. When a
    /// hierarchy is mounted more than once, a mount of its root under /sys/fs/cgroup wins,
    /// then any mount of its root, then the first one seen.
    pub fn from_mountinfo(text: &str) -> Layout {
        let mut v1: Vec<(V1Hierarchy, u8)> = Vec::new();
        let mut v2: Option<(PathBuf, u8)> = None;
        for line in text.lines() {
            let Some(m) = MountLine::parse(line) else { continue };
            let rank = m.rank();
            match m.fstype {
                "cgroup2" if v2.as_ref().is_none_or(|(_, r)| rank > *r) => {
                    v2 = Some((m.mount_point, rank));
                }
                "cgroup" => {
                    let mut controllers: Vec<String> = m
                        .super_options
                        .split(',')
                        .filter(|o| is_v1_controller(o))
                        .map(str::to_string)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    controllers.sort();
                    match v1.iter_mut().find(|(h, _)| h.controllers == controllers) {
                        Some((h, r)) if rank > *r => {
                            h.mount = m.mount_point;
                            *r = rank;
                        }
                        Some(_) => {}
                        None => v1.push((V1Hierarchy { mount: m.mount_point, controllers }, rank)),
                    }
                }
                _ => {}
            }
        }
        Layout { v1: v1.into_iter().map(|(h, _)| h).collect(), v2: v2.map(|(p, _)| p) }
    }

    pub fn mode(&self) -> Mode {
        match (self.v1.is_empty(), self.v2.is_some()) {
            (false, true) => Mode::Hybrid,
            (false, false) => Mode::V1,
            (true, _) => Mode::V2,
        }
    }

    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        &self.v1
    }

    /// The mount point of the v1 hierarchy holding `controller`, if mounted.
    pub fn v1_mount(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mount.as_path())
    }

    /// The mount point of the v2 hierarchy (the unified one in hybrid mode), if mounted.
    pub fn v2_mount(&self) -> Option<&Path> {
        self.v2.as_deref()
    }
}

/// Options of a `cgroup` mount that are not controller names.
fn is_v1_controller(option: &str) -> bool {
    !matches!(
        option,
        "rw" | "ro" | "noprefix" | "clone_children" | "xattr" | "cpuset_v2_mode" | "favordynmods"
    ) && !option.contains('=')
}

struct MountLine<'a> {
    root: String,
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

impl<'a> MountLine<'a> {
    /// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
    fn parse(line: &'a str) -> Option<MountLine<'a>> {
        let (before, after) = line.split_once(" - ")?;
        let mut pre = before.split(' ');
        let root = unescape(pre.nth(3)?);
        let mount_point = PathBuf::from(unescape(pre.next()?));
        let mut post = after.split(' ');
        let fstype = post.next()?;
        let _source = post.next()?;
        let super_options = post.next()?;
        Some(MountLine { root, mount_point, fstype, super_options })
    }

    fn rank(&self) -> u8 {
        let root = u8::from(self.root == "/");
        let standard = u8::from(self.mount_point.starts_with("/sys/fs/cgroup"));
        root + 2 * standard
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
garbage line
";

    #[test]
    fn hybrid_layout() {
        let l = Layout::from_mountinfo(HYBRID);
        assert_eq!(l.mode(), Mode::Hybrid);
        assert_eq!(l.v1_mount("cpu"), Some(Path::new("/sys/fs/cgroup/cpu")));
        assert_eq!(l.v1_mount("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert_eq!(l.v1_mount("freezer"), None);
        assert_eq!(l.v2_mount(), Some(Path::new("/sys/fs/cgroup/unified")));
        // name=systemd carries no controller
        assert_eq!(l.v1_hierarchies().len(), 4);
    }

    #[test]
    fn pure_v2_layout() {
        let l = Layout::from_mountinfo(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
        );
        assert_eq!(l.mode(), Mode::V2);
        assert_eq!(l.v2_mount(), Some(Path::new("/sys/fs/cgroup")));
        assert!(l.v1_hierarchies().is_empty());
    }

    #[test]
    fn v1_combined_controllers_and_duplicate_mounts() {
        let l = Layout::from_mountinfo(
            "1 0 0:1 /docker/x /mnt/elsewhere rw - cgroup cgroup rw,cpu,cpuacct\n\
             2 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpuacct,cpu\n\
             3 0 0:2 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        assert_eq!(l.mode(), Mode::V1);
        assert_eq!(l.v1_mount("cpuacct"), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        assert_eq!(l.v1_mount("cpu"), l.v1_mount("cpuacct"));
        assert_eq!(l.v1_hierarchies().len(), 2);
    }

    #[test]
    fn escaped_mount_points() {
        let l = Layout::from_mountinfo("1 0 0:1 / /mnt/with\\040space rw - cgroup2 none rw\n");
        assert_eq!(l.v2_mount(), Some(Path::new("/mnt/with space")));
    }
}
