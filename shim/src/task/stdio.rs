//! The fifos containerd names for a process, turned into the fds that process gets.
//!
//! Without a tty, stdout and stderr fifos are handed to the process directly (no copy, no
//! thread: the fastest path and nothing in the shim to lose output). Stdin goes through a
//! pipe fed by a small copy thread, so CloseIO can end it and a not-yet-opened writer never
//! reads as EOF. With a tty, the pty master comes back from the sandbox and two copy threads
//! join it to the fifos; ResizePty sets its window size.
//!
//! The shim also holds a read end of every output fifo (as containerd-shim-runc-v2 does) and
//! never reads from it: when containerd dies or restarts, its read ends close, and without
//! another reader the process's writes would fail with EPIPE (and SIGPIPE) and be lost. With
//! it, writes fill the fifo and then block until the new containerd reopens it and reads on.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::sync::{Arc, Mutex};

use log::debug;
use moat_sandbox::spawn::Stdio;

use crate::error::ShimError;

/// The stdio paths of a Create or Exec request.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Copy work that starts once the process exists (its pty master is only known then).
pub struct Plumbing {
    fifo_readers: Vec<File>,
    stdin_fifo: Option<String>,
    stdin_writer: Option<File>,
    stdout_for_console: Option<File>,
    terminal: bool,
}

/// What the shim keeps per process to serve CloseIO and ResizePty.
#[derive(Default)]
pub struct IoHandle {
    stdin: Option<Arc<Mutex<Option<File>>>>,
    console: Option<File>,
    /// Held, never read: keeps the output fifos writable while containerd is away.
    _fifo_readers: Vec<File>,
    /// With a terminal: becomes true once the pty's output has all been copied to the fifo.
    output_done: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Opens the fifos. Returns the process's fds and the plumbing to start after spawn.
pub fn prepare(paths: &StdioPaths) -> Result<(Stdio, Plumbing), ShimError> {
    let mut fifo_readers = Vec::new();
    let stdout = open_output(&paths.stdout, &mut fifo_readers)?;
    let mut plumbing = Plumbing {
        fifo_readers,
        stdin_fifo: (!paths.stdin.is_empty()).then(|| paths.stdin.clone()),
        stdin_writer: None,
        stdout_for_console: None,
        terminal: paths.terminal,
    };
    if paths.terminal {
        // The pty is both stdin and stdout; the sandbox wires it inside the container.
        plumbing.stdout_for_console = stdout.map(File::from);
        return Ok((Stdio { stdin: None, stdout: None, stderr: None }, plumbing));
    }
    let stderr = open_output(&paths.stderr, &mut plumbing.fifo_readers)?;
    let stdin = if plumbing.stdin_fifo.is_some() {
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| ShimError::io("creating the stdin pipe", e.into()))?;
        plumbing.stdin_writer = Some(File::from(writer));
        Some(reader)
    } else {
        None
    };
    Ok((Stdio { stdin, stdout, stderr }, plumbing))
}

impl Plumbing {
    /// Starts the copy threads. `console` is the pty master when the process has a terminal.
    pub fn start(self, console: Option<OwnedFd>, what: &str) -> Result<IoHandle, ShimError> {
        let mut handle = IoHandle { _fifo_readers: self.fifo_readers, ..IoHandle::default() };
        let stdin_target = match (self.terminal, console) {
            (true, Some(master)) => {
                let master = File::from(master);
                let reader =
                    master.try_clone().map_err(|e| ShimError::io("dup of the pty master", e))?;
                let writer =
                    master.try_clone().map_err(|e| ShimError::io("dup of the pty master", e))?;
                if let Some(out) = self.stdout_for_console {
                    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
                    handle.output_done = Some(done_rx);
                    spawn_copy(format!("{what} tty out"), reader, out, done_tx);
                }
                handle.console = Some(master);
                Some(writer)
            }
            (true, None) => {
                return Err(ShimError::Sandbox(format!(
                    "{what}: a terminal was asked for but no pty came back"
                )));
            }
            (false, _) => self.stdin_writer,
        };
        if let (Some(fifo), Some(target)) = (self.stdin_fifo, stdin_target) {
            let slot = Arc::new(Mutex::new(Some(target)));
            handle.stdin = Some(slot.clone());
            let name = format!("{what} stdin");
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || copy_stdin(&fifo, &slot))
                .map_err(|e| ShimError::io(format!("starting the {name} thread"), e))?;
        }
        Ok(handle)
    }
}

impl IoHandle {
    /// CloseIO: the process sees end-of-file on stdin (without a tty).
    pub fn close_stdin(&self) {
        if let Some(slot) = &self.stdin {
            if let Ok(mut writer) = slot.lock() {
                writer.take();
            }
        }
    }

    /// For a process with a terminal: a receiver that turns true once the pty's output has all
    /// reached its fifo. `None` without a terminal, whose output goes to the fifo directly.
    pub fn output_drained(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.output_done.clone()
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), ShimError> {
        let Some(console) = &self.console else {
            return Err(ShimError::FailedPrecondition("the process has no terminal".into()));
        };
        let size = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call;
        // the fd is the pty master this handle owns.
        let rc = unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if rc < 0 {
            return Err(ShimError::io("resizing the pty", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Opens an output path for writing without ever blocking. A fifo first gets the read end
/// the shim keeps (pushed on `readers`; a non-blocking read open of a fifo never waits), so
/// the write open finds a reader; should it not, O_RDWR keeps the open from hanging.
fn open_output(path: &str, readers: &mut Vec<File>) -> Result<Option<OwnedFd>, ShimError> {
    if path.is_empty() {
        return Ok(None);
    }
    let path = path.strip_prefix("file://").unwrap_or(path);
    let is_fifo = std::fs::metadata(path).map(|m| m.file_type().is_fifo()).unwrap_or(false);
    let file = if is_fifo {
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| ShimError::io(format!("opening output fifo {path} for reading"), e))?;
        readers.push(reader);
        match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path) {
            Ok(f) => {
                clear_nonblock(&f)?;
                f
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| ShimError::io(format!("opening output fifo {path}"), e))?,
            Err(e) => return Err(ShimError::io(format!("opening output fifo {path}"), e)),
        }
    } else {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| ShimError::io(format!("opening output file {path}"), e))?
    };
    Ok(Some(file.into()))
}

fn clear_nonblock(f: &File) -> Result<(), ShimError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags =
        fcntl(f, FcntlArg::F_GETFL).map_err(|e| ShimError::io("F_GETFL on a fifo", e.into()))?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(f, FcntlArg::F_SETFL(flags)).map_err(|e| ShimError::io("F_SETFL on a fifo", e.into()))?;
    Ok(())
}

fn copy_stdin(fifo: &str, slot: &Mutex<Option<File>>) {
    // Blocks until containerd opens the write side, which it does right after Create/Exec.
    let mut source = match File::open(fifo) {
        Ok(f) => f,
        Err(e) => {
            debug!("stdin fifo {fifo}: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match source.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Ok(mut guard) = slot.lock() else { break };
        let Some(writer) = guard.as_mut() else { break };
        if writer.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    if let Ok(mut guard) = slot.lock() {
        guard.take();
    }
}

fn spawn_copy(name: String, mut from: File, mut to: File, done: tokio::sync::watch::Sender<bool>) {
    let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: every slave fd is closed, the process is gone.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        // The fifo's write end closes here, before the exit is reported.
        drop(to);
        let _ = done.send(true);
    });
    if let Err(e) = spawned {
        log::error!("starting the {name} thread: {e}");
    }
}
