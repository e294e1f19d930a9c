//! `linux.devices`, masked and read-only paths.
//!
//! Devices: moat's helper always builds a minimal /dev (null, zero, full, random, urandom,
//! tty, ptmx); entries for those are accepted and need nothing more. Any other device node is
//! a host device: refused unless `allow_host_devices`, in which case the plan bind-mounts the
//! host node at the same path (a user namespace cannot mknod). The node at that host path must
//! be the device the spec names — same type, same major:minor — or the container is refused
//! naming the field: the device cgroup rules are written from the spec's numbers, and a spec
//! saying `c 10:200` for a path that is really `b 8:0` must not get the disk bound in. This is
//! the one fact policy cannot take from the spec, so it reads it through [`HostDevices`] (the
//! host's `stat`, or a fixed table in unit tests); host /dev is root's, so what was checked is
//! what the helper binds.
//!
//! Masked and read-only paths: the spec's lists UNION moat's built-in lists, so a spec that
//! clears them (a privileged container, `procMount: Unmasked`) cannot unmask anything.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::config::Config;
use super::refusal::{Refusal, Rule, Subject};
use crate::plan::{MountKind, MountPlan};

/// The devices every container gets: (path, major, minor).
pub const STANDARD: [(&str, i64, i64); 7] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/ptmx", 5, 2),
];

/// Always masked (containerd's and Docker's defaults, plus powercap: CVE-2020-8694).
pub const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Always read-only.
pub const READONLY: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn is_standard(d: &LinuxDevice) -> bool {
    STANDARD.iter().any(|(path, major, minor)| {
        d.path() == Path::new(path)
            && d.major() == *major
            && d.minor() == *minor
            && d.typ() == LinuxDeviceType::C
    })
}

/// What is at a host path (symlinks followed, as the bind mount follows them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostNode {
    Char {
        major: u64,
        minor: u64,
    },
    Block {
        major: u64,
        minor: u64,
    },
    /// Something that is not a device node (a file, a directory, ...).
    NotADevice,
    Missing,
}

/// Where policy learns what a host device path really is.
pub trait HostDevices {
    fn node(&self, path: &Path) -> HostNode;
}

/// The host's own /dev, through stat(2).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostDevFs;

impl HostDevices for HostDevFs {
    fn node(&self, path: &Path) -> HostNode {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(path) else { return HostNode::Missing };
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let t = meta.file_type();
        if t.is_char_device() {
            HostNode::Char { major, minor }
        } else if t.is_block_device() {
            HostNode::Block { major, minor }
        } else {
            HostNode::NotADevice
        }
    }
}

/// The host lookup `derive_container` uses: the real one, or in this crate's unit tests a
/// fixed table holding the host devices the policy tests name (so they do not depend on the
/// machine's /dev). The checks themselves are tested in this module with their own tables.
#[cfg(not(test))]
fn host() -> &'static dyn HostDevices {
    &HostDevFs
}

#[cfg(test)]
fn host() -> &'static dyn HostDevices {
    &tests::POLICY_TEST_HOST
}

/// Host device bind mounts for the spec's non-standard devices. `privileged_allowed`: a
/// privileged spec lists every host device; without `allow_host_devices` those are left out
/// (moat's privileged is not host-privileged) instead of refusing the container.
pub(crate) fn plan(
    devices: &[LinuxDevice],
    config: &Config,
    privileged_allowed: bool,
    who: &Subject,
) -> Result<Vec<MountPlan>, Refusal> {
    plan_with(devices, config, privileged_allowed, who, host())
}

