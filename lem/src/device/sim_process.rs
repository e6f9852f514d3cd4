//! Simulated GPU processes: the scenario's `processes` block (per-process SM-utilisation and
//! memory traces) and what a simulated driver answers from it, the way NVML would: the
//! processes running now, and one utilisation sample per process per sampling period.

use serde::{Deserialize, Serialize};

use super::process::{
    parent_of, GpuProcess, ProcessResult, ProcessSamples, ProcessUnavailable,
    ProcessUnavailableKind, ProcessUtilSample,
};

/// How long the simulated driver keeps per-process samples, s (a real driver keeps a
/// bounded buffer too).
pub const PROCESS_BUFFER_S: f64 = 10.0;

/// The scenario's `processes` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessScenario {
    /// The driver's per-process sampling period, ms; default 200 (NVML's varies by product,
    /// about 1/6 s is common).
    #[serde(default = "default_sample_ms")]
    pub sample_ms: f64,
    /// What the driver answers: `supported` (default), `not_supported` (the utilisation call
    /// answers NOT_SUPPORTED; the process list still works) or `no_permission` (both calls
    /// answer NO_PERMISSION).
    #[serde(default = "default_support")]
    pub support: String,
    /// The processes.
    #[serde(default)]
    pub list: Vec<ProcessTrace>,
}

/// One process's trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessTrace {
    /// Its pid: a number (a process of someone else's; pids at or above 4194304 exist on no
    /// Linux host), `"self"` (the process that loaded the device) or `"child"` (that
    /// process's child, e.g. the command `lem run` spawned; absent while there is none).
    pub pid: PidSpec,
    /// Its command name, where `/proc` does not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The device it runs on (0-based, within this scenario's `count`); default 0.
    #[serde(default)]
    pub device: u32,
    /// When it runs and how much of the SMs it uses; it is listed only inside a segment.
    pub segments: Vec<ProcessSegment>,
}

/// A pid, or a placeholder for a process only known when the device is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PidSpec {
    /// A fixed pid.
    Pid(u32),
    /// `"self"` or `"child"`.
    Named(String),
}

/// A stretch of a process's trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSegment {
    /// Start, seconds since the device was opened.
    pub start_s: f64,
    /// End, seconds since open (exclusive).
    pub end_s: f64,
    /// SM utilisation, percent.
    pub sm_pct: f64,
    /// Device memory in use, MiB; default 0.
    #[serde(default)]
    pub memory_mb: f64,
}

fn default_sample_ms() -> f64 {
    200.0
}
fn default_support() -> String {
    "supported".into()
}

impl ProcessScenario {
    /// Check the block; `count` is the scenario's number of devices.
    pub(super) fn validate(&self, count: u32) -> std::result::Result<(), String> {
        if !(self.sample_ms.is_finite() && self.sample_ms >= 1.0 && self.sample_ms <= 10_000.0) {
            return Err(format!(
                "processes.sample_ms must be within 1..=10000, got {}",
                self.sample_ms
            ));
        }
        if !["supported", "not_supported", "no_permission"].contains(&self.support.as_str()) {
            return Err(format!(
                "processes.support must be supported, not_supported or no_permission, got `{}`",
                self.support
            ));
        }
        for (i, p) in self.list.iter().enumerate() {
            let at = format!("processes.list[{i}]");
            if let PidSpec::Named(n) = &p.pid {
                if n != "self" && n != "child" {
                    return Err(format!(
                        "{at}.pid must be a number, \"self\" or \"child\", got \"{n}\""
                    ));
                }
            }
            if p.device >= count {
                return Err(format!(
                    "{at}.device is {}, but the scenario has {count} device(s)",
                    p.device
                ));
            }
            let mut segs: Vec<&ProcessSegment> = p.segments.iter().collect();
            segs.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
            for s in &segs {
                if !(s.start_s.is_finite() && s.start_s >= 0.0 && s.end_s > s.start_s) {
                    return Err(format!(
                        "{at}: a segment must have 0 <= start_s < end_s, got [{}, {})",
                        s.start_s, s.end_s
                    ));
                }
                if !(0.0..=100.0).contains(&s.sm_pct) {
                    return Err(format!(
                        "{at}: sm_pct must be within 0..=100, got {}",
                        s.sm_pct
                    ));
                }
                if !(s.memory_mb.is_finite() && s.memory_mb >= 0.0) {
                    return Err(format!("{at}: memory_mb must be >= 0, got {}", s.memory_mb));
                }
            }
            if let Some(w) = segs.windows(2).find(|w| w[1].start_s < w[0].end_s) {
                return Err(format!(
                    "{at}: segments overlap: [{}, {}) and [{}, {})",
                    w[0].start_s, w[0].end_s, w[1].start_s, w[1].end_s
                ));
            }
        }
        Ok(())
    }

