//! `moat-bench __moat_bench_filter VARIANT PROGRAM [ARGS...]`: loads a seccomp filter into
//! itself, then execs PROGRAM (the in-pod workload, say) on the host. Separates the filter's
//! cost per syscall from everything else a container changes. Variants:
//! - `none`: no filter;
//! - `baseline`: moat's baseline, compiled and loaded as the sandbox does;
//! - `baseline-tree`: the same with libseccomp's binary-tree optimisation;
//! - `allow-all`: a filter that allows everything (the cost of having a filter at all).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use anyhow::{bail, Context, Result};
use libseccomp::{ScmpAction, ScmpFilterAttr, ScmpFilterContext};

pub const SUBCOMMAND: &str = "__moat_bench_filter";

pub fn main(args: &[String]) -> ! {
    let e = run(args).unwrap_err();
    eprintln!("moat-bench filter probe: {e:#}");
    std::process::exit(1)
}

fn run(args: &[String]) -> Result<std::convert::Infallible> {
    let [variant, program, rest @ ..] = args else {
        bail!("usage: {SUBCOMMAND} VARIANT PROGRAM [ARGS...]")
    };
    match variant.as_str() {
        "none" => {}
        // The plain baseline notifies nothing: no listener comes back.
        "baseline" => drop(moat_sandbox::seccomp::load(&moat_sandbox::seccomp::baseline())?),
        "baseline-tree" => {
            let mut ctx = moat_sandbox::seccomp::compile(&moat_sandbox::seccomp::baseline())?;
            ctx.set_filter_attr(ScmpFilterAttr::CtlOptimize, 2)?;
            ctx.load()?;
        }
        "allow-all" => ScmpFilterContext::new(ScmpAction::Allow)?.load()?,
        other => bail!("unknown variant {other:?}"),
    }
    let argv: Vec<CString> = std::iter::once(program)
        .chain(rest)
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("NUL in an argument")?;
    let program = CString::new(std::path::Path::new(program).as_os_str().as_bytes())?;
    let env: Vec<CString> = Vec::new();
    match nix::unistd::execve(&program, &argv, &env) {
        Ok(never) => match never {},
        Err(e) => bail!("execve {program:?}: {e}"),
    }
}
