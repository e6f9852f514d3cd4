//! The power readings of one device around one window, gathered once for every part of the
//! accounting.

use super::fold::Point;
use super::input::DeviceWindow;
use super::stream::Folded;
use crate::device::{PowerSource, Sample};
use crate::results::stats::integrate;

/// The power readings of one device around one window, in time order.
#[derive(Debug)]
pub(crate) struct PowerTrace<'a> {
    /// What integration uses: the edge readings at `t0`/`t1` (where taken) and the samples
    /// strictly inside, or every sample when there are no edge readings.
    pub points: Vec<(f64, f64)>,
    /// Every power reading known around the window (samples before it included): the
    /// counter's staleness bound looks at these.
    pub near_points: Vec<(f64, f64)>,
    /// The samples at or after `t0`.
    pub inside: Vec<&'a Sample>,
    /// Some reading inside is a 1-second average.
    pub averaged: bool,
    /// The integrated trace over the window; `None` without any point.
    pub integrated: Option<f64>,
    /// For a window whose middle was folded as it was sampled: the whole window's sums,
    /// extremes and counts. The arrays above then hold its two ends only (the samples kept
    /// raw, and the last folded point between them), which is all the edge terms read.
    pub folded: Option<Folded>,
}

impl<'a> PowerTrace<'a> {
    pub(crate) fn of(w: &DeviceWindow<'a>) -> Self {
        let mut trace = Self::points_only(
            w,
            Vec::with_capacity(w.samples.len() + 2),
            Vec::with_capacity(w.samples.len() + 2),
        );
        trace.inside = w.samples.iter().filter(|s| s.t_s >= w.t0).collect();
        trace
    }

    /// The trace without `inside` (what the energy and its bound read), its points built in
    /// `points` and `near_points` (emptied first).
    pub(crate) fn points_only(
        w: &DeviceWindow<'a>,
        mut points: Vec<(f64, f64)>,
        mut near_points: Vec<(f64, f64)>,
    ) -> Self {
        points.clear();
        near_points.clear();
        if let Some((r0, _)) = &w.edges {
            if let Some(p) = r0.power_w {
                points.push((w.t0, p));
            }
        }
        points.extend(
            w.samples
                .iter()
                .filter(|s| s.t_s > w.t0 || w.edges.is_none())
                .filter_map(|s| s.reading.power_w.map(|p| (s.t_s, p))),
        );
        if let Some((_, r1)) = &w.edges {
            if let Some(p) = r1.power_w {
                points.push((w.t1, p));
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let integrated = integrate(&points, w.t0, w.t1);
        near_points.extend(
            w.samples
                .iter()
                .filter_map(|s| s.reading.power_w.map(|p| (s.t_s, p))),
        );
        if let Some((r0, r1)) = &w.edges {
            near_points.extend(r0.power_w.map(|p| (w.t0, p)));
            near_points.extend(r1.power_w.map(|p| (w.t1, p)));
        }
        near_points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let averaged = w
            .samples
            .iter()
            .any(|s| s.t_s >= w.t0 && s.reading.power_source == Some(PowerSource::Averaged));
        Self {
            points,
            near_points,
            inside: Vec::new(),
            averaged,
            integrated,
            folded: None,
        }
    }

    /// The point buffers back, for the next trace to be built in.
    pub(crate) fn into_points(self) -> (Vec<Point>, Vec<Point>) {
        (self.points, self.near_points)
    }

    /// The trace of a window whose middle was folded: `w.samples` holds the samples kept raw
    /// at its two ends, `folded` the rest.
    pub(crate) fn streamed(w: &DeviceWindow<'a>, folded: Folded) -> Self {
        let mut trace = Self::of(w);
        if let Some(p) = folded.last_point {
            if !trace.near_points.iter().any(|q| q.0 == p.0) {
                trace.near_points.push(p);
                trace.near_points.sort_by(|a, b| a.0.total_cmp(&b.0));
                if p.0 > w.t0 || w.edges.is_none() {
                    trace.points.push(p);
                    trace.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                }
            }
        }
        trace.integrated = folded.integrated;
        trace.averaged = folded.inside.averaged;
        trace.folded = Some(folded);
        trace
    }
}