    fn check(&self, utilisation: bool, mig: bool) -> ProcessResult<()> {
        match self.support.as_str() {
            "no_permission" => Err(ProcessUnavailable::new(
                ProcessUnavailableKind::NoPermission,
                "the driver denies permission to read GPU processes (NO_PERMISSION)",
            )),
            "not_supported" if utilisation => Err(ProcessUnavailable::new(
                ProcessUnavailableKind::NotSupported,
                "the driver does not support per-process utilisation (NOT_SUPPORTED)",
            )),
            _ if utilisation && mig => Err(ProcessUnavailable::mig()),
            _ => Ok(()),
        }
    }

    /// Whether a trace names `"child"`.
    pub fn names_child(&self) -> bool {
        self.list
            .iter()
            .any(|p| matches!(&p.pid, PidSpec::Named(n) if n == "child"))
    }

    /// The processes on device `device` at `t` s since open; `child` is what `"child"`
    /// names (see [`child_of_self`]).
    pub fn processes_at(
        &self,
        device: u32,
        t: f64,
        child: Option<u32>,
    ) -> ProcessResult<Vec<GpuProcess>> {
        self.check(false, false)?;
        Ok(self
            .on(device, child)
            .filter_map(|(p, pid)| {
                let seg = p.segments.iter().find(|s| s.start_s <= t && t < s.end_s)?;
                Some(GpuProcess {
                    pid,
                    memory_mb: Some(seg.memory_mb),
                    command: p.command.clone(),
                })
            })
            .collect())
    }

    /// The utilisation samples of device `device` newer than `since_us` (µs since open) up
    /// to `t` s since open: one per process and period `((k-1)P, kP]` it ran in, with the
    /// mean SM utilisation of its trace over the period; none older than
    /// [`PROCESS_BUFFER_S`]. `mig`: the device is in MIG mode. While a `"child"` trace has
    /// no child to name yet, the driver holds every sample back (they come with a later
    /// read, as a real driver's buffered samples do), so that the command `lem run` spawned
    /// gets its trace from the window's start.
    ///
    /// # Errors
    /// As the scenario's `support` says, or MIG.
    pub fn samples_at(
        &self,
        device: u32,
        t: f64,
        since_us: u64,
        mig: bool,
        child: Option<u32>,
    ) -> ProcessResult<ProcessSamples> {
        self.check(true, mig)?;
        let waiting = child.is_none()
            && self
                .list
                .iter()
                .any(|p| p.device == device && p.pid == PidSpec::Named("child".into()));
        if waiting {
            return Ok(ProcessSamples {
                now_us: (t * 1e6).round() as u64,
                samples: Vec::new(),
            });
        }
        let period = self.sample_ms / 1000.0;
        let to_us = |k: u64| (k as f64 * self.sample_ms * 1000.0).round() as u64;
        let last = (t / period + 1e-9).floor().max(0.0) as u64;
        let oldest = ((t - PROCESS_BUFFER_S) / period).ceil().max(1.0) as u64;
        let after = (since_us as f64 / 1e6 / period).floor().max(0.0) as u64;
        let mut samples = Vec::new();
        let procs: Vec<(&ProcessTrace, u32)> = self.on(device, child).collect();
        for k in oldest.max(after).max(1)..=last {
            let t_us = to_us(k);
            if t_us <= since_us {
                continue;
            }
            let (a, b) = ((k - 1) as f64 * period, k as f64 * period);
            for (p, pid) in &procs {
                let mut ran = false;
                let mut sum = 0.0;
                for s in &p.segments {
                    let overlap = s.end_s.min(b) - s.start_s.max(a);
                    if overlap > 0.0 {
                        ran = true;
                        sum += s.sm_pct * overlap;
                    }
                }
                if ran {
                    samples.push(ProcessUtilSample {
                        pid: *pid,
                        sm_pct: sum / period,
                        t_us,
                    });
                }
            }
        }
        Ok(ProcessSamples {
            now_us: (t * 1e6).round() as u64,
            samples,
        })
    }

    /// The traces on `device` whose pid resolves, with their pids.
    fn on(&self, device: u32, child: Option<u32>) -> impl Iterator<Item = (&ProcessTrace, u32)> {
        self.list
            .iter()
            .filter(move |p| p.device == device)
            .filter_map(move |p| {
                let pid = match &p.pid {
                    PidSpec::Pid(n) => Some(*n),
                    PidSpec::Named(n) if n == "self" => Some(std::process::id()),
                    PidSpec::Named(_) => child,
                }?;
                Some((p, pid))
            })
    }
}

/// The lowest-numbered live child of this process (the command `lem run` spawned), if any.
pub fn child_of_self() -> Option<u32> {
    let me = std::process::id();
    let dir = std::fs::read_dir("/proc").ok()?;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_of(*pid) == Some(me))
        .min()
}
