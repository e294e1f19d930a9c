//! `containerd-shim-moat-v2 start`: find or launch the pod's shim and print its address.
//!
//! One shim process serves a whole pod: a container whose spec carries
//! `io.kubernetes.cri.sandbox-id` is grouped with its sandbox, so its `start` finds the
//! sandbox's socket alive and answers with that address without launching anything.
//! containerd reads stdout and stderr of `start` together, so nothing but the address is
//! printed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use containerd_shim::{socket_address, StartOpts};
use log::warn;
use moat_sandbox::pod::teardown::reclaim_dead_ranges;

use crate::config::{CONFIG_BODY_ENV, CONFIG_PATH_ENV};
use crate::options::{parse_start_input, OptionsError, RuntimeOptions, StartInput};

/// `start` could not hand containerd the address of the pod's shim.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The runtime options on stdin do not decode: the container `id` is refused.
    #[error("container {id}: {source}")]
    Options { id: String, source: OptionsError },
    #[error("current dir of start: {0}")]
    CurrentDir(#[source] std::io::Error),
    #[error("locating the shim binary: {0}")]
    CurrentExe(#[source] std::io::Error),
    #[error("launching the pod shim: {0}")]
    Launch(#[source] std::io::Error),
    /// The pod shim for `grouping` closed its stdout but nobody listens on `socket`.
    #[error(
        "the pod shim for {grouping} exited before listening on {socket}; see containerd's log"
    )]
    NotListening { grouping: String, socket: String },
    /// `chmod 0600` of the shim socket `path`.
    #[error("making the shim socket {path} 0600: {source}")]
    Socket { path: String, source: std::io::Error },
    #[error("writing the address file in the bundle: {0}")]
    AddressFile(#[source] std::io::Error),
}

/// Annotation containerd's CRI puts on every container of a pod, naming the pod.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";

/// The id the pod's containers share a shim by: the sandbox id, else the container's own.
pub fn grouping_id(bundle: &Path, id: &str) -> String {
    let spec = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok());
    spec.as_ref()
        .and_then(|s| s.get("annotations"))
        .and_then(|a| a.get(SANDBOX_ID_ANNOTATION))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| id.to_string())
}

/// The stdin of `start`, read once (by the fast path or the full one).
static START_INPUT: OnceLock<Result<StartInput, OptionsError>> = OnceLock::new();

/// The decoded stdin of `start`.
pub fn start_input() -> &'static Result<StartInput, OptionsError> {
    START_INPUT.get_or_init(read_start_input)
}

/// `start` for a pod's second and later containers, before any runtime is built: when the
/// pod's shim already listens, answer with its address and nothing else. `None` means the full
/// path must run (the pod's first container, a dead socket, arguments it cannot read).
/// containerd runs `start` once per container, so this is on every StartContainer's path.
pub fn join_running_shim(args: &[std::ffi::OsString]) -> Option<String> {
    join_running_shim_in(&std::env::current_dir().ok()?, args)
}

fn join_running_shim_in(bundle: &Path, args: &[std::ffi::OsString]) -> Option<String> {
    let flags = containerd_shim::parse(args).ok()?;
    if flags.action != "start" || flags.id.is_empty() {
        return None;
    }
    let shim = PodShim::locate(bundle, &flags.id, &flags.namespace, &flags.address);
    if shim.grouping == flags.id || !shim.is_alive() {
        return None;
    }
    // containerd writes the runtime options on stdin; they belong to the running shim. Options
    // that cannot be read take the full path, which refuses them.
    start_input().as_ref().ok()?;
    write_address_file(bundle, &shim.address).ok()?;
    Some(shim.address)
}

/// The file the pod's shim of `id`'s container listens on (it may be dead).
pub fn pod_socket_path(bundle: &Path, id: &str, namespace: &str, containerd: &str) -> PathBuf {
    PathBuf::from(PodShim::locate(bundle, id, namespace, containerd).socket_path())
}

/// Where the pod's shim listens, or will: the id its containers group by, and the socket.
struct PodShim {
    grouping: String,
    address: String,
}

impl PodShim {
    fn locate(bundle: &Path, id: &str, namespace: &str, containerd_address: &str) -> Self {
        let grouping = grouping_id(bundle, id);
        let address = socket_address(containerd_address, namespace, &grouping);
        PodShim { grouping, address }
    }

    fn socket_path(&self) -> &str {
        self.address.trim_start_matches("unix://")
    }

    fn is_alive(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.socket_path()).is_ok()
    }
}

/// Reads all of stdin (containerd closes it) and decodes the runtime options.
pub fn read_start_input() -> Result<StartInput, OptionsError> {
    let mut data = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut data) {
        return Err(OptionsError::Unreadable { envelope: "stdin", reason: e.to_string() });
    }
    parse_start_input(&data)
}

