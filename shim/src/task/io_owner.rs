//! Who owns the stdio a container's processes get: containerd 2.x's `IoUid`/`IoGid`.
//!
//! For a pod with `hostUsers: false`, containerd 2.x's CRI puts the host IDs of the pod's root
//! in runc's task options (`containerd.runc.v1.Options`), and containerd-shim-runc-v2 makes
//! the stdio pipes the container gets owned by them (`runc.NewPipeIO(ioUID, ioGID)`), so the
//! container's root can reopen its own stdio (`/dev/stdout`, `/proc/self/fd/1`) from inside
//! its user namespace. moat does the same with what it hands over: the stdin pipe it creates
//! and the output fifos it opens get `fchown`ed to that owner, for the init process and every
//! exec of the container.
//!
//! The owner must be host IDs of the pod's own user namespace: an `IoUid` outside the pod's
//! mapping refuses the container (the shim chowns as host root; it never gives a file to an ID
//! the pod does not own).

use std::os::fd::AsFd;

use containerd_shim::api::CreateTaskRequest;
use moat_sandbox::plan::{IdMapping, UserNamespacePlan};
use moat_sandbox::spawn::Stdio;

use crate::options::{decode_task_options, IoOwner, OptionsError, TaskOptions};

/// The stdio owner of a container could not be taken or given.
#[derive(Debug, thiserror::Error)]
pub enum IoOwnerError {
    /// The Create request's task options do not decode.
    #[error("container {id}: {source}")]
    Options { id: String, source: OptionsError },
    /// `IoUid`/`IoGid` outside the pod's user namespace mappings.
    #[error(
        "container {id}: the task options' IoUid {} / IoGid {} are not host IDs of the pod's \
         user namespace (uid map {uid_map:?}, gid map {gid_map:?}); refusing to hand the \
         container stdio owned by another user",
        owner.uid,
        owner.gid
    )]
    NotThePods { id: String, owner: IoOwner, uid_map: Vec<IdMapping>, gid_map: Vec<IdMapping> },
    /// `fchown` of the process's `name` fd (stdin, stdout, stderr); `what` names the process.
    #[error("{what}: giving its {name} to IoUid {} / IoGid {}: {source}", owner.uid, owner.gid)]
    Chown { what: String, name: &'static str, owner: IoOwner, source: std::io::Error },
}

