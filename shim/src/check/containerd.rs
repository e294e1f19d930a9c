//! The containerd side of `check`: its version (`containerd --version`) and whether its
//! config declares the `moat` handler in a way that works (pure over the config's text, so it
//! is unit-tested on real config files).

use std::path::{Path, PathBuf};
use std::process::Command;

use moat_sandbox::host_support::Finding;

pub const VERSION: &str = "containerd version";
pub const HANDLER: &str = "containerd config: moat handler";

/// `containerd --version` of `binary`, read as (major, minor).
pub fn version(binary: &Path) -> (Finding, Option<(u32, u32)>) {
    let out = match Command::new(binary).arg("--version").output() {
        Ok(out) => out,
        Err(e) => {
            return (
                Finding::missing(
                    VERSION,
                    format!("cannot run {} --version: {e}", binary.display()),
                    "install containerd 1.6 or newer (Debian: apt-get install containerd)",
                ),
                None,
            )
        }
    };
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match parse_version(&text) {
        Some((major, minor)) if (major, minor) >= (1, 6) => {
            (Finding::ok(VERSION, format!("{major}.{minor} ({text})")), Some((major, minor)))
        }
        Some((major, minor)) => (
            Finding::missing(
                VERSION,
                format!("{major}.{minor} is older than 1.6 ({text})"),
                "upgrade containerd to 1.6 or newer (task API v2 with the CRI plugin)",
            ),
            Some((major, minor)),
        ),
        None => (
            Finding::missing(
                VERSION,
                format!("cannot read a version from {text:?}"),
                "install containerd 1.6 or newer",
            ),
            None,
        ),
    }
}

/// `containerd github.com/containerd/containerd 1.6.20~ds1 ...` -> (1, 6); `v2.2.7` -> (2, 2).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    text.split_whitespace().skip(2).find_map(|word| {
        let mut parts = word.trim_start_matches('v').split(['.', '~', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    })
}

/// What the config says about the `moat` handler, and containerd's `root` (for the idmap
/// probe) and the moat handler's `ConfigPath`, when the config names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigReport {
    pub findings: Vec<Finding>,
    pub root: PathBuf,
    pub moat_config_path: Option<PathBuf>,
}

