//! Command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::workload::Iterations;

pub const USAGE: &str = "\
moat-bench: moat against runc under the test bed's private containerd (run as root)

usage: moat-bench [--quick] [--pods N] [--execs N] [--burst-pods N] [--burst-parallel N]
                  [--workload-runs N] [--share-iterations N] [--scale-pods N] [--soak-execs N]
                  [--skip PHASE]... [--json PATH]

  --quick               short run for CI: 3 pods, 6 pods 3 at a time, 1 short workload run,
                        no scale or soak phase (unless their count is given)
  --pods N              pods per handler for the lifecycle rows (default 20)
  --execs N             ExecSync `true` round trips per pod (default 5)
  --burst-pods N        pods per handler started concurrently (default 50)
  --burst-parallel N    how many at a time (default 10)
  --workload-runs N     in-pod loop runs per handler (default 9)
  --share-iterations N  moat and bare-namespaces starts in the micro-benchmark (default 20)
  --scale-pods N        pods per handler started one by one and kept up (default 100): the
                        1st-10th starts against the last ten
  --soak-execs N        ExecSync `true` in one pod per handler, shim memory before/after
                        (default 1000)
  --skip PHASE          skip lifecycle, workload, burst, share, scale or soak
  --json PATH           where to write the JSON report (default target/moat-bench.json)

moat-bench long-run --help: the long run (pod cycles and ExecSync, leak counters; not in CI)
";

#[derive(Debug, Clone, Serialize)]
pub struct Options {
    pub quick: bool,
    pub pods: usize,
    pub execs: usize,
    pub burst_pods: usize,
    pub burst_parallel: usize,
    pub workload_runs: usize,
    #[serde(skip)]
    pub iterations: Iterations,
    pub share_iterations: usize,
    /// 0: no scale phase.
    pub scale_pods: usize,
    /// 0: no soak phase.
    pub soak_execs: usize,
    pub skip: Vec<String>,
    pub json: PathBuf,
}

pub const PHASES: &[&str] = &["lifecycle", "workload", "burst", "share", "scale", "soak"];

impl Options {
    /// `None` for --help.
    pub fn parse(args: &[String]) -> Result<Option<Options>> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Options {
            quick,
            pods: if quick { 3 } else { 20 },
            execs: if quick { 2 } else { 5 },
            burst_pods: if quick { 6 } else { 50 },
            burst_parallel: if quick { 3 } else { 10 },
            workload_runs: if quick { 1 } else { 9 },
            iterations: if quick { Iterations::quick() } else { Iterations::full() },
            share_iterations: if quick { 5 } else { 20 },
            scale_pods: if quick { 0 } else { 100 },
            soak_execs: if quick { 0 } else { 1000 },
            skip: Vec::new(),
            json: moat_e2e::paths::target_dir().join("moat-bench.json"),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => {}
                "-h" | "--help" => return Ok(None),
                "--pods" => o.pods = count(&mut it, "--pods")?,
                "--execs" => o.execs = count(&mut it, "--execs")?,
                "--burst-pods" => o.burst_pods = count(&mut it, "--burst-pods")?,
                "--burst-parallel" => o.burst_parallel = count(&mut it, "--burst-parallel")?,
                "--workload-runs" => o.workload_runs = count(&mut it, "--workload-runs")?,
                "--share-iterations" => o.share_iterations = count(&mut it, "--share-iterations")?,
                "--scale-pods" => {
                    o.scale_pods = count(&mut it, "--scale-pods")?;
                    if o.scale_pods < 20 {
                        bail!("--scale-pods must be at least 20 (its rows compare the first ten with the last ten)");
                    }
                }
                "--soak-execs" => o.soak_execs = count(&mut it, "--soak-execs")?,
                "--json" => o.json = PathBuf::from(value(&mut it, "--json")?),
                "--skip" => {
                    let phase = value(&mut it, "--skip")?;
                    if !PHASES.contains(&phase.as_str()) {
                        bail!("--skip {phase:?}: the phases are {PHASES:?}");
                    }
                    o.skip.push(phase.clone());
                }
                other => bail!("unknown argument {other:?}\n\n{USAGE}"),
            }
        }
        Ok(Some(o))
    }

    pub fn runs(&self, phase: &str) -> bool {
        let sized = match phase {
            "scale" => self.scale_pods > 0,
            "soak" => self.soak_execs > 0,
            _ => true,
        };
        sized && !self.skip.iter().any(|s| s == phase)
    }
}

/// The value after flag `name` (the iterator stands on the flag).
pub fn value<'a>(it: &mut std::slice::Iter<'a, String>, name: &str) -> Result<&'a String> {
    it.next().with_context(|| format!("{name} needs a value"))
}

/// The count after flag `name`: a whole number, at least 1.
pub fn count(it: &mut std::slice::Iter<'_, String>, name: &str) -> Result<usize> {
    let v = value(it, name)?;
    let n: usize = v.parse().with_context(|| format!("{name} {v:?}: not a number"))?;
    if n == 0 {
        bail!("{name} must be at least 1");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>> {
        Options::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn quick_shrinks_every_phase_and_explicit_counts_win() {
        let o = parse(&["--pods", "7", "--quick"]).expect("parsed").expect("not help");
        assert!(o.quick);
        assert_eq!((o.pods, o.burst_pods, o.burst_parallel, o.workload_runs), (7, 6, 3, 1));
        assert!(!o.runs("scale") && !o.runs("soak") && o.runs("burst"));
        let o = parse(&[]).expect("parsed").expect("not help");
        assert_eq!((o.pods, o.burst_pods, o.burst_parallel), (20, 50, 10));
        assert_eq!((o.scale_pods, o.soak_execs), (100, 1000));
        assert!(o.runs("scale") && o.runs("soak"));
        let o = parse(&["--quick", "--soak-execs", "30"]).expect("parsed").expect("not help");
        assert!(o.runs("soak") && !o.runs("scale"));
    }

    #[test]
    fn bad_arguments_are_refused_with_the_reason() {
        // Input: a count of zero, a non-number, an unknown phase, an unknown flag, a missing value.
        for (args, want) in [
            (&["--pods", "0"][..], "at least 1"),
            (&["--pods", "x"][..], "not a number"),
            (&["--scale-pods", "10"][..], "at least 20"),
            (&["--skip", "everything"][..], "phases"),
            (&["--fast"][..], "unknown argument"),
            (&["--json"][..], "needs a value"),
        ] {
            let err = parse(args).expect_err("refused");
            assert!(format!("{err:#}").contains(want), "{args:?}: {err:#}");
        }
        assert!(parse(&["--help"]).expect("parsed").is_none());
    }
}
