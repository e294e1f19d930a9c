//! `containerd-shim-moat-v2 config merge|remove --config FILE`: the installer's edits of
//! containerd's config (`deploy/install.sh` runs them): merge prints the file with the `moat`
//! handler added — `runc` kept declared as the default runtime — and remove prints it with the
//! handler taken out. Both print to stdout and change nothing on disk: the installer keeps the
//! backup, validates the result with `containerd config dump` and moves it into place.
//! With `--k3s-template N` the file is k3s's `config.toml.tmpl` (a Go template), to which only
//! the handler is appended (`merge_k3s_template`).

mod merge;

use std::path::PathBuf;

use merge::{merge, merge_k3s_template, remove, remove_k3s_template, MergeOptions};

const USAGE: &str = "usage: config merge --config FILE [--moat-config PATH] \
                     [--restrict-oom-score-adj] [--k3s-template VERSION] | config remove --config \
                     FILE [--k3s-template VERSION]";

/// Runs `config ARGS`; the exit code (0 done, 1 the file cannot be merged, 2 bad usage).
pub fn run(args: &[String]) -> i32 {
    let Some((verb, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return 2;
    };
    let mut config: Option<PathBuf> = None;
    let mut options = MergeOptions::default();
    // k3s's config.toml.tmpl (a Go template) for containerd config version N.
    let mut k3s_template: Option<i64> = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => config = it.next().map(PathBuf::from),
            "--moat-config" => match it.next() {
                Some(p) => options.moat_config = p.clone(),
                None => {
                    eprintln!("--moat-config needs a value; {USAGE}");
                    return 2;
                }
            },
            "--restrict-oom-score-adj" => options.restrict_oom_score_adj = true,
            "--k3s-template" => match it.next().and_then(|v| v.parse().ok()) {
                Some(v) => k3s_template = Some(v),
                None => {
                    eprintln!("--k3s-template needs a config version (2 or 3); {USAGE}");
                    return 2;
                }
            },
            other => {
                eprintln!("unknown argument {other:?}; {USAGE}");
                return 2;
            }
        }
    }
    let Some(config) = config else {
        eprintln!("--config FILE is required; {USAGE}");
        return 2;
    };
    let text = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", config.display());
            return 1;
        }
    };
    let result = match (verb.as_str(), k3s_template) {
        ("merge", None) => merge(&text, &options),
        ("merge", Some(version)) => merge_k3s_template(&text, version, &options),
        ("remove", None) => remove(&text),
        ("remove", Some(_)) => Ok(remove_k3s_template(&text)),
        (other, _) => {
            eprintln!("unknown verb {other:?}; {USAGE}");
            return 2;
        }
    };
    match result {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            1
        }
    }
}
