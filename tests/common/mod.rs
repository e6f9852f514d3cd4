//! Helpers for the end-to-end tests: find (or build) the `lem` binary and run it in a
//! private sandbox (its own results, cache and scenario files).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod monitor;

/// The `lem` binary: `LEM_BIN`, else `target/<profile>/lem` (built with the `cli` feature
/// when it is not there yet).
pub fn lem_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(b) = std::env::var_os("LEM_BIN") {
            return PathBuf::from(b);
        }
        // tests run from target/<profile>/deps/<test>; the binary is in target/<profile>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let bin = profile_dir.join("lem");
        build_tools(&profile_dir);
        bin
    })
    .clone()
}

/// Build the `lem` binary and the fake NVML library (always ask cargo: a no-op when both are
/// fresh, a rebuild when stale).
fn build_tools(profile_dir: &Path) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut c = Command::new(env!("CARGO"));
        c.args([
            "build",
            "-q",
            "-p",
            "lem",
            "-p",
            "fake-nvml",
            "--features",
            // the features the workspace build unifies on, so this is a no-op after it
            "lem/cli lem/bench lem/criterion",
            "--bin",
            "lem",
            "--lib",
        ]);
        if release {
            c.arg("--release");
        }
        let st = c.status().unwrap();
        assert!(st.success(), "building the lem binary and fake-nvml failed");
    });
}

/// A private directory holding the fake driver as `libnvidia-ml.so.1`.
pub fn fake_nvml_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        build_tools(&profile_dir);
        let lib = profile_dir.join("libfake_nvml.so");
        assert!(lib.exists(), "{} was not built", lib.display());
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(&lib, dir.path().join("libnvidia-ml.so.1")).unwrap();
        dir
    })
    .path()
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Write a scenario file and return its `sim:` spec.
    pub fn scenario(&self, name: &str, json: &str) -> String {
        let p = self.path().join(name);
        std::fs::write(&p, json).unwrap();
        format!("sim:{}", p.display())
    }

    pub fn results(&self) -> PathBuf {
        self.path().join("results")
    }

    /// A `lem` command running in the sandbox with a private cache and results root.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(lem_bin());
        c.current_dir(self.path())
            .env("LEM_CACHE_DIR", self.path().join("cache"))
            .env("LEM_OUTPUT_DIR", self.results())
            .env("LEM_BASELINE_DURATION_S", "0.3");
        for k in [
            "LEM_DEVICE",
            "LEM_BASELINE",
            "LEM_INTERVAL_MS",
            "LEM_EXPERIMENT_ID",
            "LEM_PROCESS_INDEX",
            "RANK",
            "SLURM_PROCID",
            "SLURM_JOB_ID",
            "OMPI_COMM_WORLD_RANK",
            "TORCHELASTIC_RUN_ID",
            "LEM_WORLD_SIZE",
            "WORLD_SIZE",
            "SLURM_NTASKS",
            "SLURM_STEP_NUM_TASKS",
            "OMPI_COMM_WORLD_SIZE",
        ] {
            c.env_remove(k);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// A `lem` command that finds the fake NVML driver, playing scenario file `scenario`
    /// (relative to the sandbox), with no CUDA variables inherited.
    pub fn nvml_cmd(&self, scenario: &str) -> Command {
        let mut c = self.cmd();
        nvml_env(&mut c, &self.path().join(scenario));
        c
    }

    /// Run `lem` with the fake NVML driver playing `scenario`.
    pub fn run_nvml(&self, scenario: &str, args: &[&str]) -> Output {
        self.nvml_cmd(scenario).args(args).output().unwrap()
    }

    /// Write `json` as scenario `name` and return its path (for the fake driver).
    pub fn scenario_file(&self, name: &str, json: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, json).unwrap();
        p
    }

    pub fn json(&self, rel: &str) -> serde_json::Value {
        let p = self.path().join(rel);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap()
    }

    /// Every file under the sandbox's results root (relative paths).
    pub fn files(&self) -> Vec<String> {
        fn walk(base: &Path, p: &Path, out: &mut Vec<String>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    let path = e.path();
                    if path.is_dir() {
                        walk(base, &path, out);
                    } else {
                        out.push(path.strip_prefix(base).unwrap().display().to_string());
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self.path(), &self.results(), &mut out);
        out.sort();
        out
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A failed lem invocation: non-zero, one clear `lem: error:` line, no panic trace.
pub fn assert_clean_error(o: &Output, mentions: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked"), "panic trace: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("lem: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(
        lines[0].contains(mentions),
        "`{}` should mention `{mentions}`",
        lines[0]
    );
}

/// Point a command at the fake NVML driver playing `scenario` (an absolute path).
pub fn nvml_env(c: &mut Command, scenario: &Path) {
    c.env("LD_LIBRARY_PATH", fake_nvml_dir())
        .env("LEM_FAKE_NVML_SCENARIO", scenario)
        .env_remove("LEM_FAKE_NVML_LOG")
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("CUDA_DEVICE_ORDER");
}

/// A workspace example, built first (a no-op when fresh). `--workspace` resolves features the
/// way `cargo test --workspace` does, so after that build this compiles nothing; without it
/// cargo would build a second copy of the dependencies with the suite's features alone.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let mut c = Command::new(env!("CARGO"));
    c.args(["build", "-q", "--workspace", "--example", name]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        c.arg("--release");
    }
    assert!(
        c.status().unwrap().success(),
        "building example {name} failed"
    );
    profile_dir.join("examples").join(name)
}
