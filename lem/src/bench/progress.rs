//! The warmup's progress on the terminal: a bar with the current CV, or one plain line.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

use crate::measure::warmup::{WarmupConfig, WarmupMode, WarmupResult};

/// Progress of one warmup: a bar with the current CV on a terminal, one plain line otherwise.
pub(crate) struct WarmupProgress {
    bar: Option<ProgressBar>,
    name: String,
    target: f64,
    quiet: bool,
}

impl WarmupProgress {
    /// A display for the warmup of bench `name`; `progress` false prints nothing.
    pub(crate) fn new(name: &str, progress: bool, warmup: &WarmupConfig) -> Self {
        let bar = (progress && std::io::stderr().is_terminal()).then(|| {
            let max = match warmup.mode {
                WarmupMode::Converge => warmup.max_iters,
                WarmupMode::Fixed => warmup.fixed_iters,
            };
            let pb = ProgressBar::with_draw_target(Some(max as u64), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("warmup {prefix} [{bar:25}] {pos}/{len} {msg}")
            {
                pb.set_style(style.progress_chars("=> "));
            }
            pb.set_prefix(name.to_string());
            pb
        });
        Self {
            bar,
            name: name.to_string(),
            target: warmup.cv_threshold,
            quiet: !progress,
        }
    }

    pub(crate) fn update(&self, iteration: usize, cv: Option<f64>) {
        if let Some(pb) = &self.bar {
            pb.set_position(iteration as u64);
            pb.set_message(match cv {
                Some(c) => format!("CV {c:.3} (target {:.3})", self.target),
                None => format!("CV - (target {:.3})", self.target),
            });
        }
    }

    pub(crate) fn finish(&self, w: &WarmupResult) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let cv = w.final_cv.map_or("-".into(), |c| format!("{c:.3}"));
        match (w.mode, w.converged) {
            (WarmupMode::Fixed, _) => eprintln!(
                "warmup {}: {} fixed iterations (CV {cv})",
                self.name, w.iterations
            ),
            (_, true) => eprintln!(
                "warmup {}: converged after {} iterations (CV {cv} < {:.3})",
                self.name, w.iterations, self.target
            ),
            (_, false) => eprintln!(
                "warmup {}: NOT converged after {} iterations (CV {cv}, target {:.3})",
                self.name, w.iterations, self.target
            ),
        }
    }
}
