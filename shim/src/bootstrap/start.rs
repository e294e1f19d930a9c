//! `containerd-shim-moat-v2 start`: find or launch the pod's shim and print its address.
//!
//! One shim process serves a whole pod: a container whose spec carries
//! `io.kubernetes.cri.sandbox-id` is grouped with its sandbox, so its `start` finds the
//! sandbox's socket alive and answers with that address without launching anything.
//! containerd reads stdout and stderr of `start` together, so nothing but the address is
//! printed.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use containerd_shim::{socket_address, StartOpts};
use log::warn;

use super::options::{parse_start_input, RuntimeOptions, StartInput};
use crate::error::ShimError;

/// Annotation containerd's CRI puts on every container of a pod, naming the pod.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// Environment variables through which `start` hands the runtime options to the shim it
/// launches (the serving shim never sees `start`'s stdin).
pub const CONFIG_PATH_ENV: &str = "MOAT_CONFIG_PATH";
pub const CONFIG_BODY_ENV: &str = "MOAT_CONFIG_BODY";

/// The id the pod's containers share a shim by: the sandbox id, else the container's own.
pub fn grouping_id(bundle: &Path, id: &str) -> String {
    let spec = std::fs::read(bundle.join("config.json")).ok().and_then(|raw| {
        serde_json::from_slice::<serde_json::Value>(&raw).ok()
    });
    spec.as_ref()
        .and_then(|s| s.get("annotations"))
        .and_then(|a| a.get(SANDBOX_ID_ANNOTATION))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| id.to_string())
}

/// Reads all of stdin (containerd closes it) and decodes the runtime options.
pub fn read_start_input() -> StartInput {
    let mut data = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut data) {
        return StartInput::Ignored { reason: format!("reading stdin: {e}") };
    }
    parse_start_input(&data)
}

/// Runs `start`: returns the address containerd must use for this container.
pub async fn start(opts: StartOpts, input: &StartInput) -> Result<String, ShimError> {
    if let StartInput::Ignored { reason } = input {
        warn!("start: ignoring stdin that carries no moat options: {reason}");
    }
    let bundle = std::env::current_dir().map_err(|e| ShimError::io("current dir of start", e))?;
    let grouping = grouping_id(&bundle, &opts.id);
    let address = socket_address(&opts.address, &opts.namespace, &grouping);
    let socket_path = address.trim_start_matches("unix://").to_string();

    if socket_is_alive(&socket_path) {
        write_address_file(&bundle, &address)?;
        return Ok(address);
    }
    // A stale socket from a killed shim: remove it so the new shim can bind.
    let _ = std::fs::remove_file(&socket_path);

    let exe = std::env::current_exe().map_err(|e| ShimError::io("locating the shim binary", e))?;
    let mut cmd = Command::new(exe);
    cmd.current_dir(&bundle)
        .args(["-namespace", &opts.namespace, "-id", &opts.id, "-address", &opts.address])
        .args(["-socket", &address])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: signals meant for containerd's group do not reach the shim.
        .process_group(0);
    if opts.debug {
        cmd.arg("-debug");
    }
    pass_options(&mut cmd, input.runtime_options());
    let mut child = cmd.spawn().map_err(|e| ShimError::io("launching the pod shim", e))?;
    // The shim closes its stdout once its server listens (containerd-shim's
    // signal_server_started); reading to EOF waits for exactly that.
    if let Some(mut out) = child.stdout.take() {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    }
    if !socket_is_alive(&socket_path) {
        return Err(ShimError::Start(format!(
            "the pod shim for {grouping} exited before listening on {socket_path}; see containerd's log"
        )));
    }
    write_address_file(&bundle, &address)?;
    Ok(address)
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

fn socket_is_alive(path: &str) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

fn write_address_file(bundle: &Path, address: &str) -> Result<(), ShimError> {
    std::fs::write(bundle.join("address"), address)
        .map_err(|e| ShimError::io("writing the address file in the bundle", e))
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
    fn a_container_without_pod_groups_by_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Input: no config.json at all.
        assert_eq!(grouping_id(dir.path(), "solo"), "solo");
        // Input: config.json that is not JSON.
        std::fs::write(dir.path().join("config.json"), "not json").expect("write");
        assert_eq!(grouping_id(dir.path(), "solo"), "solo");
    }
}
