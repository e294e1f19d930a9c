//! The cgroup v2 device program (`cgroups::device_filter` + `cgroups::bpf`) against the real
//! kernel. Needs root and a cgroup v2 hierarchy (pure v2, or hybrid's unified one).
//!
//! The attack: a process (host root, with CAP_MKNOD) opens device nodes made with mknod in a
//! temporary directory. In a v2 cgroup with moat's program and no v1 device restriction, the
//! nodes the rules do not list fail with EPERM, the listed one works; removing the cgroup frees
//! the program.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use moat_sandbox::cgroups::bpf;
use moat_sandbox::cgroups::device_filter::{
    DevType, DeviceRules, Rule, ACC_MKNOD, ACC_READ, ACC_WRITE,
};
use moat_sandbox::cgroups::{Cgroup, Layout};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder};

fn v2_mount() -> Result<PathBuf> {
    ensure!(nix::unistd::geteuid().is_root(), "the device program tests need root");
    let layout = Layout::detect()?;
    layout.v2_mount().map(Path::to_path_buf).context("no cgroup v2 hierarchy on this machine")
}

/// (major, minor) of a block device this process can open: the first of /sys/block whose node
/// opens (some machines refuse even host root the disk holding `/`; the control run below
/// needs a node that opens without the program).
fn openable_block_device() -> Result<(u64, u64)> {
    let probe = PathBuf::from(format!("/var/tmp/moat-devprog-{}-probe", std::process::id()));
    let mut names: Vec<_> = std::fs::read_dir("/sys/block")?.flatten().map(|e| e.path()).collect();
    names.sort();
    for dev in names {
        let Ok(text) = std::fs::read_to_string(dev.join("dev")) else { continue };
        let Some((ma, mi)) = text.trim().split_once(':') else { continue };
        let (Ok(ma), Ok(mi)) = (ma.parse::<u64>(), mi.parse::<u64>()) else { continue };
        let _ = std::fs::remove_file(&probe);
        mknod(&probe, SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), makedev(ma, mi))?;
        let opens = std::fs::File::open(&probe).is_ok();
        let _ = std::fs::remove_file(&probe);
        if opens {
            return Ok((ma, mi));
        }
    }
    bail!("no block device in /sys/block opens here")
}

/// A temporary directory (on a filesystem without nodev) holding device nodes.
struct Nodes(PathBuf);

