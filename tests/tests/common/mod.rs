//! Shared by the confinement and policy refusal tests: the attack program
//! (`tests/attack/attack.c`), compiled once per test process and mounted read-only into
//! containers at `/attack`, and the reading of its verdicts.
//!
//! `attack MODE ...` prints `MODE: ok ...` when the attempt succeeded and
//! `MODE: ERRNAME (text) at STEP` when the kernel refused it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_cri::v1::ContainerConfig;
use moat_e2e::{configs, paths, Container, ExecOutput, Pod, TestBed};
use sha2::{Digest, Sha256};

/// The attack program's source.
pub const ATTACK_C: &str = include_str!("../../attack/attack.c");
/// Where containers see the attack program.
pub const ATTACK: &str = "/attack/attack";

/// Declares, for each `fn name(bed: &TestBed, handler: &str) -> anyhow::Result<()>` listed,
/// a module `name` with one test, `name::moat`: for what only moat does (policy refusals).
#[macro_export]
macro_rules! moat_only_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn moat() {
                    moat_e2e::run_e2e(concat!(stringify!($name), "::moat"), "moat", super::$name);
                }
            }
        )*
    };
}

/// The attack program, compiled once (`gcc -static`) into `target/moat-e2e-attack/<hash>/`.
pub fn attack_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build_attack().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!("building the attack program: {e}"))
}

fn build_attack() -> Result<PathBuf> {
    let hash: String =
        Sha256::digest(ATTACK_C.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = paths::target_dir().join("moat-e2e-attack").join(hash);
    let bin = dir.join("attack");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let src = dir.join(format!("attack-{}.c", std::process::id()));
    std::fs::write(&src, ATTACK_C).with_context(|| format!("writing {}", src.display()))?;
    let tmp = dir.join(format!("attack-{}", std::process::id()));
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .context("running gcc (needs gcc and libc6-dev)")?;
    let _ = std::fs::remove_file(&src);
    if !out.status.success() {
        bail!("gcc -static tests/attack/attack.c failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::rename(&tmp, &bin).with_context(|| format!("moving {} into place", bin.display()))?;
    Ok(bin)
}

/// A new volume directory (under the bed's allowed volumes dir) holding the attack program.
pub fn attack_volume(bed: &TestBed) -> Result<PathBuf> {
    let bin = attack_binary()?;
    let dir = bed.volume_dir("attack")?;
    let dest = dir.join("attack");
    std::fs::copy(&bin, &dest)
        .with_context(|| format!("copying {} to {}", bin.display(), dest.display()))?;
    Ok(dir)
}

/// Adds the attack volume (read-only at /attack) to a container config.
pub fn mount_attack(config: &mut ContainerConfig, volume: &Path) {
    config.mounts.push(configs::volume(volume, "/attack", true));
}

/// Creates and starts a container `sleep 3600` with the attack program mounted, after
/// `adjust` changed its config.
pub fn sleeper(
    pod: &Pod,
    name: &str,
    attack: &Path,
    adjust: impl FnOnce(&mut ContainerConfig),
) -> Result<Container> {
    let mut config = pod.container_config(name, &["sleep", "3600"]);
    mount_attack(&mut config, attack);
    adjust(&mut config);
    let c = pod.create(&config)?;
    pod.start(&c)?;
    Ok(c)
}

/// Creates and starts a container `sleep 3600` with the host directory `shared` (one several
/// pods write, like /tmp) mounted read-write at /shared.
pub fn sleeper_sharing(pod: &Pod, name: &str, shared: &Path) -> Result<Container> {
    let mut config = pod.container_config(name, &["sleep", "3600"]);
    config.mounts.push(configs::volume(shared, "/shared", false));
    let c = pod.create(&config)?;
    pod.start(&c)?;
    Ok(c)
}

/// A pod with one root container `sleep 3600` that has the attack program.
pub fn attack_pod<'a>(bed: &'a TestBed, handler: &str, base: &str) -> Result<(Pod<'a>, Container)> {
    let pod = bed.run_pod(base, handler)?;
    let attack = attack_volume(bed)?;
    let c = sleeper(&pod, "attacker", &attack, |_| {})?;
    Ok((pod, c))
}

/// What one `attack MODE ...` run said.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The command line, for messages.
    pub what: String,
    /// The verdict line (`MODE: ...`).
    pub line: String,
    /// True when the attempt succeeded (`MODE: ok`).
    pub succeeded: bool,
    pub output: ExecOutput,
}

impl Attempt {
    /// The errno name of a refused attempt (`EPERM`), `None` when it succeeded.
    pub fn errno(&self) -> Option<&str> {
        if self.succeeded {
            return None;
        }
        let mode = self.what.split_whitespace().nth(1).unwrap_or("");
        self.line.strip_prefix(&format!("{mode}: ")).and_then(|rest| rest.split_whitespace().next())
    }
}

/// Runs `attack ARGS...` in `c` (ExecSync) and reads its verdict.
pub fn attack(pod: &Pod, c: &Container, args: &[&str]) -> Result<Attempt> {
    let mut cmd = vec![ATTACK];
    cmd.extend_from_slice(args);
    let what = cmd.join(" ");
    let output = pod.exec(c, &cmd).with_context(|| format!("exec {what}"))?;
    verdict(&what, output)
}

/// Reads the verdict of `what` (`/attack/attack MODE ...`) from its output.
pub fn verdict(what: &str, output: ExecOutput) -> Result<Attempt> {
    let mode = what.split_whitespace().nth(1).unwrap_or("");
    let prefix = format!("{mode}: ");
    let line = output
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("`{what}` printed no verdict line: {output:?}"))?;
    let succeeded = line.starts_with(&format!("{prefix}ok"));
    ensure!(
        succeeded == (output.exit_code == 0),
        "`{what}` exit code {} disagrees with its verdict {line:?}",
        output.exit_code
    );
    Ok(Attempt { what: what.to_string(), line, succeeded, output })
}

