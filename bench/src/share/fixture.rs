//! A busybox image layer on disk for the micro-benchmarks: the lower layer of moat's overlay
//! and, as is, the root of the bare baseline. Fresh upper/work dirs per moat start.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Removed when dropped.
#[derive(Debug)]
pub struct Fixture {
    pub dir: PathBuf,
    /// The image: /bin/busybox, /bin/true and /bin/sh, the usual top-level dirs.
    pub lower: PathBuf,
}

/// Per-start overlay dirs (empty upper and work, the rootfs mount point).
#[derive(Debug)]
pub struct Layer {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub rootfs: PathBuf,
    dir: PathBuf,
}

impl Fixture {
    pub fn new() -> Result<Fixture> {
        let dir = Path::new("/var/tmp").join(format!("moat-bench-share-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let lower = dir.join("lower");
        for sub in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
            fs::create_dir_all(lower.join(sub))
                .with_context(|| format!("creating {sub} in {}", lower.display()))?;
        }
        fs::set_permissions(lower.join("tmp"), fs::Permissions::from_mode(0o1777))?;
        let busybox = moat_e2e::images::static_busybox()?;
        fs::copy(&busybox, lower.join("bin/busybox"))
            .with_context(|| format!("copying {}", busybox.display()))?;
        for applet in ["true", "sh", "sleep"] {
            symlink("busybox", lower.join("bin").join(applet))?;
        }
        fs::write(lower.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
        fs::write(lower.join("etc/group"), "root:x:0:\n")?;
        Ok(Fixture { dir, lower })
    }

    /// Fresh overlay dirs for start number `n`.
    pub fn layer(&self, n: usize) -> Result<Layer> {
        let dir = self.dir.join(format!("c{n}"));
        let layer = Layer {
            upper: dir.join("upper"),
            work: dir.join("work"),
            rootfs: dir.join("rootfs"),
            dir,
        };
        for d in [&layer.upper, &layer.work, &layer.rootfs] {
            fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(layer)
    }
}

impl Layer {
    pub fn remove(self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        moat_e2e::containerd::unmount_under(&self.dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
