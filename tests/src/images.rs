//! The test images, built locally (no registry): `moat.test/busybox:1` from the host's
//! busybox-static and `moat.test/pause:1` from `tests/pause/pause.c`.
//!
//! Each image is an OCI layout made with umoci and tarred into an OCI archive, which
//! `ctr images import` loads into containerd's `k8s.io` namespace. Archives are cached under
//! `target/moat-e2e-images/<content hash>/` so reruns only import.
//!
//! The busybox image holds what later tests need:
//! - every busybox applet as a symlink in /bin;
//! - /etc/passwd and /etc/group with root (0), www-data (33), user (1000), nobody (65534);
//! - /var/www owned by www-data:www-data with an index.html (files owned by a non-root ID);
//! - /bin/suid-busybox: a setuid-root copy of busybox (mode 4755), for escalation attempts.
//!
//! `moat.test/devices:1` (built by [`build_devices`], imported by the tests that need it) is the
//! busybox image plus two device nodes in its layer, at ordinary paths: `/opt/null-copy`
//! (`c 1 3`, what /dev/null is) and `/opt/disk` (a block node with the major:minor of the
//! device holding the host's `/`). containerd, running as root, unpacks them as real nodes.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::paths;

/// Bump when the way images are built changes, to invalidate the cache.
const BUILDER_VERSION: &str = "moat-e2e-images-v1";
/// The pause program's source, compiled into the pause image.
const PAUSE_C: &str = include_str!("../pause/pause.c");

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
www-data:x:33:33:www-data:/var/www:/bin/sh\n\
user:x:1000:1000:user:/home/user:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nwww-data:x:33:\nuser:x:1000:\nnogroup:x:65534:\n";

/// The tag every test image carries.
const TAG: &str = "1";

/// One built image: an OCI archive and the name it is imported as.
#[derive(Debug, Clone)]
pub struct ImageArchive {
    /// Full reference, e.g. `moat.test/busybox:1`.
    pub reference: String,
    /// Repository part, passed to `ctr images import --base-name`.
    pub base_name: String,
    pub path: PathBuf,
}

/// The host's statically linked busybox (busybox-static), which the image is made of.
pub fn static_busybox() -> Result<PathBuf> {
    for candidate in ["/bin/busybox", "/usr/bin/busybox"] {
        let path = Path::new(candidate);
        if !path.is_file() {
            continue;
        }
        if is_static_elf(path).with_context(|| format!("reading {candidate}"))? {
            return Ok(path.to_path_buf());
        }
        bail!("{candidate} is dynamically linked (the images need busybox-static)");
    }
    bail!("no busybox binary at /bin/busybox or /usr/bin/busybox")
}

