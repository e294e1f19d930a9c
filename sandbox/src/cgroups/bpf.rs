//! The bpf(2) calls for cgroup device programs: load one, attach it to a cgroup directory, list
//! and detach what is attached, look a program up by id.
//!
//! Hand-written over `libc::syscall(SYS_bpf)`: nix has no bpf(2) wrapper, and the crates that
//! do (`aya`, `libbpf-rs`) load compiled ELF objects rather than a handful of instructions
//! built at run time (see `device_filter`). Each `bpf_attr` variant is declared with only the
//! fields used; the kernel treats the rest of its union as zero (it checks that a larger
//! caller struct has a zero tail, never that a smaller one is complete).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use super::device_filter::{encode, Insn};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs per cgroup, all of which must allow (see `attach_device_program`).
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The name moat's device programs carry (visible in `bpftool prog`), also how moat finds its
/// own programs among those attached to a cgroup.
pub const PROGRAM_NAME: &str = "moat_devices";
/// No GPL-only helper is called, so any license string loads.
const LICENSE: &[u8] = b"Apache-2.0\0";
const LOG_SIZE: usize = 64 * 1024;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`, up to the name.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// bpf(cmd, attr, sizeof attr).
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a live, #[repr(C)] `bpf_attr` variant of exactly the size passed; the
    // pointers it holds (if any) were set by the caller to buffers that outlive this call.
    let ret =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    Errno::result(ret)
}

fn fd_u32(fd: BorrowedFd<'_>) -> Result<u32, Errno> {
    u32::try_from(fd.as_raw_fd()).map_err(|_| Errno::EBADF)
}

fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    let raw = i32::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned `raw` as a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Why a program did not load: the errno and, for a verifier refusal, its log.
#[derive(Debug)]
pub struct LoadError {
    pub errno: Errno,
    pub log: String,
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program. On failure the load is retried with the
/// verifier's log on, and the log's tail is returned with the error.
pub fn load_device_program(program: &[Insn]) -> Result<OwnedFd, LoadError> {
    match load(program, None) {
        Ok(fd) => Ok(fd),
        Err(errno) => {
            let mut log = vec![0u8; LOG_SIZE];
            let log_text = match load(program, Some(&mut log)) {
                Ok(_) => String::new(),
                Err(_) => {
                    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let lines: Vec<&str> = text.lines().collect();
                    lines[lines.len().saturating_sub(8)..].join("\n")
                }
            };
            Err(LoadError { errno, log: log_text })
        }
    }
}

fn load(program: &[Insn], log: Option<&mut [u8]>) -> Result<OwnedFd, Errno> {
    let bytes = encode(program);
    let mut name = [0u8; 16];
    name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME.as_bytes());
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(program.len()).map_err(|_| Errno::E2BIG)?,
        insns: bytes.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).map_err(|_| Errno::E2BIG)?;
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    owned(bpf(BPF_PROG_LOAD, &mut attr)?)
}

/// Attaches `program` to the cgroup directory `cgroup` for device access checks, with
/// `BPF_F_ALLOW_MULTI`: the kernel runs every program attached to the cgroup and to its
/// ancestors and a device is usable only when all of them allow it, so moat's program can only
/// narrow what is allowed, and coexists with programs systemd or a kubelet attach to parent
/// cgroups (attaching without the flag fails when a parent holds a multi program, and would
/// forbid them below ours). The attachment holds its own reference to the program: closing
/// `program` afterwards is fine; removing the cgroup releases it.
pub fn attach_device_program(program: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup)?,
        attach_bpf_fd: fd_u32(program)?,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Detaches one program from the cgroup directory `cgroup`.
pub fn detach_device_program(program: BorrowedFd<'_>, cgroup: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup)?,
        attach_bpf_fd: fd_u32(program)?,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

/// Ids of the device programs attached to the cgroup directory itself (not its ancestors').
pub fn attached_device_programs(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, Errno> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cgroup)?,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: 64,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)?;
    ids.truncate(usize::try_from(attr.prog_cnt).unwrap_or(0).min(64));
    Ok(ids)
}

/// The program with `id`, or None when no such program exists (any more).
pub fn program_by_id(id: u32) -> Result<Option<OwnedFd>, Errno> {
    let mut attr = GetFdByIdAttr { prog_id: id, ..Default::default() };
    match bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(fd) => owned(fd).map(Some),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A loaded program's id and name.
pub fn program_info(program: BorrowedFd<'_>) -> Result<(u32, String), Errno> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(program)?,
        info_len: u32::try_from(std::mem::size_of::<ProgInfo>()).map_err(|_| Errno::E2BIG)?,
        info: &mut info as *mut ProgInfo as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let end = info.name.iter().position(|b| *b == 0).unwrap_or(info.name.len());
    Ok((info.id, String::from_utf8_lossy(&info.name[..end]).into_owned()))
}
