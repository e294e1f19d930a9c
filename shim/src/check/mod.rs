//! `containerd-shim-moat-v2 check [--config FILE] [--containerd BINARY]`: the preflight an
//! operator runs on a node before pods are sent to it. Prints one line per requirement
//! (`ok`, `warn` or `missing`, what was found) and, when not ok, the fix; exits 1 when a
//! requirement is missing.
//!
//! The kernel probes (user namespaces, idmapped overlay layers, cgroups, seccomp) live in
//! `moat_sandbox::host_support`; this module adds containerd's version and config and moat's
//! own config. It must run before any thread is started (the probes fork).

mod containerd;

use std::path::{Path, PathBuf};

use moat_sandbox::host_support::{self, Finding, Status};
use moat_sandbox::policy::Config;

const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const MOAT_CONFIG: &str = "moat config";

/// The command-line options of `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    config: PathBuf,
    containerd: PathBuf,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        config: PathBuf::from(DEFAULT_CONTAINERD_CONFIG),
        containerd: PathBuf::from("containerd"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next().map(PathBuf::from).ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--config" | "-c" => options.config = value("--config")?,
            "--containerd" => options.containerd = value("--containerd")?,
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: check [--config CONTAINERD_CONFIG] \
                     [--containerd BINARY]"
                ))
            }
        }
    }
    Ok(options)
}

/// Runs every check, prints the findings; the exit code (1 when something is missing, 2 on a
/// bad command line).
pub fn run(args: &[String]) -> i32 {
    let options = match parse_args(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("containerd-shim-moat-v2 check: {e}");
            return 2;
        }
    };
    let findings = findings(&options);
    for f in &findings {
        println!("{}", render(f));
    }
    let missing = findings.iter().filter(|f| f.status == Status::Missing).count();
    if missing == 0 {
        println!("node ready for moat");
        0
    } else {
        println!("{missing} requirement(s) missing: pods under moat will fail on this node");
        1
    }
}

/// `ok      name: detail` and, when not ok, an indented `fix:` line.
pub fn render(f: &Finding) -> String {
    let mut line = format!("{:<8}{}: {}", f.status.as_str(), f.name, f.detail);
    if f.status != Status::Ok && !f.fix.is_empty() {
        line.push_str(&format!("\n        fix: {}", f.fix));
    }
    line
}

fn findings(options: &Options) -> Vec<Finding> {
    let (version, containerd_version) = containerd::version(&options.containerd);
    let config_report = match std::fs::read_to_string(&options.config) {
        Ok(text) => containerd::handler(&text, &options.config, containerd_version.map(|v| v.0)),
        Err(e) => containerd::ConfigReport {
            findings: vec![Finding::missing(
                containerd::HANDLER,
                format!("cannot read {}: {e}", options.config.display()),
                "pass containerd's config with --config FILE",
            )],
            root: PathBuf::from("/var/lib/containerd"),
            moat_config_path: None,
        },
    };
    let mut out = vec![host_support::user_namespaces()];
    // The idmap probe runs where containerd keeps its snapshots (their filesystem must support
    // idmapped mounts), else in /var/tmp.
    let base = [config_report.root.as_path(), Path::new("/var/tmp")]
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/tmp"))
        .to_path_buf();
    out.push(host_support::idmapped_overlay(&base));
    out.push(host_support::cgroups());
    let (seccomp, notify) = host_support::seccomp();
    out.push(seccomp);
    out.push(notify);
    out.push(version);
    out.extend(config_report.findings);
    out.push(moat_config(config_report.moat_config_path.as_deref()));
    out
}

/// moat's own config (the handler's `ConfigPath`, else /etc/moat/config.toml, else defaults)
/// must load: a pod is refused when it does not.
fn moat_config(path: Option<&Path>) -> Finding {
    match Config::load(path) {
        Ok(config) => {
            Finding::ok(MOAT_CONFIG, format!("{} (level {})", config.source, config.level))
        }
        Err(e) => Finding::missing(
            MOAT_CONFIG,
            e.to_string(),
            "fix the file; docs/config.example.toml documents every key",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_parsed_and_unknown_ones_refused() {
        let o = parse_args(&["--config".into(), "/x.toml".into()]).expect("parses");
        assert_eq!(o.config, PathBuf::from("/x.toml"));
        assert_eq!(o.containerd, PathBuf::from("containerd"));
        assert!(parse_args(&["--config".into()]).expect_err("no value").contains("needs a value"));
        assert!(parse_args(&["--bogus".into()]).expect_err("unknown").contains("--bogus"));
    }

    #[test]
    fn findings_render_with_their_fix() {
        let f = Finding::missing("cgroups", "memory missing", "enable it");
        assert_eq!(render(&f), "missing cgroups: memory missing\n        fix: enable it");
        assert_eq!(render(&Finding::ok("seccomp filters", "x")), "ok      seccomp filters: x");
    }

    #[test]
    fn an_unreadable_moat_config_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("moat.toml");
        std::fs::write(&bad, "level = \"nope\"\n").expect("write");
        let f = moat_config(Some(&bad));
        assert_eq!(f.status, Status::Missing);
        assert!(f.detail.contains("moat.toml"), "{}", f.detail);
    }
}
