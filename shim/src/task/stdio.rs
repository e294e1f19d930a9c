//! The fifos containerd names for a process, turned into the fds that process gets.
//!
//! Without a tty, stdout and stderr fifos are handed to the process directly (no copy, no
//! thread: the fastest path and nothing in the shim to lose output). Stdin goes through a
//! pipe fed by a small copy thread, so CloseIO can end it and a not-yet-opened writer never
//! reads as EOF. With a tty, the pty master comes back from the sandbox and two copy threads
//! join it to the fifos; ResizePty sets its window size.
//!
//! A tenant controls the far end of every one of these fds (a process that never reads its
//! stdin, a pty it fills), so the copy threads use non-blocking fds and wait only in `poll`,
//! and nothing the task service holds (its state lock, the handle's stop pipe) is ever held
//! across a read or write: CloseIO, Kill and Delete cannot wait on a tenant. Each stdin
//! thread ends on end-of-file, on CloseIO, or when its process exits or is deleted.
//!
//! The shim also holds a read end of every output fifo (as containerd-shim-runc-v2 does) and
//! never reads from it: when containerd dies or restarts, its read ends close, and without
//! another reader the process's writes would fail with EPIPE (and SIGPIPE) and be lost. With
//! it, writes fill the fifo and then block until the new containerd reopens it and reads on.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::sync::Mutex;

