//! `lem run` and signals, end to end on simulated devices: what the measured command
//! receives when lem is interrupted, from a terminal or from `kill`.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{stderr, Sandbox};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const CONSTANT: &str = r#"{"name": "Sim 250 W", "idle_w": 250.0}"#;

/// The variable that turns this test binary into the counting command (see
/// [`signal_counting_command`]): the directory it reports into.
const COUNTER_DIR: &str = "LEM_TEST_SIGNAL_COUNTER_DIR";

static SIGINTS: AtomicU32 = AtomicU32::new(0);

extern "C" fn count_sigint(_: libc::c_int) {
    SIGINTS.fetch_add(1, Ordering::SeqCst);
}

/// Not a test on its own (it returns at once without the variable): the command the tests
/// below measure. This binary runs itself with only this test selected; it counts every
/// SIGINT delivered to it with a C handler (no coalescing by an interpreter), writes `ready`
/// once the handler is in place, holds for `LEM_TEST_HOLD_S` seconds, then writes the count
/// to `count` and exits 0.
#[test]
fn signal_counting_command() {
    let Some(dir) = std::env::var_os(COUNTER_DIR).map(PathBuf::from) else {
        return;
    };
    let hold: f64 = std::env::var("LEM_TEST_HOLD_S").unwrap().parse().unwrap();
    // SAFETY: the handler only increments an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            count_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    std::fs::write(dir.join("ready"), b"").unwrap();
    let t = Instant::now();
    while t.elapsed().as_secs_f64() < hold {
        std::thread::sleep(Duration::from_millis(10));
    }
    let n = SIGINTS.load(Ordering::SeqCst);
    std::fs::write(dir.join("count"), n.to_string()).unwrap();
    std::process::exit(0);
}