/// Runs `start`: returns the address containerd must use for this container. Runtime options
/// that cannot be read refuse the container (fail closed: see `options`).
pub async fn start(
    opts: StartOpts,
    input: &Result<StartInput, OptionsError>,
) -> Result<String, StartError> {
    let input = input.as_ref().map_err(|e| {
        warn!("start {}: {e}", opts.id);
        StartError::Options { id: opts.id.clone(), source: e.clone() }
    })?;
    let bundle = std::env::current_dir().map_err(StartError::CurrentDir)?;
    let shim = PodShim::locate(&bundle, &opts.id, &opts.namespace, &opts.address);
    if shim.is_alive() {
        write_address_file(&bundle, &shim.address)?;
        return Ok(shim.address);
    }
    // A stale socket from a killed shim: remove it so the new shim can bind.
    let _ = std::fs::remove_file(shim.socket_path());
    reclaim_id_ranges(input.runtime_options());

    let exe = std::env::current_exe().map_err(StartError::CurrentExe)?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(&bundle)
        .args(["-namespace", &opts.namespace, "-id", &opts.id, "-address", &opts.address])
        .args(["-socket", &shim.address])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: signals meant for containerd's group do not reach the shim.
        .process_group(0);
    if opts.debug {
        cmd.arg("-debug");
    }
    pass_options(&mut cmd, input.runtime_options());
    let mut child = cmd.spawn().map_err(StartError::Launch)?;
    // The shim closes its stdout once its server listens (containerd-shim's
    // signal_server_started); reading to EOF waits for exactly that.
    if let Some(mut out) = child.stdout.take() {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    }
    if !shim.is_alive() {
        return Err(StartError::NotListening {
            grouping: shim.grouping.to_string(),
            socket: shim.socket_path().to_string(),
        });
    }
    // containerd-shim binds with the process umask (0755 here); the shim API is containerd's
    // alone, as runc's shim makes it (0600 after listening, as containerd's Go `NewSocket`
    // does: a 0755 socket already refuses others' connect, so the window grants nothing).
    restrict_socket(shim.socket_path())?;
    write_address_file(&bundle, &shim.address)?;
    Ok(shim.address)
}

/// A new pod's shim is about to start: give back the ID ranges of pods whose shim is gone
/// (killed, crashed, or lost in a reboot: `containerd` never runs `delete` for those). Before
/// the new shim allocates, so a crash-looping host never exhausts the pool. A failure here
/// only delays the reclaim, it must not fail the new pod. (`start` has no logger: its stderr
/// is containerd's answer, so the outcome is not logged.)
fn reclaim_id_ranges(options: Option<&RuntimeOptions>) {
    let source = crate::config::ConfigSource {
        path: options.and_then(|o| o.config_path.clone()).filter(|p| !p.is_empty()).map(Into::into),
        body: options.and_then(|o| o.config_body.clone()).filter(|b| !b.is_empty()),
        unreadable: None,
    };
    let reclaimed = match source.load() {
        Ok(config) => reclaim_dead_ranges(&config.userns).map(drop).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = reclaimed {
        warn!("start: reclaiming the ID ranges of dead pods: {e}");
    }
}

fn pass_options(cmd: &mut Command, options: Option<&RuntimeOptions>) {
    cmd.env_remove(CONFIG_PATH_ENV).env_remove(CONFIG_BODY_ENV);
    if let Some(opts) = options {
        if let Some(path) = &opts.config_path {
            cmd.env(CONFIG_PATH_ENV, path);
        }
        if let Some(body) = &opts.config_body {
            cmd.env(CONFIG_BODY_ENV, body);
        }
    }
}

/// Makes the shim socket 0600.
fn restrict_socket(path: &str) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| StartError::Socket { path: path.to_string(), source })
}

fn write_address_file(bundle: &Path, address: &str) -> Result<(), StartError> {
    std::fs::write(bundle.join("address"), address).map_err(StartError::AddressFile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_a_pod_group_by_sandbox_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"pod123"}}"#,
        )
        .expect("write");
        assert_eq!(grouping_id(dir.path(), "ctr456"), "pod123");
    }

    #[test]
    fn a_later_container_joins_the_listening_pod_shim_without_a_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod = format!("fastpath-pod-{}", std::process::id());
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"annotations":{{"io.kubernetes.cri.sandbox-id":"{pod}"}}}}"#),
        )
        .expect("write");
        let containerd = format!("/tmp/moat-fastpath-{}.sock", std::process::id());
        let args = |action: &str| -> Vec<std::ffi::OsString> {
            ["-namespace", "k8s.io", "-id", "ctr1", "-address", &containerd, action]
                .iter()
                .map(Into::into)
                .collect()
        };
        let address = socket_address(&containerd, "k8s.io", &pod);
        let path = address.trim_start_matches("unix://").to_string();
        // No shim listens yet: the full path must run.
        assert_eq!(join_running_shim_in(dir.path(), &args("start")), None);
        std::fs::create_dir_all(Path::new(&path).parent().expect("parent")).expect("socket dir");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        assert_eq!(join_running_shim_in(dir.path(), &args("start")), Some(address.clone()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("address")).expect("address file"),
            address
        );
        // Other commands never take the fast path.
        assert_eq!(join_running_shim_in(dir.path(), &args("delete")), None);
        drop(listener);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_pods_first_container_takes_the_full_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Input: a sandbox container: its own id is the pod's.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod9"}}"#,
        )
        .expect("write");
        let args: Vec<std::ffi::OsString> =
            ["-namespace", "k8s.io", "-id", "pod9", "-address", "/x.sock", "start"]
                .iter()
                .map(Into::into)
                .collect();
        assert_eq!(join_running_shim_in(dir.path(), &args), None);
    }

    #[test]
    fn a_container_without_pod_groups_by_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Input: no config.json at all.
        assert_eq!(grouping_id(dir.path(), "solo"), "solo");
        // Input: config.json that is not JSON.
        std::fs::write(dir.path().join("config.json"), "not json").expect("write");
        assert_eq!(grouping_id(dir.path(), "solo"), "solo");
    }
}
