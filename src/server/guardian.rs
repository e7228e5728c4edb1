//! A guardian process that stops servegate's servers when servegate dies
//! without a chance to do it itself (SIGKILL, the OOM killer, a crash).
//!
//! At the first server start, servegate forks a guardian holding the read end
//! of a pipe; servegate writes the id of each server process group it starts
//! (and, negated, of each it stops). The write end closes only when servegate
//! is gone, however it went: the guardian then reads end-of-file, stops every
//! group still listed (SIGTERM, a grace period, SIGKILL) and exits. On a
//! normal exit the list is empty and the guardian leaves at once.
//!
//! Hand-rolled on fork rather than a helper binary: the library runs inside
//! test binaries too, where no `servegate` executable can be re-run. After
//! fork in a threaded process only async-signal-safe calls are allowed, so the
//! guardian's loop uses raw system calls and a fixed array, never the heap.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The most groups the guardian follows at once (servers of one run).
const CAPACITY: usize = 256;

/// SIGTERM to SIGKILL, as when servegate itself is interrupted.
const GRACE_MS: u64 = 5_000;

/// The write end of the pipe; `None` until the first server, or when the
/// guardian could not be started.
static PIPE: Mutex<Option<Option<File>>> = Mutex::new(None);

/// Tells the guardian to stop group `pgid` should servegate die.
pub fn watch(pgid: i32) {
    send(pgid);
}

/// Tells the guardian that group `pgid` was stopped (or handed over).
pub fn unwatch(pgid: i32) {
    send(-pgid);
}

fn send(message: i32) {
    let mut pipe = PIPE.lock().unwrap_or_else(|e| e.into_inner());
    let pipe = pipe.get_or_insert_with(start);
    if let Some(file) = pipe {
        // A guardian that is gone cannot be helped; the signal handler and
        // the handles' own stop still cover every other way of ending.
        let _ = file.write_all(&message.to_ne_bytes());
    }
}

/// Forks the guardian; returns the write end of its pipe.
fn start() -> Option<File> {
    let mut fds: [RawFd; 2] = [0; 2];
    // SAFETY: plain system calls; the child runs only async-signal-safe code.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return None;
        }
        let [read_end, write_end] = fds;
        match libc::fork() {
            -1 => {
                libc::close(read_end);
                libc::close(write_end);
                None
            }
            0 => guard(read_end),
            _ => {
                libc::close(read_end);
                Some(File::from_raw_fd(write_end))
            }
        }
    }
}

/// The guardian: follows the list until end-of-file, then stops what is left.
///
/// # Safety
/// Runs in a freshly forked child of a threaded process: only
/// async-signal-safe calls, no allocation, and it never returns.
unsafe fn guard(read_end: RawFd) -> ! {
    // Its own group, deaf to the signals meant for servegate: a Ctrl-C or a
    // kill of servegate's group must leave the guardian to clean up after it.
    libc::setpgid(0, 0);
    for signal in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
    ] {
        libc::signal(signal, libc::SIG_IGN);
    }
    // Holding no copy of servegate's files: above all not the pipe's write
    // end (or end-of-file would never come), nor the stdout a test runner
    // waits on.
    let max = match libc::sysconf(libc::_SC_OPEN_MAX) {
        n if n > 0 => n.min(65_536) as RawFd,
        _ => 1024,
    };
    for fd in 0..max {
        if fd != read_end {
            libc::close(fd);
        }
    }
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    if null >= 0 {
        for fd in 0..3 {
            if fd != null {
                libc::dup2(null, fd);
            }
        }
    }

    let mut groups = [0i32; CAPACITY];
    let mut message = [0u8; 4];
    let mut have = 0;
    loop {
        let n = libc::read(
            read_end,
            message[have..].as_mut_ptr().cast(),
            message.len() - have,
        );
        if n < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break; // servegate is gone
        }
        have += n as usize;
        if have < message.len() {
            continue;
        }
        have = 0;
        let id = i32::from_ne_bytes(message);
        if id > 0 {
            if let Some(slot) = groups.iter_mut().find(|g| **g == 0) {
                *slot = id;
            }
        } else if let Some(slot) = groups.iter_mut().find(|g| **g == -id) {
            *slot = 0;
        }
    }

    let alive = |pgid: i32| libc::kill(-pgid, 0) == 0;
    for &pgid in groups.iter().filter(|&&g| g > 0) {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let step = libc::timespec {
        tv_sec: 0,
        tv_nsec: 20_000_000,
    };
    for _ in 0..GRACE_MS / 20 {
        if !groups.iter().any(|&g| g > 0 && alive(g)) {
            break;
        }
        libc::nanosleep(&step, std::ptr::null_mut());
    }
    for &pgid in groups.iter().filter(|&&g| g > 0) {
        if alive(pgid) {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    libc::_exit(0)
}