/// `lem run` measuring the counting command for `hold_s` seconds, reporting into `dir`.
fn lem_run_counter(sb: &Sandbox, exp: &str, dir: &Path, hold_s: f64) -> Command {
    let dev = sb.scenario("c.json", CONSTANT);
    let me = std::env::current_exe().unwrap();
    let mut c = sb.cmd();
    c.args([
        "run",
        "--device",
        &dev,
        "--experiment-id",
        exp,
        "--no-baseline",
    ])
    .arg("--")
    .arg(me)
    .args(["--exact", "signal_counting_command", "--test-threads", "1"])
    .env(COUNTER_DIR, dir)
    .env("LEM_TEST_HOLD_S", hold_s.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

fn wait_for(path: &Path, what: &str) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn count(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A pseudo-terminal: (master, slave).
fn open_pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: plain libc calls on descriptors this function owns; ptsname_r writes into a
    // buffer of the length given.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(m);
        assert_eq!(libc::grantpt(m), 0);
        assert_eq!(libc::unlockpt(m), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        assert!(
            s >= 0,
            "open the pty slave: {}",
            std::io::Error::last_os_error()
        );
        (master, OwnedFd::from_raw_fd(s))
    }
}

/// Spawn `c` as the leader of a new session whose controlling terminal is the pty's slave
/// (its stdin): the terminal's foreground process group is then lem's, as in a shell.
fn spawn_on_terminal(mut c: Command, slave: OwnedFd) -> Child {
    c.stdin(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.spawn().unwrap()
}

/// Ctrl-C typed on lem's terminal reaches lem and the command together (they share the
/// terminal's foreground process group): lem must not send the command a second SIGINT,
/// which many tools take as "force quit, skip the cleanup". (lem's second SIGINT used to be
/// lost now and then, when it came while the terminal's was still pending: hence several
/// presses.)
#[test]
fn ctrl_c_on_the_terminal_reaches_the_command_once() {
    let sb = Sandbox::new();
    let dir = sb.path().join("counter");
    std::fs::create_dir(&dir).unwrap();
    let presses = 5;
    let (master, slave) = open_pty();
    let lem = spawn_on_terminal(lem_run_counter(&sb, "tty", &dir, 2.5), slave);
    wait_for(&dir.join("ready"), "the command's start");
    for _ in 0..presses {
        // the terminal's interrupt character (VINTR, ^C by default)
        // SAFETY: writes one byte from a live buffer to an open descriptor.
        let w = unsafe { libc::write(master.as_raw_fd(), b"\x03".as_ptr().cast(), 1) };
        assert_eq!(w, 1);
        std::thread::sleep(Duration::from_millis(250));
    }
    let o = lem.wait_with_output().unwrap();
    drop(master);
    assert_eq!(count(&dir), presses, "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(128 + libc::SIGINT), "{}", stderr(&o));
    let v = sb.json("results/raw/tty/process_0.json");
    assert_eq!(v["interrupted"], true);
    assert_eq!(v["command"]["exit_code"], 0);
}

/// A SIGINT sent to lem alone (`kill -INT <lem>`) did not reach the command: lem forwards it,
/// once.
#[test]
fn sigint_sent_to_lem_alone_is_forwarded_once() {
    let sb = Sandbox::new();
    let dir = sb.path().join("counter");
    std::fs::create_dir(&dir).unwrap();
    let mut c = lem_run_counter(&sb, "kill", &dir, 1.5);
    c.stdin(Stdio::null());
    let lem = c.spawn().unwrap();
    wait_for(&dir.join("ready"), "the command's start");
    // SAFETY: signals the lem process this test spawned.
    assert_eq!(
        unsafe { libc::kill(lem.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let o = lem.wait_with_output().unwrap();
    assert_eq!(count(&dir), 1, "{}", stderr(&o));
    // the command handled the SIGINT and exited 0; the run was interrupted all the same
    assert_eq!(o.status.code(), Some(128 + libc::SIGINT), "{}", stderr(&o));
    assert_eq!(
        sb.json("results/raw/kill/process_0.json")["interrupted"],
        true
    );
}

/// Whether process `pid` catches signal `sig` (its `SigCgt` mask in /proc).
fn catches(pid: u32, sig: libc::c_int) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

/// A SIGTERM that arrives once lem catches it but before the command is spawned (here during
/// the first cycle's random start delay, made long by a 4 s sensor period) is not lost: the
/// command is never started just to be stopped, and lem exits 128 + SIGTERM. (A signal in the
/// instant between the delay and the spawn is held and delivered to the command as soon as it
/// starts; that instant cannot be hit deterministically from outside.)
#[test]
fn sigterm_before_the_command_starts_is_not_lost() {
    let sb = Sandbox::new();
    let period_s = 4.0;
    let dev = sb.scenario(
        "s.json",
        r#"{"idle_w": 100, "sensor": {"period_ms": 4000, "sensing_duty": 0.25}}"#,
    );
    // a seed whose first delay leaves ample time to signal lem before the spawn
    let seed = (0..1000u64)
        .find(|&s| (2.0..3.0).contains(&lem::args::cycle_start_delay(s, 0, period_s)))
        .unwrap();
    let lem = sb
        .cmd()
        .args(["run", "--device", &dev, "--experiment-id", "early"])
        .args([
            "--no-baseline",
            "--cycles",
            "2",
            "--seed",
            &seed.to_string(),
        ])
        .args(["--", "sleep", "5"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !catches(lem.id(), libc::SIGTERM) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "lem never caught SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signals the lem process this test spawned.
    assert_eq!(
        unsafe { libc::kill(lem.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let o = lem.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(128 + libc::SIGTERM));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("interrupted by signal 15 before the command started"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the command (sleep 5) never ran"
    );
    assert!(!sb
        .path()
        .join("results/raw/early/process_0_cycle_0.json")
        .exists());
}

/// The pid of a child of process `pid` (scanning /proc), if it has one.
fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // the parent pid is the 2nd field after the `(comm)` field
        let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
        (ppid == pid.to_string()).then(|| e.file_name().to_str()?.parse().ok())?
    })
}

/// Whether process `pid` still runs (gone, or a zombie waiting to be reaped, is not running).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// A lem killed outright (SIGKILL, the OOM killer) cannot forward anything: the command gets
/// SIGTERM from the kernel instead of running on unmeasured.
#[test]
fn the_command_does_not_outlive_a_killed_lem() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let mut lem = sb
        .cmd()
        .args(["run", "--device", &dev, "--experiment-id", "orphan"])
        .args(["--no-baseline", "--", "sleep", "30"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    let child = loop {
        if let Some(c) = child_of(lem.id()) {
            break c;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "sleep never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    lem.kill().unwrap();
    lem.wait().unwrap();
    let killed = Instant::now();
    while running(child) {
        if killed.elapsed() > Duration::from_secs(3) {
            // SAFETY: ends the orphan this test made.
            unsafe { libc::kill(child as libc::pid_t, libc::SIGKILL) };
            panic!("the command outlived lem");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `--cycles N` interrupted between two cycles exits 128 + the signal (not the last cycle's
/// 0) and runs no further cycle.
#[test]
fn an_interruption_between_cycles_stops_them_and_exits_128_plus_the_signal() {
    let sb = Sandbox::new();
    let dev = sb.scenario("c.json", CONSTANT);
    let lem = sb
        .cmd()
        .args(["run", "--device", &dev, "--experiment-id", "between"])
        .args(["--no-baseline", "--cycles", "3", "--cycle-gap-s", "5"])
        .args(["--", "true"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let raw = sb.path().join("results/raw/between");
    wait_for(&raw.join("process_0_cycle_0.json"), "the first cycle");
    // SAFETY: signals the lem process this test spawned.
    assert_eq!(
        unsafe { libc::kill(lem.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let t = Instant::now();
    let o = lem.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "the gap ran on");
    assert_eq!(o.status.code(), Some(128 + libc::SIGINT), "{}", stderr(&o));
    assert!(!raw.join("process_0_cycle_1.json").exists());
    let v = sb.json("results/raw/between/process_0_cycle_0.json");
    assert_eq!(v["interrupted"], false);
    assert_eq!(v["command"]["exit_code"], 0);
    assert!(
        stderr(&o).contains("remaining cycles are not run"),
        "{}",
        stderr(&o)
    );
}