/// Checks the text of containerd's config file `path` (for containerd `major`, if known).
pub fn handler(text: &str, path: &Path, major: Option<u32>) -> ConfigReport {
    let shown = path.display();
    let mut report = ConfigReport {
        findings: Vec::new(),
        root: PathBuf::from("/var/lib/containerd"),
        moat_config_path: None,
    };
    let readme = "see README.md, Install step 3 (a complete config for your containerd)";
    let config: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            report.findings.push(Finding::missing(
                HANDLER,
                format!("{shown} is not valid TOML: {}", e.message()),
                format!("fix the file (containerd --config {shown} config dump shows the error)"),
            ));
            return report;
        }
    };
    if let Some(root) = config.get("root").and_then(|v| v.as_str()) {
        report.root = PathBuf::from(root);
    }
    let version = config.get("version").and_then(|v| v.as_integer()).unwrap_or(1);
    let cri_name = match version {
        2 => "io.containerd.grpc.v1.cri",
        3 => "io.containerd.cri.v1.runtime",
        v => {
            report.findings.push(Finding::missing(
                HANDLER,
                format!("{shown} has config version {v}; moat's handler needs version = 2 (1.6/1.7) or 3 (2.x)"),
                readme,
            ));
            return report;
        }
    };
    let containerd =
        config.get("plugins").and_then(|p| p.get(cri_name)).and_then(|c| c.get("containerd"));
    let runtimes = containerd.and_then(|c| c.get("runtimes")).and_then(|r| r.as_table());
    let Some(moat) = runtimes.and_then(|r| r.get("moat")) else {
        report.findings.push(Finding::missing(
            HANDLER,
            format!("{shown} declares no [plugins.\"{cri_name}\".containerd.runtimes.moat]"),
            readme,
        ));
        return report;
    };
    let runtime_type = moat.get("runtime_type").and_then(|v| v.as_str()).unwrap_or("");
    if runtime_type != "io.containerd.moat.v2" {
        report.findings.push(Finding::missing(
            HANDLER,
            format!(
                "runtimes.moat has runtime_type {runtime_type:?}, not \"io.containerd.moat.v2\""
            ),
            "set runtime_type = \"io.containerd.moat.v2\"",
        ));
        return report;
    }
    let default = containerd
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(|v| v.as_str())
        .unwrap_or("runc");
    if !runtimes.is_some_and(|r| r.contains_key(default)) {
        report.findings.push(Finding::missing(
            HANDLER,
            format!(
                "default_runtime_name = {default:?} is not declared under runtimes: containerd \
                 disables its CRI plugin and every pod on the node fails"
            ),
            format!(
                "declare [plugins.\"{cri_name}\".containerd.runtimes.{default}] too ({readme})"
            ),
        ));
        return report;
    }
    let options = moat.get("options").and_then(|o| o.as_table());
    if options.and_then(|o| o.get("SystemdCgroup")).and_then(|v| v.as_bool()) == Some(true) {
        report.findings.push(Finding::missing(
            HANDLER,
            "runtimes.moat.options has SystemdCgroup = true; moat supports the cgroupfs driver",
            "remove SystemdCgroup from the moat handler",
        ));
        return report;
    }
    report.moat_config_path =
        options.and_then(|o| o.get("ConfigPath")).and_then(|v| v.as_str()).map(PathBuf::from);
    let detail = format!(
        "{shown}: runtimes.moat (io.containerd.moat.v2), default runtime {default:?} declared"
    );
    let two_x = version == 3 || major.is_some_and(|m| m >= 2);
    if two_x && options.is_some() {
        report.findings.push(Finding::warn(
            HANDLER,
            format!("{detail}; but the moat handler has an options table"),
            "on containerd 2.x remove runtimes.moat.options: with it, hostUsers: false pods fail \
             (moat then reads /etc/moat/config.toml)",
        ));
    } else if version == 2 && major.is_some_and(|m| m >= 2) {
        report.findings.push(Finding::warn(
            HANDLER,
            format!("{detail}; containerd 2.x reads this version = 2 file by migrating it"),
            "write the version = 3 config of README.md",
        ));
    } else {
        report.findings.push(Finding::ok(HANDLER, detail));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_sandbox::host_support::Status;

    use crate::readme_fixture::readme_config;

    fn status(text: &str, major: Option<u32>) -> (Status, String) {
        let r = handler(text, Path::new("/etc/containerd/config.toml"), major);
        let f = &r.findings[0];
        (f.status, format!("{} | {}", f.detail, f.fix))
    }

    #[test]
    fn the_readme_configs_pass() {
        let v2 = readme_config("moat-containerd-config-v2");
        let r = handler(&v2, Path::new("/etc/containerd/config.toml"), Some(1));
        assert_eq!(r.findings[0].status, Status::Ok, "{:?}", r.findings);
        assert_eq!(r.moat_config_path, Some(PathBuf::from("/etc/moat/config.toml")));
        let v3 = readme_config("moat-containerd-config-v3");
        assert_eq!(status(&v3, Some(2)).0, Status::Ok, "{}", status(&v3, Some(2)).1);
    }

    #[test]
    fn debians_stock_config_has_no_moat_handler() {
        // Input: Debian 12's /etc/containerd/config.toml as shipped.
        let stock = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";
        let (s, msg) = status(stock, Some(1));
        assert_eq!(s, Status::Missing);
        assert!(msg.contains("runtimes.moat") && msg.contains("README"), "{msg}");
    }

    #[test]
    fn only_moat_declared_disables_cri_and_is_reported() {
        // Input: the old README snippet alone (no runc).
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat]\n  runtime_type = \"io.containerd.moat.v2\"\n";
        let (s, msg) = status(text, Some(1));
        assert_eq!(s, Status::Missing);
        assert!(
            msg.contains("default_runtime_name = \"runc\"") && msg.contains("runtimes.runc"),
            "{msg}"
        );
    }

    #[test]
    fn broken_files_and_wrong_shapes_are_missing() {
        // Input: duplicated tables (the README snippet appended to a file that has them).
        let dup = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n[plugins.\"io.containerd.grpc.v1.cri\"]\n";
        let (s, msg) = status(dup, None);
        assert_eq!(s, Status::Missing);
        assert!(msg.contains("not valid TOML") && msg.contains("config dump"), "{msg}");
        // Input: no version (containerd reads it as version 1).
        let (s, msg) = status("[plugins.cri]\n", None);
        assert_eq!(s, Status::Missing);
        assert!(msg.contains("version 1"), "{msg}");
        // Input: a moat handler of the wrong type, and one with SystemdCgroup.
        let cri = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes";
        let wrong = format!("version = 2\n{cri}.runc]\nruntime_type = \"io.containerd.runc.v2\"\n{cri}.moat]\nruntime_type = \"io.containerd.runc.v2\"\n");
        assert!(status(&wrong, None).1.contains("runtime_type"));
        let systemd = format!("version = 2\n{cri}.runc]\nruntime_type = \"io.containerd.runc.v2\"\n{cri}.moat]\nruntime_type = \"io.containerd.moat.v2\"\n{cri}.moat.options]\nSystemdCgroup = true\n");
        assert!(status(&systemd, None).1.contains("SystemdCgroup"));
    }

    #[test]
    fn options_on_containerd_2_are_a_warning() {
        // Input: a version = 3 config whose moat handler keeps ConfigPath.
        let cri = "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes";
        let text = format!("version = 3\nroot = \"/srv/ctd\"\n{cri}.runc]\nruntime_type = \"io.containerd.runc.v2\"\n{cri}.moat]\nruntime_type = \"io.containerd.moat.v2\"\n{cri}.moat.options]\nConfigPath = \"/etc/moat/config.toml\"\n");
        let r = handler(&text, Path::new("c.toml"), Some(2));
        assert_eq!(r.findings[0].status, Status::Warn);
        assert!(r.findings[0].fix.contains("hostUsers: false"), "{:?}", r.findings);
        assert_eq!(r.root, PathBuf::from("/srv/ctd"));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(
            parse_version(
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
            ),
            Some((1, 6))
        );
        assert_eq!(
            parse_version("containerd github.com/containerd/containerd/v2 v2.2.7 1e4f5b1"),
            Some((2, 2))
        );
        assert_eq!(parse_version("nonsense"), None);
    }
}