/// The host node at `path` must be the device `d` describes.
fn check_host_node(
    i: usize,
    d: &LinuxDevice,
    path: &Path,
    host: &dyn HostDevices,
    who: &Subject,
) -> Result<(), Refusal> {
    let spec_type = if d.typ() == LinuxDeviceType::B { "b" } else { "c" };
    let fix = "the spec must name the host node's own type and major:minor (fix the device \
               plugin or the container's spec)";
    let refuse = |field: String, reason: String| {
        Err(who.refuse_always(field, Rule::InvalidSpec, reason, fix))
    };
    let (host_type, major, minor) = match host.node(path) {
        HostNode::Char { major, minor } => ("c", major, minor),
        HostNode::Block { major, minor } => ("b", major, minor),
        HostNode::Missing => {
            return refuse(
                format!("linux.devices[{i}].path={}", path.display()),
                format!("there is no device node at {} on this host", path.display()),
            )
        }
        HostNode::NotADevice => {
            return refuse(
                format!("linux.devices[{i}].path={}", path.display()),
                format!("{} on this host is not a device node", path.display()),
            )
        }
    };
    let host_is = format!("{} on this host is {host_type} {major}:{minor}", path.display());
    if spec_type != host_type {
        return refuse(
            format!("linux.devices[{i}].type={spec_type}"),
            format!("the spec says {spec_type} {}:{}, but {host_is}", d.major(), d.minor()),
        );
    }
    for (name, want, have) in [("major", d.major(), major), ("minor", d.minor(), minor)] {
        if u64::try_from(want).ok() != Some(have) {
            return refuse(
                format!("linux.devices[{i}].{name}={want}"),
                format!("the spec says {spec_type} {}:{}, but {host_is}", d.major(), d.minor()),
            );
        }
    }
    Ok(())
}

fn plan_with(
    devices: &[LinuxDevice],
    config: &Config,
    privileged_allowed: bool,
    who: &Subject,
    host: &dyn HostDevices,
) -> Result<Vec<MountPlan>, Refusal> {
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        if is_standard(d) {
            continue;
        }
        let field = format!("linux.devices[{i}].path={}", d.path().display());
        if !config.allow_host_devices {
            if privileged_allowed {
                continue;
            }
            return Err(who.refuse(
                field,
                Rule::HostDevice,
                format!(
                    "host device {} ({}:{}) is not allowed at level {}",
                    d.path().display(),
                    d.major(),
                    d.minor(),
                    config.level
                ),
                "allow_host_devices = true",
            ));
        }
        let path = super::host_paths::normalize(d.path())
            .filter(|p| p.starts_with("/dev") && p != Path::new("/dev"))
            .ok_or_else(|| {
                who.refuse_always(
                    field.clone(),
                    Rule::InvalidSpec,
                    "a device path must be an absolute path under /dev",
                    "fix the container's spec",
                )
            })?;
        if !matches!(d.typ(), LinuxDeviceType::C | LinuxDeviceType::B | LinuxDeviceType::U) {
            return Err(who.refuse_always(
                field,
                Rule::InvalidSpec,
                "only character and block devices can be passed through",
                "fix the container's spec",
            ));
        }
        check_host_node(i, d, &path, host, who)?;
        out.push(MountPlan {
            destination: path.clone(),
            kind: MountKind::Bind {
                source: path,
                recursive: false,
                idmap: false,
                from_host: false,
            },
            readonly: false,
            nosuid: true,
            nodev: false,
            noexec: true,
            data: None,
        });
    }
    Ok(out)
}