/// True when `path` is an ELF64 executable without a PT_INTERP program header.
fn is_static_elf(path: &Path) -> Result<bool> {
    let mut head = Vec::new();
    fs::File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 {
        bail!("not an ELF64 file");
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into()?) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let Some(p_type) = head.get(at..at + 4) else {
            bail!("program headers past the first 64 KiB")
        };
        if u32::from_le_bytes(p_type.try_into()?) == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Builds (or finds in `cache_dir`) the busybox and pause image archives.
pub fn build(cache_dir: &Path) -> Result<Vec<ImageArchive>> {
    let busybox = static_busybox()?;
    let busybox_bytes =
        fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let applets = applets(&busybox)?;

    let key = cache_key(&[
        BUILDER_VERSION.as_bytes(),
        &busybox_bytes,
        PAUSE_C.as_bytes(),
        PASSWD.as_bytes(),
        GROUP.as_bytes(),
    ]);
    let done = cache_dir.join(&key);
    let archives = |dir: &Path| {
        vec![
            ImageArchive {
                reference: crate::configs::BUSYBOX.to_string(),
                base_name: "moat.test/busybox".to_string(),
                path: dir.join("busybox.tar"),
            },
            ImageArchive {
                reference: crate::configs::PAUSE.to_string(),
                base_name: "moat.test/pause".to_string(),
                path: dir.join("pause.tar"),
            },
        ]
    };
    let built = || archives(&done).iter().all(|a| a.path.is_file());
    if built() {
        return Ok(archives(&done));
    }

    let work = cache_dir.join(format!(".build-{key}-{}", std::process::id()));
    build_into(&work, &done, built, "the test images", |work, out| {
        let rootfs = work.join("busybox-rootfs");
        busybox_rootfs(&rootfs, &busybox, &applets)?;
        oci_archive(
            &work.join("busybox-layout"),
            &rootfs,
            &BUSYBOX_CONFIG,
            &out.join("busybox.tar"),
        )?;
        let rootfs = work.join("pause-rootfs");
        pause_rootfs(&rootfs, work)?;
        oci_archive(
            &work.join("pause-layout"),
            &rootfs,
            &["--config.entrypoint", "/pause"],
            &out.join("pause.tar"),
        )
    })?;
    Ok(archives(&done))
}

/// The image config of the busybox-based images (`umoci config` arguments).
const BUSYBOX_CONFIG: [&str; 6] = [
    "--config.env",
    "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
    "--config.cmd",
    "/bin/sh",
    "--config.workingdir",
    "/",
];

/// The cache directory name for a build from `parts`: the first 8 bytes, in hex, of a SHA-256
/// over each part preceded by its length.
fn cache_key(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Runs `fill(work, out)` in a fresh work directory `work` (removed afterwards) and moves
/// `out` to `done` when it is complete; `built()` says another test process finished the same
/// build first, which is no failure. `what` names the images in errors.
fn build_into(
    work: &Path,
    done: &Path,
    built: impl Fn() -> bool,
    what: &str,
    fill: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<()> {
    let _ = fs::remove_dir_all(work);
    fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let result = (|| -> Result<()> {
        let out = work.join("out");
        fs::create_dir_all(&out)?;
        fill(work, &out)?;
        match fs::rename(&out, done) {
            Ok(()) => Ok(()),
            Err(_) if built() => Ok(()),
            Err(e) => Err(e).with_context(|| format!("moving {what} to {}", done.display())),
        }
    })();
    let _ = fs::remove_dir_all(work);
    result.with_context(|| format!("building {what} in {}", work.display()))
}

fn applets(busybox: &Path) -> Result<Vec<String>> {
    let out = run(Command::new(busybox).arg("--list"))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect())
}

fn mkdir(path: &Path, mode: u32, owner: u32) -> Result<()> {
    fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(path, Some(owner), Some(owner))?;
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32, owner: u32) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    std::os::unix::fs::chown(path, Some(owner), Some(owner))?;
    Ok(())
}

fn busybox_rootfs(root: &Path, busybox: &Path, applets: &[String]) -> Result<()> {
    for (dir, mode, owner) in [
        ("", 0o755, 0),
        ("bin", 0o755, 0),
        ("sbin", 0o755, 0),
        ("usr", 0o755, 0),
        ("usr/bin", 0o755, 0),
        ("usr/sbin", 0o755, 0),
        ("etc", 0o755, 0),
        ("root", 0o700, 0),
        ("home", 0o755, 0),
        ("home/user", 0o755, 1000),
        ("tmp", 0o1777, 0),
        ("var", 0o755, 0),
        ("var/tmp", 0o1777, 0),
        ("var/www", 0o755, 33),
        ("proc", 0o555, 0),
        ("sys", 0o555, 0),
        ("dev", 0o755, 0),
        ("run", 0o755, 0),
    ] {
        mkdir(&root.join(dir), mode, owner)?;
    }
    let bytes = fs::read(busybox)?;
    write_file(&root.join("bin/busybox"), &bytes, 0o755, 0)?;
    // Setuid root: for tests that try to escalate through a setuid binary.
    write_file(&root.join("bin/suid-busybox"), &bytes, 0o4755, 0)?;
    for applet in applets {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).with_context(|| format!("linking {}", link.display()))?;
        }
    }
    write_file(&root.join("etc/passwd"), PASSWD.as_bytes(), 0o644, 0)?;
    write_file(&root.join("etc/group"), GROUP.as_bytes(), 0o644, 0)?;
    write_file(
        &root.join("var/www/index.html"),
        b"<html><body>moat test page</body></html>\n",
        0o644,
        33,
    )?;
    Ok(())
}