use log::debug;
use moat_sandbox::spawn::Stdio;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A failure to wire a process's stdio: which step, on which path or fd.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// `pipe2` for the stdin pipe or the stdin copy's stop pipe (`which` names it).
    #[error("creating the {which}: {source}")]
    Pipe { which: &'static str, source: std::io::Error },
    #[error("opening output fifo {path} for reading: {source}")]
    OpenFifoReader { path: String, source: std::io::Error },
    #[error("opening output fifo {path}: {source}")]
    OpenFifo { path: String, source: std::io::Error },
    #[error("opening output file {path}: {source}")]
    OpenFile { path: String, source: std::io::Error },
    /// `fcntl(F_GETFL)` / `fcntl(F_SETFL)` (`op`) while setting O_NONBLOCK.
    #[error("{op}: {source}")]
    Fcntl { op: &'static str, source: std::io::Error },
    #[error("dup of the pty master: {0}")]
    DupPty(#[source] std::io::Error),
    /// `what` names the process.
    #[error("{what}: a terminal was asked for but no pty came back")]
    NoPty { what: String },
    #[error("starting the {name} thread: {source}")]
    Thread { name: String, source: std::io::Error },
    /// ResizePty on a process without a terminal.
    #[error("the process has no terminal")]
    NoTerminal,
    #[error("resizing the pty: {0}")]
    Resize(#[source] std::io::Error),
}

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
///
/// Nothing here ever waits on the tenant: CloseIO only closes `stdin_stop` (the lock is held
/// for that `close` alone, never across I/O), and the copy thread, which does all the
/// reading and writing with non-blocking fds and `poll`, sees it and ends.
#[derive(Default)]
pub struct IoHandle {
    /// The write end of the stdin copy thread's stop pipe: closing it (CloseIO, the process's
    /// exit, or dropping the handle) ends the thread.
    stdin_stop: Mutex<Option<OwnedFd>>,
    console: Option<File>,
    /// Held, never read: keeps the output fifos writable while containerd is away.
    _fifo_readers: Vec<File>,
    /// With a terminal: becomes true once the pty's output has all been copied to the fifo.
    output_done: Option<tokio::sync::watch::Receiver<bool>>,
}

/// Opens the fifos. Returns the process's fds and the plumbing to start after spawn.
pub fn prepare(paths: &StdioPaths) -> Result<(Stdio, Plumbing), StdioError> {
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
            .map_err(|e| StdioError::Pipe { which: "stdin pipe", source: e.into() })?;
        // Only our end is non-blocking (the two ends are separate open files): the process
        // reads its stdin as usual.
        let writer = File::from(writer);
        set_nonblock(&writer, true)?;
        plumbing.stdin_writer = Some(writer);
        Some(reader)
    } else {
        None
    };
    Ok((Stdio { stdin, stdout, stderr }, plumbing))
}

impl Plumbing {
    /// Starts the copy threads. `console` is the pty master when the process has a terminal.
    pub fn start(self, console: Option<OwnedFd>, what: &str) -> Result<IoHandle, StdioError> {
        let mut handle = IoHandle { _fifo_readers: self.fifo_readers, ..IoHandle::default() };
        let stdin_target = match (self.terminal, console) {
            (true, Some(master)) => {
                let master = File::from(master);
                // The dups share one open file, so both copies below see O_NONBLOCK: they
                // wait in poll, never in read or write.
                set_nonblock(&master, true)?;
                let reader = master.try_clone().map_err(StdioError::DupPty)?;
                let writer = master.try_clone().map_err(StdioError::DupPty)?;
                if let Some(out) = self.stdout_for_console {
                    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
                    handle.output_done = Some(done_rx);
                    spawn_copy(format!("{what} tty out"), reader, out, done_tx);
                }
                handle.console = Some(master);
                Some(writer)
            }
            (true, None) => {
                return Err(StdioError::NoPty { what: what.to_string() });
            }
            (false, _) => self.stdin_writer,
        };
        if let (Some(fifo), Some(target)) = (self.stdin_fifo, stdin_target) {
            let (stop_r, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| StdioError::Pipe { which: "stdin stop pipe", source: e.into() })?;
            handle.stdin_stop = Mutex::new(Some(stop_w));
            let name = format!("{what} stdin");
            let thread_name = name.clone();
            std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || copy_stdin(&thread_name, &fifo, target, stop_r))
                .map_err(|source| StdioError::Thread { name, source })?;
        }
        Ok(handle)
    }
}

impl IoHandle {
    /// CloseIO, the process's exit, or its delete: the stdin copy thread hands over what it
    /// can without waiting, then closes the process's stdin (end-of-file without a tty) and
    /// ends. Never blocks: it only closes the thread's stop pipe.
    pub fn close_stdin(&self) {
        let stop = match self.stdin_stop.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(stop);
    }

    /// For a process with a terminal: a receiver that turns true once the pty's output has all
    /// reached its fifo. `None` without a terminal, whose output goes to the fifo directly.
    pub fn output_drained(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.output_done.clone()
    }

    /// ResizePty.
    pub fn resize(&self, width: u32, height: u32) -> Result<(), StdioError> {
        let Some(console) = &self.console else {
            return Err(StdioError::NoTerminal);
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
            return Err(StdioError::Resize(std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Opens an output path for writing without ever blocking. A fifo first gets the read end
/// the shim keeps (pushed on `readers`; a non-blocking read open of a fifo never waits), so
/// the write open finds a reader; should it not, O_RDWR keeps the open from hanging.
fn open_output(path: &str, readers: &mut Vec<File>) -> Result<Option<OwnedFd>, StdioError> {
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
            .map_err(|source| StdioError::OpenFifoReader { path: path.to_string(), source })?;
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
                .map_err(|source| StdioError::OpenFifo { path: path.to_string(), source })?,
            Err(source) => return Err(StdioError::OpenFifo { path: path.to_string(), source }),
        }
    } else {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| StdioError::OpenFile { path: path.to_string(), source })?
    };
    Ok(Some(file.into()))
}

fn clear_nonblock(f: &File) -> Result<(), StdioError> {
    set_nonblock(f, false)
}

fn set_nonblock(f: &File, on: bool) -> Result<(), StdioError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(f, FcntlArg::F_GETFL)
        .map_err(|e| StdioError::Fcntl { op: "F_GETFL", source: e.into() })?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl(f, FcntlArg::F_SETFL(flags))
        .map_err(|e| StdioError::Fcntl { op: "F_SETFL", source: e.into() })?;
    Ok(())
}

/// Most a stop hands over after it was asked for (what containerd wrote before CloseIO).
const STOP_FLUSH_MAX: usize = 1 << 20;

/// Waits in `poll` for any of `fds` (`None` entries are left out, so a fd we have no use for
/// now cannot wake us with a standing POLLHUP). Returns each one's events, `None` for those
/// left out; `Err` when poll itself fails.
fn wait_for(
    fds: [Option<(BorrowedFd<'_>, PollFlags)>; 3],
) -> Result<[Option<PollFlags>; 3], Errno> {
    let mut list = Vec::with_capacity(3);
    let mut at = [None; 3];
    for (i, entry) in fds.iter().enumerate() {
        if let Some((fd, events)) = entry {
            at[i] = Some(list.len());
            list.push(PollFd::new(*fd, *events));
        }
    }
    loop {
        match poll(&mut list, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(_) => break,
        }
    }
    Ok(at.map(|i| i.map(|i| list[i].revents().unwrap_or(PollFlags::empty()))))
}

/// Copies the stdin fifo into the process's stdin (its pipe, or the pty master) until
/// end-of-file, until nobody reads the process's stdin any more, or until `stop` closes
/// (CloseIO, the process's exit, the process deleted). Every fd is non-blocking and the
/// thread waits only in `poll`, `stop` included, so it always ends when asked and holds
/// nothing anyone else waits for. The fifo is opened non-blocking too: a writer that never
/// comes (containerd gone, a client that never attached) cannot keep the thread in `open`.
fn copy_stdin(what: &str, fifo: &str, target: File, stop: OwnedFd) {
    // A fifo opened O_NONBLOCK for reading does not report POLLHUP before its first writer,
    // so a writer that has not opened it yet is not taken for end-of-file.
    let source = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(fifo) {
        Ok(f) => f,
        Err(e) => {
            debug!("{what}: stdin fifo {fifo}: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    // buf[start..end] is read from the fifo and not yet written.
    let (mut start, mut end) = (0, 0);
    loop {
        let pending = start < end;
        let ready = wait_for([
            Some((stop.as_fd(), PollFlags::POLLIN)),
            (!pending).then(|| (source.as_fd(), PollFlags::POLLIN)),
            // Without POLLOUT it still reports POLLERR once no reader is left.
            Some((target.as_fd(), if pending { PollFlags::POLLOUT } else { PollFlags::empty() })),
        ]);
        let Ok([stopped, readable, writable]) = ready else { break };
        if stopped.is_some_and(|r| !r.is_empty()) {
            flush_without_waiting(&source, &target, &mut buf, start, end);
            break;
        }
        let writable = writable.unwrap_or(PollFlags::empty());
        if writable.intersects(PollFlags::POLLERR | PollFlags::POLLHUP) {
            // Nobody reads the process's stdin any more (it exited).
            break;
        }
        if pending {
            if writable.contains(PollFlags::POLLOUT) {
                match nix::unistd::write(&target, &buf[start..end]) {
                    Ok(n) => start += n,
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
            continue;
        }
        if readable.is_some_and(|r| !r.is_empty()) {
            match nix::unistd::read(&source, &mut buf) {
                Ok(0) => break, // end-of-file: containerd closed stdin
                Ok(n) => (start, end) = (0, n),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
    debug!("{what}: stdin copy ended");
    // Dropping `target` here closes the process's stdin (end-of-file without a tty).
}

/// After a stop: whatever is already read, then what the fifo holds now, as far as the
/// process's stdin takes it without waiting (bounded); the rest is dropped.
fn flush_without_waiting(source: &File, target: &File, buf: &mut [u8], start: usize, end: usize) {
    let (mut start, mut end) = (start, end);
    let mut moved = 0;
    while moved < STOP_FLUSH_MAX {
        if start < end {
            match nix::unistd::write(target, &buf[start..end]) {
                Ok(n) => {
                    start += n;
                    moved += n;
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            continue;
        }
        match nix::unistd::read(source, buf) {
            Ok(n) if n > 0 => (start, end) = (0, n),
            Err(Errno::EINTR) => {}
            _ => return,
        }
    }
}

/// Copies a pty master's output to the output fifo until the pty closes (EIO once every
/// slave fd is gone). The master is non-blocking (shared with the stdin copy): this thread
/// waits in `poll`. The write to the fifo may block while containerd is slow or away; that
/// holds back this process's output only, and no lock.
fn spawn_copy(name: String, from: File, mut to: File, done: tokio::sync::watch::Sender<bool>) {
    let spawned = std::thread::Builder::new().name(name.clone()).spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if wait_for([Some((from.as_fd(), PollFlags::POLLIN)), None, None]).is_err() {
                break;
            }
            match nix::unistd::read(&from, &mut buf) {
                Err(Errno::EAGAIN | Errno::EINTR) => continue,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    /// A stdin fifo containerd has filled for a process that never reads: the copy thread is
    /// stuck with a full pipe, and CloseIO must still return at once and end it.
    #[test]
    fn close_stdin_does_not_wait_for_a_process_that_never_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("stdin");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let paths = StdioPaths { stdin: fifo.display().to_string(), ..StdioPaths::default() };
        let (stdio, plumbing) = prepare(&paths).expect("prepare");
        let handle = plumbing.start(None, "test").expect("start");
        // containerd's side: a writer that fills the fifo as far as it goes.
        let writer = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open the fifo for writing");
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        let until = Instant::now() + Duration::from_secs(5);
        // Until the pipe to the process and the fifo are both full (the copy is stuck).
        while Instant::now() < until {
            match nix::unistd::write(&writer, &chunk) {
                Ok(n) => written += n,
                Err(Errno::EAGAIN) if written >= 128 * 1024 => break,
                Err(Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("writing the fifo: {e}"),
            }
        }
        assert!(written >= 128 * 1024, "only {written} bytes went in");

        let began = Instant::now();
        handle.close_stdin();
        assert!(
            began.elapsed() < Duration::from_millis(100),
            "close_stdin took {:?}",
            began.elapsed()
        );

        // The thread ends and closes the pipe: the process's stdin reaches end-of-file.
        let mut stdin = File::from(stdio.stdin.expect("a stdin pipe"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = tx.send(stdin.read_to_end(&mut all).map(|_| all.len()));
        });
        let got = rx.recv_timeout(Duration::from_secs(5)).expect("stdin never reached EOF");
        assert!(got.expect("reading stdin") > 0, "nothing reached the process");
        drop(writer);
    }
}
