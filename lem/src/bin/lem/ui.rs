//! Output conventions: human text on stderr (hidden by --quiet), JSON on stdout (--json),
//! progress bars only on a terminal.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Ui {
    pub quiet: bool,
    pub json: bool,
}

impl Ui {
    pub fn new(quiet: bool, json: bool) -> Self {
        Self { quiet, json }
    }

    /// A human line on stderr.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", line.as_ref());
        }
    }

    /// A line of the command's own output on stdout (hidden by --quiet).
    pub fn out(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }

    /// A warning on stderr (hidden by --quiet).
    pub fn warn(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("warning: {}", line.as_ref());
        }
    }

    /// Print machine output on stdout.
    pub fn json_out(&self, v: &impl serde::Serialize) -> Result<(), crate::Failure> {
        let s = serde_json::to_string_pretty(v)
            .map_err(|e| crate::Failure::new(format!("json: {e}")))?;
        println!("{s}");
        Ok(())
    }

    /// `b`, drawing the idle baseline's measurement as a progress bar.
    pub fn with_baseline_progress(&self, b: lem::MeterBuilder) -> lem::MeterBuilder {
        let pb = self.progress(1000, "measuring the idle baseline (keep the GPU idle)");
        b.on_baseline_progress(move |f| {
            pb.set_position((f * 1000.0) as u64);
            if f >= 1.0 {
                pb.finish_and_clear();
            }
        })
    }

    /// A progress bar of `len` steps, drawn only when stderr is a terminal and not quiet.
    pub fn progress(&self, len: u64, msg: &str) -> ProgressBar {
        if self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        }
        let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {elapsed}/{duration}")
        {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }
}

/// `123.4 J`, or `not measured`.
pub fn joules(j: Option<f64>) -> String {
    match j {
        Some(j) if j.abs() >= 1e4 => format!("{:.2} kJ", j / 1e3),
        Some(j) => format!("{j:.2} J"),
        None => "not measured".into(),
    }
}

/// `123.45 ± 1.20 J`: a figure with its bound; the bare figure when the bound is unknown.
pub fn joules_pm(j: Option<f64>, u: Option<f64>) -> String {
    match (j, u) {
        (Some(j), Some(u)) if j.abs() >= 1e4 => format!("{:.2} ± {:.2} kJ", j / 1e3, u / 1e3),
        (Some(j), Some(u)) => format!("{j:.2} ± {u:.2} J"),
        _ => joules(j),
    }
}

/// `300.0 W`, or `-`.
pub fn watts(w: Option<f64>) -> String {
    w.map_or_else(|| "-".into(), |w| format!("{w:.1} W"))
}

/// A duration in words: `42 s`, `12 min`, `3.5 h`.
pub fn age(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
