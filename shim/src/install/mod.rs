//! `containerd-shim-moat-v2 config merge|remove --config FILE`: the installer's edits of
//! containerd's config (`deploy/install.sh` runs them): merge prints the file with the `moat`
//! handler added — `runc` kept declared as the default runtime — and remove prints it with the
//! handler taken out. Both print to stdout and change nothing on disk: the installer keeps the
//! backup, validates the result with `containerd config dump` and moves it into place.

mod merge;

use std::path::PathBuf;

use merge::{merge, remove, MergeOptions};

const USAGE: &str = "usage: config merge --config FILE [--moat-config PATH] \
                     [--restrict-oom-score-adj] | config remove --config FILE";

/// Runs `config ARGS`; the exit code (0 done, 1 the file cannot be merged, 2 bad usage).
pub fn run(args: &[String]) -> i32 {
    let Some((verb, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return 2;
    };
    let mut config: Option<PathBuf> = None;
    let mut options = MergeOptions::default();
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
    let result = match verb.as_str() {
        "merge" => merge(&text, &options),
        "remove" => remove(&text),
        other => {
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
