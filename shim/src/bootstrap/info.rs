//! `containerd-shim-moat-v2 -info`: the `RuntimeInfo` containerd 2.x asks the shim for.
//!
//! containerd (`core/runtime/v2`, `getRuntimeInfo`) runs `<shim> -info` with the handler's
//! options on stdin and decodes stdout as a protobuf `containerd.types.RuntimeInfo`. Its
//! `features` is an Any of type [`FEATURES_TYPE_URL`] whose value is the OCI features JSON;
//! moat's comes from `moat_sandbox::features`, built from the tables the sandbox enforces.
//! What containerd does with it (user-namespace support reported to kubelet, the idmap check
//! at task create, and the containerd <= 2.3 limit to runc-typed handlers) is documented in
//! that module.

use std::io::Write;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use moat_sandbox::features::{oci_features_json, FEATURES_TYPE_URL};

use crate::RUNTIME_ID;

/// Building the runtime info failed.
#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("encoding the OCI features as JSON: {0}")]
    Features(#[source] serde_json::Error),
    #[error("encoding runtime info: {0}")]
    Encode(#[source] containerd_shim_protos::protobuf::Error),
}

/// The OCI features as the Any containerd decodes.
pub fn features_any() -> Result<Any, InfoError> {
    let value = oci_features_json().map_err(InfoError::Features)?;
    Ok(Any { type_url: FEATURES_TYPE_URL.to_string(), value, ..Default::default() })
}

pub fn runtime_info() -> Result<RuntimeInfo, InfoError> {
    Ok(RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        features: MessageField::some(features_any()?),
        ..Default::default()
    })
}

/// The encoded `RuntimeInfo` written on stdout.
pub fn encoded() -> Result<Vec<u8>, InfoError> {
    runtime_info()?.write_to_bytes().map_err(InfoError::Encode)
}

/// Writes the RuntimeInfo protobuf to stdout; returns the process exit code.
pub fn print() -> i32 {
    // containerd writes the handler's options on stdin; moat's info does not depend on them.
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    match encoded() {
        Ok(bytes) => {
            match std::io::stdout().write_all(&bytes).and_then(|()| std::io::stdout().flush()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("writing runtime info: {e}");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Features, LinuxNamespaceType, LinuxSeccompAction};

    fn decoded() -> RuntimeInfo {
        let bytes = encoded().expect("encodes");
        RuntimeInfo::parse_from_bytes(&bytes).expect("stdout decodes as RuntimeInfo")
    }

    #[test]
    fn info_decodes_with_name_version_and_features() {
        let info = decoded();
        assert_eq!(info.name, RUNTIME_ID);
        assert_eq!(info.version.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            info.features.type_url,
            "types.containerd.io/opencontainers/runtime-spec/1/features/Features"
        );
    }

    #[test]
    fn features_parse_as_oci_features_with_userns_idmap_and_seccomp() {
        let info = decoded();
        let features: Features =
            serde_json::from_slice(&info.features.value).expect("features JSON parses");
        let linux = features.linux().as_ref().expect("linux section");
        let namespaces = linux.namespaces().as_ref().expect("namespaces");
        assert!(namespaces.contains(&LinuxNamespaceType::User));
        assert!(namespaces.contains(&LinuxNamespaceType::Mount));
        let idmap = linux
            .mount_extensions()
            .as_ref()
            .and_then(|m| m.idmap().as_ref())
            .expect("idmap entry");
        assert_eq!(*idmap.enabled(), Some(true));
        let seccomp = linux.seccomp().as_ref().expect("seccomp");
        assert_eq!(*seccomp.enabled(), Some(true));
        let actions = seccomp.actions().as_ref().expect("actions");
        assert!(actions.contains(&LinuxSeccompAction::ScmpActErrno));
        assert!(!actions.contains(&LinuxSeccompAction::ScmpActNotify));
        assert!(features
            .mount_options()
            .as_ref()
            .expect("mount options")
            .iter()
            .any(|o| o == "rro"));
        assert_eq!(features.hooks().as_deref(), Some(&[][..]));
        // What containerd's CRI checks before telling kubelet the handler supports userns.
        let raw: serde_json::Value = serde_json::from_slice(&info.features.value).expect("JSON");
        assert_eq!(raw["linux"]["mountExtensions"]["idmap"]["enabled"], serde_json::json!(true));
    }
}
