//! `lem run`'s signals: SIGINT, SIGTERM and SIGHUP mark the run interrupted and reach the
//! measured command once.
//!
//! The command stays in lem's process group (so that it keeps the terminal). A signal that
//! the kernel sends to the whole group, Ctrl-C or a hangup from the terminal, arrives with
//! `si_code == SI_KERNEL` and has reached the command already: lem does not send it again (a
//! second Ctrl-C is "force quit, skip the cleanup" to many tools). A signal sent to lem alone
//! (`kill <lem pid>`: `SI_USER`, `SI_QUEUE`, `SI_TKILL`) is forwarded, as is a group signal
//! when the command has left lem's group (`setsid`, `setpgid`). A `kill` to the whole group
//! (`kill -- -PGID`) cannot be told apart from one to lem alone: the command gets it twice.
//!
//! A signal to forward that arrives before the command's pid is known (after the handlers
//! are installed, before the spawn returns) is held and delivered as soon as the command is
//! spawned, so that it is not lost and the command does not run to completion.

use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::Failure;

/// The command's pid while it runs, else 0.
static CHILD: AtomicI32 = AtomicI32::new(0);
/// A signal to forward that no command has received yet, else 0.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// The first signal lem received, else 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The signals that interrupt a run.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Whether a signal lem received is sent on to the command: not when the kernel sent it to
/// lem's whole process group (`si_code` `SI_KERNEL`) and the command is in that group.
pub(crate) fn should_forward(si_code: libc::c_int, child_in_lems_group: bool) -> bool {
    !(sent_to_the_group(si_code) && child_in_lems_group)
}

/// Whether `si_code` says the kernel sent the signal to the whole process group: the
/// terminal driver's Ctrl-C, Ctrl-\ and hangup do, with `SI_KERNEL`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sent_to_the_group(si_code: libc::c_int) -> bool {
    si_code == libc::SI_KERNEL
}

/// Elsewhere a terminal's signal cannot be told from a `kill`: forward everything.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn sent_to_the_group(_si_code: libc::c_int) -> bool {
    false
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let _ = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo (checked for null anyway).
    let si_code = if info.is_null() {
        0
    } else {
        unsafe { (*info).si_code }
    };
    let pid = CHILD.load(Ordering::SeqCst);
    // SAFETY: getpgid and getpgrp are plain system calls, safe in a signal handler.
    let in_group = pid > 0 && unsafe { libc::getpgid(pid) == libc::getpgrp() };
    if should_forward(si_code, in_group) {
        PENDING.store(sig, Ordering::SeqCst);
        deliver_pending();
    }
}

/// Send the held signal, if any, to the command, if it runs. The handler stores the signal
/// before it reads the pid, and `child_started` stores the pid before it calls this: one of
/// the two sees the other's store, and the swap lets only one of them send it.
fn deliver_pending() {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid <= 0 {
        return;
    }
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: kill is async-signal-safe; pid is the command this process spawned.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Catch SIGINT, SIGTERM and SIGHUP: from now on they interrupt the run instead of ending
/// lem.
pub fn install() -> Result<(), Failure> {
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction is valid; the handler only touches atomics and makes
        // async-signal-safe system calls.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(Failure::new(format!(
                "cannot catch signal {sig}: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// The command `pid` is running: signals go on to it, starting with one held for it.
pub fn child_started(pid: u32) {
    CHILD.store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);
    deliver_pending();
}

/// The command has ended.
pub fn child_ended() {
    CHILD.store(0, Ordering::SeqCst);
}

/// Have the kernel send the command SIGTERM if lem dies before it (SIGKILL, the OOM killer),
/// so that it does not run on unmeasured (Linux: `PR_SET_PDEATHSIG`). The signal comes when
/// the thread that spawned the command exits: spawn from the thread that waits for it. Only
/// the command itself gets it, not its own children.
#[cfg(target_os = "linux")]
pub fn end_with_lem(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let lem = std::process::id();
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // lem died before the request took: do not start the command at all
            if u32::try_from(libc::getppid()).ok() != Some(lem) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// No parent-death signal here: a command outlives a lem killed outright.
#[cfg(not(target_os = "linux"))]
pub fn end_with_lem(_cmd: &mut Command) {}

/// The first of SIGINT, SIGTERM, SIGHUP that lem received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_signal_is_not_sent_again_to_a_command_in_lems_group() {
        assert!(!should_forward(libc::SI_KERNEL, true));
    }

    #[test]
    fn a_terminal_signal_is_sent_on_to_a_command_that_left_lems_group() {
        assert!(should_forward(libc::SI_KERNEL, false));
    }

    #[test]
    fn a_signal_sent_to_lem_alone_is_sent_on() {
        for code in [libc::SI_USER, libc::SI_QUEUE, libc::SI_TKILL] {
            assert!(should_forward(code, true), "{code}");
            assert!(should_forward(code, false), "{code}");
        }
    }
}