/// The spec's list union the built-in one, deduplicated, spec order first.
pub(crate) fn union(spec: Option<&Vec<String>>, built_in: &[&str]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let all = spec.into_iter().flatten().map(String::as_str).chain(built_in.iter().copied());
    for p in all {
        let p = PathBuf::from(p);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    /// A fixed host: (path, node).
    pub(super) struct Table(&'static [(&'static str, HostNode)]);

    impl HostDevices for Table {
        fn node(&self, path: &Path) -> HostNode {
            self.0.iter().find(|(p, _)| Path::new(p) == path).map_or(HostNode::Missing, |(_, n)| *n)
        }
    }

    /// The host devices `policy::tests` name, as a Linux host numbers them.
    pub(super) static POLICY_TEST_HOST: Table = Table(&[
        ("/dev/kvm", HostNode::Char { major: 10, minor: 232 }),
        ("/dev/sda", HostNode::Block { major: 8, minor: 0 }),
    ]);

    static HOST: Table = Table(&[
        ("/dev/fuse", HostNode::Char { major: 10, minor: 229 }),
        ("/dev/vdb", HostNode::Block { major: 254, minor: 16 }),
        ("/dev/not-a-node", HostNode::NotADevice),
    ]);

    fn who() -> Subject {
        Subject { pod: "pod0".into(), container: "c0".into(), file: "/etc/moat/config.toml".into() }
    }

    fn device(path: &str, typ: LinuxDeviceType, major: i64, minor: i64) -> LinuxDevice {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(major)
            .minor(minor)
            .build()
            .expect("device")
    }

    fn allowed() -> Config {
        Config { allow_host_devices: true, ..Config::default() }
    }

    fn refusal(devices: &[LinuxDevice]) -> Refusal {
        match plan_with(devices, &allowed(), false, &who(), &HOST) {
            Ok(m) => panic!("{devices:?} passed: {m:?}"),
            Err(r) => r,
        }
    }

    fn assert_refused(r: &Refusal, field: &str, reason: &str) {
        let msg = r.to_string();
        assert_eq!(r.rule(), Rule::InvalidSpec, "{msg}");
        assert_eq!(r.field(), field, "{msg}");
        assert!(r.reason().contains(reason), "{msg}");
        assert!(msg.contains("host node's own type and major:minor"), "{msg}");
    }

    #[test]
    fn a_device_matching_its_host_node_is_bound() {
        let mounts = plan_with(
            &[
                device("/dev/fuse", LinuxDeviceType::C, 10, 229),
                device("/dev/vdb", LinuxDeviceType::B, 254, 16),
            ],
            &allowed(),
            false,
            &who(),
            &HOST,
        )
        .expect("matching devices pass");
        assert_eq!(mounts.len(), 2);
    }

    #[test]
    fn other_numbers_than_the_host_nodes_are_refused_naming_the_field() {
        let r = refusal(&[
            device("/dev/fuse", LinuxDeviceType::C, 10, 229),
            device("/dev/vdb", LinuxDeviceType::B, 8, 16),
        ]);
        assert_refused(
            &r,
            "linux.devices[1].major=8",
            "the spec says b 8:16, but /dev/vdb on this host is b 254:16",
        );
        let r = refusal(&[device("/dev/fuse", LinuxDeviceType::C, 10, 200)]);
        assert_refused(&r, "linux.devices[0].minor=200", "/dev/fuse on this host is c 10:229");
    }

    #[test]
    fn another_type_than_the_host_nodes_is_refused_naming_the_field() {
        // The attack: "a character device 254:16" for the path of the host's disk.
        let r = refusal(&[device("/dev/vdb", LinuxDeviceType::C, 254, 16)]);
        assert_refused(
            &r,
            "linux.devices[0].type=c",
            "the spec says c 254:16, but /dev/vdb on this host is b 254:16",
        );
        // u (unbuffered) is a character device.
        let r = refusal(&[device("/dev/vdb", LinuxDeviceType::U, 254, 16)]);
        assert_refused(&r, "linux.devices[0].type=c", "b 254:16");
        plan_with(
            &[device("/dev/fuse", LinuxDeviceType::U, 10, 229)],
            &allowed(),
            false,
            &who(),
            &HOST,
        )
        .expect("u is c");
    }

    #[test]
    fn a_missing_node_or_a_non_device_is_refused() {
        let r = refusal(&[device("/dev/nvidia0", LinuxDeviceType::C, 195, 0)]);
        assert_refused(&r, "linux.devices[0].path=/dev/nvidia0", "no device node at /dev/nvidia0");
        let r = refusal(&[device("/dev/not-a-node", LinuxDeviceType::C, 1, 1)]);
        assert_refused(&r, "linux.devices[0].path=/dev/not-a-node", "not a device node");
    }

    #[test]
    fn the_host_lookup_reads_real_nodes() {
        assert_eq!(HostDevFs.node(Path::new("/dev/null")), HostNode::Char { major: 1, minor: 3 });
        assert_eq!(HostDevFs.node(Path::new("/")), HostNode::NotADevice);
        assert_eq!(HostDevFs.node(Path::new("/dev/moat-no-such-node")), HostNode::Missing);
    }
}
