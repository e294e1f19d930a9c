//! `containerd-shim-moat-v2 -info`: the `RuntimeInfo` containerd 2.x asks the shim for.

use std::io::Write;

use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};

use crate::shim::RUNTIME_ID;

pub fn runtime_info() -> RuntimeInfo {
    RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes the RuntimeInfo protobuf to stdout; returns the process exit code.
pub fn print() -> i32 {
    // containerd writes the handler's options on stdin; moat's info does not depend on them.
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    match runtime_info().write_to_bytes() {
        Ok(bytes) => match std::io::stdout().write_all(&bytes) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing runtime info: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("encoding runtime info: {e}");
            1
        }
    }
}
