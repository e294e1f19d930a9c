//! The control socket protocol between the launcher (in the shim), the helper and the process
//! it builds: small JSON frames over a `SOCK_SEQPACKET` socketpair, fds beside them
//! (`SCM_RIGHTS`). The request may be larger than one datagram, so it travels as a length
//! frame (carrying the fds) followed by chunks.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::plan::{ContainerPlan, ExecPlan};

/// Largest single frame (reports and chunks are far smaller).
const FRAME_MAX: usize = 64 * 1024;
/// Request chunk size, well under the default socket send buffer.
const CHUNK: usize = 32 * 1024;
/// Upper bound on a request, so a corrupt length cannot make the helper allocate wildly.
const REQUEST_MAX: usize = 16 * 1024 * 1024;
/// No frame carries more fds than this.
const FDS_MAX: usize = 8;

/// Which of the optional fds accompany a request, in this order: stdin, stdout, stderr,
/// userns, init (an exec's: the pidfd of the container's init, whose namespaces it joins).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FdLayout {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub userns: bool,
    pub init: bool,
}

impl FdLayout {
    pub fn count(&self) -> usize {
        [self.stdin, self.stdout, self.stderr, self.userns, self.init]
            .iter()
            .filter(|b| **b)
            .count()
    }
}

/// Launcher -> helper.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    Container { plan: Box<ContainerPlan>, fds: FdLayout },
    Exec { plan: Box<ExecPlan>, fds: FdLayout },
}

/// Helper / process -> launcher.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// Something worth a log line (the process goes on).
    Log { message: String },
    /// The process exists: its host pid. Its pidfd (taken by the helper while it is still
    /// the parent, see `pidfd`) always rides along first, an fd of its user namespace after it
    /// when `userns`.
    Spawned { pid: i32, userns: bool },
    /// The pty master rides along.
    Console,
    /// Everything up to exec is done; waiting for `Start`.
    Ready,
    /// Audit (issue 15): the listener of the notifying seccomp filter rides along (sent
    /// after `Start`, right before exec).
    SeccompListener,
    /// A step failed; the process is gone (or about to be).
    Failed { step: String, errno: Option<i32>, detail: Option<String> },
}

/// Launcher -> process.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Control {
    Start,
}

/// Why a frame could not be exchanged.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("control socket: {0}")]
    Sys(#[from] Errno),
    #[error("control socket: malformed frame: {0}")]
    Malformed(String),
}

/// Sends one frame with `fds` attached.
pub(crate) fn send_frame(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), Errno> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(Errno::EMSGSIZE),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A frame's bytes and the fds that came with it.
pub(crate) type Frame = (Vec<u8>, Vec<OwnedFd>);

/// Receives one frame; `None` at end of stream (the peer closed every copy of its end).
pub(crate) fn recv_frame(sock: BorrowedFd<'_>) -> Result<Option<Frame>, WireError> {
    let mut buf = vec![0u8; FRAME_MAX];
    let mut cmsg = nix::cmsg_space!([RawFd; FDS_MAX]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<UnixAddr>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: SCM_RIGHTS installed this fd in our table for us alone.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(WireError::Malformed("frame larger than 64 KiB".into()));
        }
        let n = msg.bytes;
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some((buf, fds)));
    }
}

/// Sends a JSON message as one frame.
pub(crate) fn send_msg<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), WireError> {
    let bytes = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    if bytes.len() > FRAME_MAX {
        return Err(WireError::Malformed(format!("message of {} bytes", bytes.len())));
    }
    Ok(send_frame(sock, &bytes, fds)?)
}

/// Receives one JSON message; `None` at end of stream.
pub(crate) fn recv_msg<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
) -> Result<Option<(T, Vec<OwnedFd>)>, WireError> {
    let Some((bytes, fds)) = recv_frame(sock)? else { return Ok(None) };
    let msg = serde_json::from_slice(&bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(Some((msg, fds)))
}

/// Sends a message of any size: a length frame with the fds, then chunks.
pub(crate) fn send_large<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[BorrowedFd<'_>],
) -> Result<(), WireError> {
    let bytes = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    let len =
        u64::try_from(bytes.len()).map_err(|_| WireError::Malformed("request too large".into()))?;
    send_frame(sock, &len.to_le_bytes(), fds)?;
    for chunk in bytes.chunks(CHUNK) {
        send_frame(sock, chunk, &[])?;
    }
    Ok(())
}

/// Receives a message sent with [`send_large`]; `None` if the stream ends before it starts.
pub(crate) fn recv_large<T: DeserializeOwned>(
    sock: BorrowedFd<'_>,
) -> Result<Option<(T, Vec<OwnedFd>)>, WireError> {
    let Some((head, fds)) = recv_frame(sock)? else { return Ok(None) };
    let head: [u8; 8] =
        head.as_slice().try_into().map_err(|_| WireError::Malformed("bad length frame".into()))?;
    let len = usize::try_from(u64::from_le_bytes(head))
        .map_err(|_| WireError::Malformed("bad length".into()))?;
    if len > REQUEST_MAX {
        return Err(WireError::Malformed(format!("request of {len} bytes")));
    }
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let Some((chunk, extra)) = recv_frame(sock)? else {
            return Err(WireError::Malformed("stream ended inside a request".into()));
        };
        if !extra.is_empty() || chunk.is_empty() || bytes.len() + chunk.len() > len {
            return Err(WireError::Malformed("unexpected chunk".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    let msg = serde_json::from_slice(&bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(Some((msg, fds)))
}
