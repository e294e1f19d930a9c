//! moat's own share of a container start against the bare-namespaces floor, measured in a
//! child process of moat-bench (`moat-bench __moat_bench_share N [SHIM]`): it must be a child
//! subreaper that reaps every child itself, which the main process (with its CRI client and
//! the `ctr`/`gcc` children of the test bed) cannot be. Starts alternate: moat, bare, moat, ...
//!
//! It also times what every moat shim does once at start: sealing the binary the helpers are
//! executed from (a read-only overlay view, `SealedExe::open`), against the sealed memfd copy
//! of the shim binary the shim used to make.

mod bare;
mod fixture;
mod moat;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use moat_sandbox::spawn::Launcher;
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use serde::{Deserialize, Serialize};

/// argv[1] of the child process.
pub const SUBCOMMAND: &str = "__moat_bench_share";

/// Host uid/gid the container's root maps to in these starts (outside the ranges moat's
/// pool hands out to the test bed's pods).
const HOST_BASE: u32 = 3_500_000_000;

/// What the child measured, in milliseconds per start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShareResult {
    pub moat_total_ms: Vec<f64>,
    pub moat_cgroup_ms: Vec<f64>,
    pub moat_create_ms: Vec<f64>,
    pub moat_start_ms: Vec<f64>,
    pub bare_ms: Vec<f64>,
    /// The bare start with a new cgroup (v1 hierarchies + v2) created and joined.
    pub bare_cgroup_ms: Vec<f64>,
    /// Sealed memfd copies of the shim binary (what a shim did once at start before issue 11).
    pub memfd_copy_ms: Vec<f64>,
    /// `SealedExe::open`: the overlay view a shim makes once at start now.
    pub overlay_seal_ms: Vec<f64>,
    /// libseccomp building moat's baseline filter into BPF, which the shim does once per
    /// distinct filter and caches (`seccomp::precompile`); starts load the finished program.
    pub seccomp_compile_ms: Vec<f64>,
    pub shim_binary_bytes: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the child with `iterations` starts of each kind; `shim` is the binary whose memfd
/// copy is timed.
pub fn measure(iterations: usize, shim: Option<&Path>) -> Result<ShareResult> {
    let exe = std::env::current_exe().context("locating moat-bench")?;
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND).arg(iterations.to_string());
    if let Some(shim) = shim {
        cmd.arg(shim);
    }
    let out = cmd.output().context("running the moat-bench share child")?;
    if !out.status.success() {
        bail!(
            "the share child failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!("parsing the share child's output {:?}", String::from_utf8_lossy(&out.stdout))
    })
}

/// The child: measures, prints the JSON result, exits.
pub fn child_main(args: &[String]) -> ! {
    match child(args) {
        Ok(result) => match serde_json::to_string(&result) {
            Ok(json) => {
                println!("{json}");
                std::process::exit(0)
            }
            Err(e) => {
                eprintln!("moat-bench share: {e}");
                std::process::exit(1)
            }
        },
        Err(e) => {
            eprintln!("moat-bench share: {e:#}");
            std::process::exit(1)
        }
    }
}

fn child(args: &[String]) -> Result<ShareResult> {
    let iterations: usize =
        args.first().context("usage: __moat_bench_share N [SHIM]")?.parse().context("N")?;
    let shim = args.get(1).map(Path::new);
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    let fx = fixture::Fixture::new()?;
    let launcher = Launcher::new().context("Launcher::new")?;
    let cgroups = moat_sandbox::cgroups::Layout::detect().ok();
    let cgroup_parent = format!("/moat-bench/share-{}", std::process::id());
    let mut r = ShareResult::default();
    if let Some(shim) = shim {
        r.shim_binary_bytes =
            std::fs::metadata(shim).with_context(|| format!("stat {}", shim.display()))?.len();
        for _ in 0..iterations.max(5) {
            r.memfd_copy_ms.push(ms(sealed_copy(shim)?));
        }
    }
    for _ in 0..iterations.max(5) {
        let t = Instant::now();
        let (seal, fallback) = moat_sandbox::spawn::SealedExe::open()?;
        r.overlay_seal_ms.push(ms(t.elapsed()));
        if let Some(why) = fallback {
            bail!("no overlay view of the binary ({why}): got {:?}", seal.seal());
        }
    }
    for _ in 0..iterations.max(5) {
        let t = Instant::now();
        let ctx = moat_sandbox::seccomp::compile(&moat_sandbox::seccomp::baseline())?;
        let out = File::from(memfd_create(c"moat-bench-bpf", MFdFlags::MFD_CLOEXEC)?);
        ctx.export_bpf(&out).context("generating the baseline's BPF")?;
        r.seccomp_compile_ms.push(ms(t.elapsed()));
        if out.metadata()?.len() == 0 {
            bail!("libseccomp generated an empty filter");
        }
    }
    // One untimed start of each kind warms the page cache and the helper binary.
    moat::start_once(&launcher, cgroups.as_ref(), &cgroup_parent, &fx, 0, HOST_BASE)?;
    bare::start_once(&fx.lower, HOST_BASE, None)?;
    for n in 1..=iterations {
        let m = moat::start_once(&launcher, cgroups.as_ref(), &cgroup_parent, &fx, n, HOST_BASE)?;
        r.moat_total_ms.push(ms(m.total()));
        r.moat_cgroup_ms.push(ms(m.cgroup));
        r.moat_create_ms.push(ms(m.create));
        r.moat_start_ms.push(ms(m.start));
        r.bare_ms.push(ms(bare::start_once(&fx.lower, HOST_BASE, None)?));
        if let Some(layout) = &cgroups {
            let path = format!("{cgroup_parent}/bare{n}");
            r.bare_cgroup_ms.push(ms(bare::start_once(
                &fx.lower,
                HOST_BASE,
                Some((layout, &path)),
            )?));
        }
    }
    for dir in moat_e2e::host::cgroup_tree(cgroup_parent.trim_start_matches('/')) {
        let _ = std::fs::remove_dir(dir);
    }
    Ok(r)
}

/// What a shim did once at start up to moat 0.1: memfd_create, copy the binary, seal it.
fn sealed_copy(binary: &Path) -> Result<Duration> {
    let t = Instant::now();
    let mut src = File::open(binary).with_context(|| format!("open {}", binary.display()))?;
    let memfd = memfd_create(c"moat-bench", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let mut copy = File::from(memfd);
    std::io::copy(&mut src, &mut copy)?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(copy.as_fd(), FcntlArg::F_ADD_SEALS(seals))?;
    Ok(t.elapsed())
}
