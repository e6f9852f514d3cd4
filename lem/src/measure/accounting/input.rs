//! What the accounting of one device over one window starts from.

use crate::device::{DeviceInfo, Reading, Sample, SensorProfile, Violations};
use crate::results::report::BaselineMethod;

/// Everything known about one device over one window.
#[derive(Debug)]
pub(crate) struct DeviceWindow<'a> {
    pub info: &'a DeviceInfo,
    pub t0: f64,
    pub t1: f64,
    pub e0: Option<f64>,
    pub e1: Option<f64>,
    pub temp0: Option<f64>,
    pub violations: Option<(Violations, Violations)>,
    /// This device's samples, in time order; may start with one from before `t0`.
    pub samples: &'a [Sample],
    /// Readings taken at the window's two ends (devices without a counter).
    pub edges: Option<(Reading, Reading)>,
    pub baseline_w: Option<f64>,
    pub baseline_method: BaselineMethod,
    /// The device stopped answering at this time (clock s) and had not recovered when the
    /// window closed, with the reason.
    pub lost: Option<(f64, String)>,
    /// Which counter reads failed: (start, end).
    pub counter_failed: (bool, bool),
    /// The sampling interval, s.
    pub interval_s: f64,
    /// The counter's update period to bound staleness with, s, and where it came from.
    pub counter_update: &'a (f64, Option<String>),
    /// The baseline's own uncertainty, W.
    pub baseline_uncertainty_w: Option<f64>,
    /// The device's power sensor (its own profile, or the user's override).
    pub sensor: &'a SensorProfile,
}

impl DeviceWindow<'_> {
    /// The window's length, s (never negative).
    pub(crate) fn duration_s(&self) -> f64 {
        (self.t1 - self.t0).max(0.0)
    }
}

/// Where the accounting's warnings go: a report's list, or nowhere (a group's stretch, whose
/// windows' own reports say what went wrong). A warning's text is only formatted when kept.
#[derive(Debug)]
pub(crate) struct Notes<'a>(Option<&'a mut Vec<String>>);

impl<'a> Notes<'a> {
    /// Warnings kept in `list`.
    pub(crate) fn to(list: &'a mut Vec<String>) -> Self {
        Self(Some(list))
    }

    /// Warnings dropped unformatted.
    pub(crate) fn none() -> Self {
        Self(None)
    }

    pub(crate) fn push(&mut self, text: impl FnOnce() -> String) {
        if let Some(list) = self.0.as_mut() {
            list.push(text());
        }
    }
}
