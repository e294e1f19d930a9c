//! Which containerd the test bed runs, and the config layout that version needs.
//!
//! containerd 1.6/1.7 read a `version = 2` config with the CRI plugin under
//! `plugins."io.containerd.grpc.v1.cri"`; 2.x reads `version = 3` with the runtime handlers
//! under `plugins."io.containerd.cri.v1.runtime"` and images under
//! `plugins."io.containerd.cri.v1.images"`. `MOAT_CONTAINERD_BIN` picks the binary; its
//! `containerd-shim-runc-v2` is taken from the same directory (put first on containerd's PATH)
//! so the `runc` handler matches the containerd under test.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// containerd's major and minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    /// The config file format this version reads.
    pub fn config_version(self) -> u32 {
        if self.major >= 2 {
            3
        } else {
            2
        }
    }
}

/// Parses `containerd --version` output, e.g.
/// `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1` or
/// `containerd github.com/containerd/containerd/v2 v2.2.7 1e4...`.
pub fn parse(output: &str) -> Option<Version> {
    output.split_whitespace().skip(2).find_map(|word| {
        let word = word.trim_start_matches('v');
        let mut parts = word.split(['.', '~', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Version { major, minor })
    })
}

/// Runs `<binary> --version`.
pub fn detect(binary: &Path) -> Result<Version> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match parse(&text) {
        Some(v) => Ok(v),
        None => bail!("cannot read the version of {} from {text:?}", binary.display()),
    }
}

/// Rewrites a `version = 2` config (as the test bed renders it) into containerd 2.x's
/// `version = 3` layout: the same settings under the plugin names 2.x reads them from.
pub fn to_v3(v2: &str) -> Result<String> {
    use toml::{Table, Value};
    let mut old: Table = v2.parse().context("the rendered containerd config is not TOML")?;
    let mut plugins = match old.remove("plugins") {
        Some(Value::Table(t)) => t,
        _ => Table::new(),
    };
    let mut cri = match plugins.remove("io.containerd.grpc.v1.cri") {
        Some(Value::Table(t)) => t,
        _ => Table::new(),
    };
    let mut runtime = Table::new();
    let mut images = Table::new();
    if let Some(Value::Table(mut containerd)) = cri.remove("containerd") {
        if let Some(snapshotter) = containerd.remove("snapshotter") {
            images.insert("snapshotter".into(), snapshotter);
        }
        runtime.insert("containerd".into(), Value::Table(containerd));
    }
    for key in ["cni", "restrict_oom_score_adj", "enable_selinux", "netns_mounts_under_state_dir"] {
        if let Some(v) = cri.remove(key) {
            runtime.insert(key.into(), v);
        }
    }
    if let Some(registry) = cri.remove("registry") {
        images.insert("registry".into(), registry);
    }
    if let Some(sandbox) = cri.remove("sandbox_image") {
        let mut pinned = Table::new();
        pinned.insert("sandbox".into(), sandbox);
        images.insert("pinned_images".into(), Value::Table(pinned));
    }
    plugins.insert("io.containerd.cri.v1.runtime".into(), Value::Table(runtime));
    plugins.insert("io.containerd.cri.v1.images".into(), Value::Table(images));
    // What is left (the streaming server) stays in the gRPC CRI plugin.
    plugins.insert("io.containerd.grpc.v1.cri".into(), Value::Table(cri));
    old.insert("version".into(), Value::Integer(3));
    old.insert("plugins".into(), Value::Table(plugins));
    toml::to_string(&old).context("writing the containerd 2.x config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_debian_and_upstream_builds_parse() {
        assert_eq!(
            parse("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1\n"),
            Some(Version { major: 1, minor: 6 })
        );
        assert_eq!(
            parse("containerd github.com/containerd/containerd/v2 v2.2.7 1e4f5b1\n"),
            Some(Version { major: 2, minor: 2 })
        );
        assert_eq!(
            parse("containerd github.com/containerd/containerd v1.7.34 abc\n")
                .map(|v| v.config_version()),
            Some(2)
        );
        // Input: output that names no version.
        assert_eq!(parse("something else entirely"), None);
    }

    #[test]
    fn v3_config_moves_the_runtime_handlers_and_images() {
        let v2 = "version = 2\nroot = \"/r\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n  sandbox_image = \"moat.test/pause:1\"\n  stream_server_address = \"127.0.0.1\"\n  [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    bin_dir = \"/usr/lib/cni\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"overlayfs\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat]\n      runtime_type = \"io.containerd.moat.v2\"\n      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat.options]\n        ConfigPath = \"/c.toml\"\n";
        let v3: toml::Table = to_v3(v2).expect("converts").parse().expect("valid toml");
        let get = |path: &[&str]| -> Option<toml::Value> {
            let mut v = toml::Value::Table(v3.clone());
            for key in path {
                v = v.get(*key)?.clone();
            }
            Some(v)
        };
        assert_eq!(get(&["version"]).and_then(|v| v.as_integer()), Some(3));
        let runtime = "io.containerd.cri.v1.runtime";
        let images = "io.containerd.cri.v1.images";
        assert_eq!(
            get(&["plugins", runtime, "containerd", "runtimes", "moat", "options", "ConfigPath"])
                .and_then(|v| v.as_str().map(String::from)),
            Some("/c.toml".into())
        );
        assert_eq!(
            get(&["plugins", runtime, "restrict_oom_score_adj"]).and_then(|v| v.as_bool()),
            Some(true)
        );
        assert_eq!(
            get(&["plugins", runtime, "cni", "bin_dir"]).and_then(|v| v.as_str().map(String::from)),
            Some("/usr/lib/cni".into())
        );
        assert_eq!(
            get(&["plugins", images, "pinned_images", "sandbox"])
                .and_then(|v| v.as_str().map(String::from)),
            Some("moat.test/pause:1".into())
        );
        assert_eq!(
            get(&["plugins", images, "snapshotter"]).and_then(|v| v.as_str().map(String::from)),
            Some("overlayfs".into())
        );
        // The streaming server stays in the gRPC CRI plugin in 2.x.
        assert!(get(&["plugins", "io.containerd.grpc.v1.cri", "stream_server_address"]).is_some());
        assert!(get(&["plugins", "io.containerd.grpc.v1.cri", "containerd"]).is_none());
    }
}