impl Nodes {
    fn new(test: &str, nodes: &[(&str, SFlag, u64, u64)]) -> Result<Nodes> {
        let dir = PathBuf::from(format!("/var/tmp/moat-devprog-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let n = Nodes(dir);
        for (name, kind, ma, mi) in nodes {
            mknod(&n.0.join(name), *kind, Mode::from_bits_truncate(0o600), makedev(*ma, *mi))
                .with_context(|| format!("mknod {name}"))?;
        }
        Ok(n)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sh -c 'read x; SCRIPT'` in `dir`: waits on stdin so it can be moved into a cgroup first.
struct Gated {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Gated {
    fn spawn(dir: &Path, script: &str) -> Result<Gated> {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read x; {script}"))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn sh")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Gated { child, stdout })
    }
    fn run_in(cgroup_procs: &[PathBuf], dir: &Path, script: &str) -> Result<Vec<String>> {
        let mut g = Gated::spawn(dir, script)?;
        for procs in cgroup_procs {
            std::fs::write(procs, g.child.id().to_string())
                .with_context(|| format!("write to {}", procs.display()))?;
        }
        let stdin = g.child.stdin.as_mut().context("stdin")?;
        stdin.write_all(b"go\n")?;
        stdin.flush()?;
        let mut lines = Vec::new();
        let mut line = String::new();
        while g.stdout.read_line(&mut line)? > 0 {
            lines.push(line.trim_end().to_string());
            line.clear();
        }
        g.child.wait()?;
        Ok(lines)
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// For each node, `NAME MODE open`, or `NAME MODE refused` and the shell's error indented.
fn open_script(attempts: &[(&str, &str)]) -> String {
    attempts
        .iter()
        .map(|(name, redirect)| {
            format!(
                "if err=$( (exec 3{redirect}{name}) 2>&1 ); then echo '{name} {redirect} open'; \
                 else echo '{name} {redirect} refused'; echo \"  $err\"; fi"
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn rmdir_retrying(dir: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e).with_context(|| format!("rmdir {}", dir.display())),
        }
    }
}

/// The kernel frees a detached program once its last reference (the cgroup's) is gone, which
/// happens asynchronously after the rmdir.
fn wait_freed(id: u32) -> Result<()> {
    let start = Instant::now();
    while bpf::program_by_id(id)?.is_some() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("device program {id} still exists 20 s after its cgroup was removed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn a_v2_device_program_denies_unlisted_nodes_with_eperm() -> Result<()> {
    let v2 = v2_mount()?;
    let (disk_major, disk_minor) = openable_block_device()?;
    let nodes = Nodes::new(
        "eperm",
        &[
            ("null", SFlag::S_IFCHR, 1, 3),
            ("zero", SFlag::S_IFCHR, 1, 5),
            ("disk", SFlag::S_IFBLK, disk_major, disk_minor),
        ],
    )?;
    let dir = v2.join(format!("moat-test-{}-devprog", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let procs = vec![dir.join("cgroup.procs")];
    let result = (|| -> Result<u32> {
        let attempts = [("null", "<>"), ("disk", "<"), ("zero", "<")];
        // Control: in the same cgroup without the program, every node opens (so nothing else,
        // such as a v1 devices cgroup, stands in the way).
        let before = Gated::run_in(&procs, &nodes.0, &open_script(&attempts))?;
        for name in ["null <> open", "disk < open", "zero < open"] {
            ensure!(before.iter().any(|l| l == name), "without the program: {before:?}");
        }
        // Only c 1:5 allowed.
        let mut rules = DeviceRules::deny_all();
        rules.apply(&Rule {
            allow: true,
            typ: Some(DevType::Char),
            major: Some(1),
            minor: Some(5),
            access: ACC_MKNOD | ACC_READ | ACC_WRITE,
        });
        let program = bpf::load_device_program(&rules.program())
            .map_err(|e| anyhow::anyhow!("load: {} {}", e.errno, e.log))?;
        let (id, name) = bpf::program_info(program.as_fd())?;
        ensure!(name == bpf::PROGRAM_NAME, "{name}");
        let cgroup = std::fs::File::open(&dir)?;
        bpf::attach_device_program(program.as_fd(), cgroup.as_fd())?;
        drop(program);
        ensure!(bpf::attached_device_programs(cgroup.as_fd())? == vec![id]);

        let mut script = open_script(&attempts);
        script.push_str(&format!(
            "; if mknod disk2 b {disk_major} {disk_minor} 2>/dev/null; then echo 'mknod ok'; \
             else echo 'mknod refused'; echo \"  $(mknod disk3 b {disk_major} {disk_minor} 2>&1)\"; fi; \
             head -c 4 zero | wc -c"
        ));
        let after = Gated::run_in(&procs, &nodes.0, &script)?;
        eprintln!("with the program: {after:#?}");
        for expected in ["null <> refused", "disk < refused", "zero < open", "mknod refused", "4"] {
            ensure!(after.iter().any(|l| l == expected), "missing {expected:?}: {after:?}");
        }
        let errors: Vec<&String> = after.iter().filter(|l| l.starts_with("  ")).collect();
        ensure!(
            errors.len() == 3 && errors.iter().all(|l| l.contains("Operation not permitted")),
            "the refusals are not EPERM: {errors:?}"
        );
        Ok(id)
    })();
    let removed = rmdir_retrying(&dir);
    let id = result?;
    removed?;
    // No leak: the cgroup's removal released the program.
    wait_freed(id)
}

#[test]
fn create_attaches_one_program_and_destroy_frees_it() -> Result<()> {
    let v2 = v2_mount()?;
    let layout = Layout::detect()?;
    let nodes =
        Nodes::new("create", &[("mem", SFlag::S_IFCHR, 1, 1), ("null", SFlag::S_IFCHR, 1, 3)])?;
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .typ(LinuxDeviceType::A)
        .access("rwm")
        .build()?;
    let r = LinuxResourcesBuilder::default().devices(vec![deny_all]).build()?;
    let path = format!("/moat-test-{}-devcreate/c", std::process::id());
    let cg = Cgroup::create(&layout, &path, Some(&r))?;
    let result = (|| -> Result<Vec<u32>> {
        let dir = cg.v2_dir().context("v2 dir")?.to_path_buf();
        ensure!(dir.starts_with(&v2));
        let attached = |dir: &Path| -> Result<Vec<u32>> {
            Ok(bpf::attached_device_programs(std::fs::File::open(dir)?.as_fd())?)
        };
        let first = attached(&dir)?;
        ensure!(first.len() == 1, "{first:?}");
        // Creating again on the existing leaf replaces moat's program instead of stacking one.
        let again = Cgroup::create(&layout, &path, Some(&r))?;
        let second = attached(&dir)?;
        ensure!(second.len() == 1 && second != first, "{first:?} then {second:?}");
        wait_freed(first[0])?;
        drop(again);
        let out = Gated::run_in(
            &cg.procs_files(),
            &nodes.0,
            &open_script(&[("mem", "<"), ("null", "<>")]),
        )?;
        ensure!(out.iter().any(|l| l == "mem < refused"), "{out:?}");
        ensure!(out.iter().any(|l| l == "null <> open"), "{out:?}");
        Ok(second)
    })();
    let destroyed = cg.destroy();
    let ids = result?;
    destroyed?;
    for id in ids {
        wait_freed(id)?;
    }
    Ok(())
}