fn pause_rootfs(root: &Path, work: &Path) -> Result<()> {
    mkdir(root, 0o755, 0)?;
    let src = work.join("pause.c");
    fs::write(&src, PAUSE_C)?;
    let bin = root.join("pause");
    run(Command::new("gcc").args(["-static", "-Os", "-s", "-o"]).arg(&bin).arg(&src))
        .context("compiling the pause program (needs gcc and libc6-dev)")?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Makes an OCI layout holding `rootfs` as one layer, tagged `TAG`, and tars it to `archive`.
fn oci_archive(layout: &Path, rootfs: &Path, config: &[&str], archive: &Path) -> Result<()> {
    let image = format!("{}:{TAG}", layout.display());
    run(Command::new("umoci").args(["init", "--layout"]).arg(layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    run(Command::new("umoci").args(["insert", "--image", &image]).arg(rootfs).arg("/"))?;
    run(Command::new("umoci").args(["config", "--image", &image]).args(config))?;
    run(Command::new("umoci").args(["gc", "--layout"]).arg(layout))?;
    run(Command::new("tar").arg("-C").arg(layout).arg("-cf").arg(archive).arg("."))?;
    Ok(())
}

/// The devices test image (see the module docs).
pub const DEVICES: &str = "moat.test/devices:1";
/// Where the devices image holds its nodes.
pub const DEVICES_CHAR_NODE: &str = "/opt/null-copy";
pub const DEVICES_BLOCK_NODE: &str = "/opt/disk";

/// The (major, minor) of the block device holding the host's `/`.
pub fn host_root_device() -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").context("stat /")?.dev();
    Ok((nix::sys::stat::major(dev), nix::sys::stat::minor(dev)))
}

/// Builds (or finds in `cache_dir`) the devices image archive (see the module docs).
pub fn build_devices(cache_dir: &Path) -> Result<ImageArchive> {
    let busybox = static_busybox()?;
    let busybox_bytes =
        fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let applets = applets(&busybox)?;
    let (major, minor) = host_root_device()?;
    let key = cache_key(&[
        b"moat-e2e-devices-image-v1".as_slice(),
        &busybox_bytes,
        PASSWD.as_bytes(),
        GROUP.as_bytes(),
        format!("{major}:{minor}").as_bytes(),
    ]);
    let done = cache_dir.join(format!("devices-{key}"));
    let archive = ImageArchive {
        reference: DEVICES.to_string(),
        base_name: "moat.test/devices".to_string(),
        path: done.join("devices.tar"),
    };
    if archive.path.is_file() {
        return Ok(archive);
    }
    let work = cache_dir.join(format!(".build-devices-{key}-{}", std::process::id()));
    build_into(
        &work,
        &done,
        || archive.path.is_file(),
        "the devices image",
        |work, out| {
            let rootfs = work.join("devices-rootfs");
            busybox_rootfs(&rootfs, &busybox, &applets)?;
            mkdir(&rootfs.join("opt"), 0o755, 0)?;
            for (path, kind, major, minor) in [
                (DEVICES_CHAR_NODE, nix::sys::stat::SFlag::S_IFCHR, 1, 3),
                (DEVICES_BLOCK_NODE, nix::sys::stat::SFlag::S_IFBLK, major, minor),
            ] {
                let node = rootfs.join(path.trim_start_matches('/'));
                nix::sys::stat::mknod(
                    &node,
                    kind,
                    nix::sys::stat::Mode::from_bits_truncate(0o666),
                    nix::sys::stat::makedev(major, minor),
                )
                .with_context(|| format!("mknod {} (needs root)", node.display()))?;
            }
            oci_archive(
                &work.join("devices-layout"),
                &rootfs,
                &BUSYBOX_CONFIG,
                &out.join("devices.tar"),
            )
        },
    )?;
    Ok(archive)
}

/// Imports `archive` into containerd's `k8s.io` namespace (where the CRI looks).
pub fn import(socket: &Path, archive: &ImageArchive) -> Result<()> {
    let ctr = paths::find_program("ctr").context("no `ctr` program (it comes with containerd)")?;
    run(Command::new(ctr)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io", "images", "import", "--base-name", &archive.base_name])
        .arg(&archive.path))
    .with_context(|| format!("importing {} from {}", archive.reference, archive.path.display()))?;
    Ok(())
}

/// Runs a command; its stdout, or an error with its stderr.
fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!("{shown} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