/// The attack must have failed.
pub fn must_fail(a: &Attempt, handler: &str) -> Result<()> {
    ensure!(!a.succeeded, "under {handler} the attack `{}` SUCCEEDED: {}", a.what, a.line);
    Ok(())
}

/// The attack must have failed with one of `errnos`.
pub fn must_fail_with(a: &Attempt, handler: &str, errnos: &[&str]) -> Result<()> {
    must_fail(a, handler)?;
    let got = a.errno().unwrap_or("");
    ensure!(
        errnos.contains(&got),
        "under {handler} `{}` failed, but with {got} instead of one of {errnos:?}: {}",
        a.what,
        a.line
    );
    Ok(())
}

/// The thing must have worked.
pub fn must_succeed(a: &Attempt, handler: &str) -> Result<()> {
    ensure!(a.succeeded, "under {handler} `{}` failed: {}", a.what, a.line);
    Ok(())
}

/// moat must refuse what runc (no user namespace, no seccomp filter for a pod without a
/// seccomp profile, host root with the default capabilities) lets through: the test shows
/// the difference.
pub fn moat_refuses_runc_allows(a: &Attempt, handler: &str) -> Result<()> {
    match handler {
        "moat" => must_fail(a, handler),
        _ => must_succeed(a, handler).context(
            "runc was expected to allow this (the test shows what moat adds); if the host \
             forbids it anyway the test no longer shows the difference",
        ),
    }
}

/// `moat_refuses_runc_allows`, and moat's refusal is one of `errnos`.
pub fn moat_refuses_with(a: &Attempt, handler: &str, errnos: &[&str]) -> Result<()> {
    moat_refuses_runc_allows(a, handler)?;
    if handler == "moat" {
        must_fail_with(a, handler, errnos)?;
    }
    Ok(())
}

/// `sh -c script` in `c`.
pub fn sh(pod: &Pod, c: &Container, script: &str) -> Result<ExecOutput> {
    pod.exec(c, &["sh", "-c", script]).with_context(|| format!("exec sh -c {script:?}"))
}

/// The first line of `/proc/<pid>/uid_map` on the host: (inside, outside, count).
pub fn uid_map(pid: i32) -> Result<(u64, u64, u64)> {
    id_map(pid, "uid_map")
}

fn id_map(pid: i32, file: &str) -> Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .with_context(|| format!("reading /proc/{pid}/{file}"))?;
    parse_id_map(&text)
}

/// The first line of an id map (`inside outside count`).
pub fn parse_id_map(text: &str) -> Result<(u64, u64, u64)> {
    let fields: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|f| f.parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("id map {text:?}"))?;
    match fields[..] {
        [inside, outside, count] => Ok((inside, outside, count)),
        _ => bail!("id map {text:?} does not start with `inside outside count`"),
    }
}

fn host_id(pid: i32, file: &str, id: u64) -> Result<u32> {
    let (inside, outside, count) = id_map(pid, file)?;
    ensure!(id >= inside && id < inside + count, "id {id} is not mapped in /proc/{pid}/{file}");
    Ok(u32::try_from(outside + id - inside)?)
}

/// The host uid that uid `id` of `pid`'s user namespace is.
pub fn host_uid(pid: i32, id: u64) -> Result<u32> {
    host_id(pid, "uid_map", id)
}

/// The host gid that gid `id` of `pid`'s user namespace is.
pub fn host_gid(pid: i32, id: u64) -> Result<u32> {
    host_id(pid, "gid_map", id)
}

/// SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}
