//! Where the test bed finds its binaries and keeps its files.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The workspace root (the directory holding the top Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Where built test images are cached between runs.
pub fn image_cache_dir() -> PathBuf {
    target_dir().join("moat-e2e-images")
}

/// The containerd binary: `MOAT_CONTAINERD_BIN`, else /usr/bin/containerd.
pub fn containerd_binary() -> PathBuf {
    std::env::var_os("MOAT_CONTAINERD_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/containerd"))
}

/// The name containerd looks up on its PATH for runtime_type `io.containerd.moat.v2`.
pub const MOAT_SHIM_NAME: &str = "containerd-shim-moat-v2";

/// The moat shim binary: `MOAT_SHIM`, else the newer of target/release and target/debug.
/// `None` when none of them exists.
pub fn shim_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MOAT_SHIM").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let target = target_dir();
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join(MOAT_SHIM_NAME))
        .filter_map(|p| mtime(&p).map(|t| (t, p)))
        .max_by_key(|(t, _): &(SystemTime, PathBuf)| *t)
        .map(|(_, p)| p)
}

/// Finds `name` on the PATH (or the sbin directories, which root's PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}