/// The stdio owner the Create request asks for (runc options' `IoUid`/`IoGid`), checked
/// against the pod's user namespace `user`. `None`: the stdio stays the shim's.
pub fn from_request(
    req: &CreateTaskRequest,
    user: &UserNamespacePlan,
) -> Result<Option<IoOwner>, IoOwnerError> {
    let Some(any) = req.options.as_ref() else { return Ok(None) };
    let options = decode_task_options(&any.type_url, &any.value)
        .map_err(|source| IoOwnerError::Options { id: req.id.clone(), source })?;
    match options {
        TaskOptions::Runc { io_owner: Some(owner) } => {
            check(owner, user, &req.id)?;
            Ok(Some(owner))
        }
        TaskOptions::Other { type_url } => {
            log::debug!("container {}: task options of type {type_url} ignored", req.id);
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// `owner` must be host IDs inside the pod's uid and gid mappings.
fn check(owner: IoOwner, user: &UserNamespacePlan, id: &str) -> Result<(), IoOwnerError> {
    let inside = |host: u32, maps: &[IdMapping]| {
        maps.iter().any(|m| host.checked_sub(m.host_id).is_some_and(|off| off < m.size))
    };
    if inside(owner.uid, &user.uid_mappings) && inside(owner.gid, &user.gid_mappings) {
        return Ok(());
    }
    Err(IoOwnerError::NotThePods {
        id: id.to_string(),
        owner,
        uid_map: user.uid_mappings.clone(),
        gid_map: user.gid_mappings.clone(),
    })
}

/// Makes every fd of `stdio` owned by `owner` (`fchown`: the pipe or fifo itself).
pub fn apply(stdio: &Stdio, owner: IoOwner, what: &str) -> Result<(), IoOwnerError> {
    let fds = [("stdin", &stdio.stdin), ("stdout", &stdio.stdout), ("stderr", &stdio.stderr)];
    for (name, fd) in fds {
        let Some(fd) = fd else { continue };
        nix::unistd::fchown(
            fd.as_fd(),
            Some(nix::unistd::Uid::from_raw(owner.uid)),
            Some(nix::unistd::Gid::from_raw(owner.gid)),
        )
        .map_err(|e| IoOwnerError::Chown {
            what: what.to_string(),
            name,
            owner,
            source: e.into(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::encode::varint;
    use moat_sandbox::plan::UserNamespaceAction;
    use std::os::fd::OwnedFd;
    use std::os::unix::fs::MetadataExt;

    fn user() -> UserNamespacePlan {
        UserNamespacePlan {
            action: UserNamespaceAction::JoinPath("/proc/1/ns/user".into()),
            uid_mappings: vec![IdMapping { container_id: 0, host_id: 3_000_000, size: 65_536 }],
            gid_mappings: vec![IdMapping { container_id: 0, host_id: 3_000_000, size: 65_536 }],
        }
    }

    fn request(type_url: &str, value: Vec<u8>) -> CreateTaskRequest {
        let mut req = CreateTaskRequest { id: "c1".into(), ..Default::default() };
        let mut any = containerd_shim::protos::protobuf::well_known_types::any::Any::new();
        any.type_url = type_url.into();
        any.value = value;
        req.options = Some(any).into();
        req
    }

    /// runc options { io_uid = 4; io_gid = 5 } as varints.
    fn runc_options(uid: u32, gid: u32) -> Vec<u8> {
        [varint(4, uid.into()), varint(5, gid.into())].concat()
    }

    #[test]
    fn containerd_2_io_owner_inside_the_pod_is_taken() {
        let req = request("containerd.runc.v1.Options", runc_options(3_000_000, 3_000_000));
        assert_eq!(
            from_request(&req, &user()).expect("accepted"),
            Some(IoOwner { uid: 3_000_000, gid: 3_000_000 })
        );
        // No options at all (containerd 1.6/1.7): the stdio stays the shim's.
        let none = CreateTaskRequest { id: "c1".into(), ..Default::default() };
        assert_eq!(from_request(&none, &user()).expect("accepted"), None);
    }

    #[test]
    fn an_io_owner_outside_the_pod_is_refused() {
        // Input: IoUid of host root, and an IoGid one past the pod's range.
        for (uid, gid) in [(0, 3_000_000), (3_000_000, 3_065_536)] {
            let req = request("containerd.runc.v1.Options", runc_options(uid, gid));
            let err = from_request(&req, &user()).expect_err("must refuse").to_string();
            assert!(err.contains("c1") && err.contains(&format!("IoUid {uid}")), "{err}");
        }
    }

    #[test]
    fn apply_chowns_every_fd_it_is_given() {
        // Needs root to chown to another user; without it the test checks the error instead.
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let stdio = Stdio { stdin: Some(r), stdout: Some(w), stderr: None::<OwnedFd> };
        let owner = IoOwner { uid: 3_000_123, gid: 3_000_456 };
        let result = apply(&stdio, owner, "container c1");
        if nix::unistd::geteuid().is_root() {
            result.expect("chown as root");
            for fd in [&stdio.stdin, &stdio.stdout].into_iter().flatten() {
                let meta =
                    std::fs::File::from(fd.try_clone().expect("dup")).metadata().expect("fstat");
                assert_eq!((meta.uid(), meta.gid()), (3_000_123, 3_000_456));
            }
        } else {
            let err = result.expect_err("not root").to_string();
            assert!(err.contains("stdin") && err.contains("IoUid 3000123"), "{err}");
        }
    }
}
