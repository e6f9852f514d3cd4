//! The summary of a group of shared windows (`groups[]` in a result file): the energy of
//! the union of its windows, the sum of their shares (equal to it), its gaps, and the
//! distribution of the shares over windows.

use serde::{Deserialize, Serialize};

use crate::results::stats::percentile;

/// Three percentiles of a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// The percentiles of `xs` (linear interpolation between closest ranks); `None` when
    /// empty.
    pub fn of(xs: &[f64]) -> Option<Self> {
        Some(Self {
            p50: percentile(xs, 50.0)?,
            p95: percentile(xs, 95.0)?,
            p99: percentile(xs, 99.0)?,
        })
    }
}

/// A group of shared windows, summarised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The group's name.
    pub name: String,
    /// Windows closed in the group.
    pub windows: u64,
    /// Windows still open when summarised (their shares so far are in `shares_sum_j`).
    pub open_windows: u64,
    /// Energy over the union of the group's windows (every stretch with a window open), J;
    /// `null` when a stretch could not be measured.
    pub union_j: Option<f64>,
    /// A bound on `union_j`'s error: the stretches' bounds summed, J.
    pub union_uncertainty_j: Option<f64>,
    /// Adjusted (idle baseline subtracted) energy over the union, J: the stretches' summed
    /// over every device, floored once at 0 J. The windows' adjusted shares, each floored
    /// once, add up to at least this.
    pub union_adjusted_j: Option<f64>,
    /// The windows' shares added up, J: equal to `union_j` up to rounding.
    pub shares_sum_j: Option<f64>,
    /// `|shares_sum_j − union_j| / union_j`.
    pub shares_sum_relative_error: Option<f64>,
    /// Time inside the group's span (first window's start to last window's end so far)
    /// with no window open, s.
    pub gaps_s: f64,
    /// Energy of those gaps, J: measured, counted in no window's share.
    pub gaps_j: Option<f64>,
    /// From the first window's start to the last boundary, s.
    pub span_s: f64,
    /// Stretches between boundaries the group measured.
    pub stretches: u64,
    /// The closed windows' shares (`shared_j`): percentiles, J.
    pub per_window_j: Option<Percentiles>,
    /// The sum of the shares over the sum of the weights reported, J per unit; `null` when
    /// no window reported a weight.
    pub per_weight_j: Option<f64>,
    /// The weights reported, added up.
    pub weight: f64,
    /// How stretches were divided: `equal` (no weights), `weight` (every stretch had
    /// weights) or `mixed`.
    pub split: String,
}
