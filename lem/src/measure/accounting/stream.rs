//! What an open window keeps of its samples once they leave the sampler's buffer of recent
//! samples: per device, a bounded *head* of raw samples (the look-back before its start and
//! the first moments after it, which the start's edge terms read) and the folds of
//! [`fold`](super::fold) (every sum, extreme and count the report needs). The samples of the
//! last few seconds stay in the sampler's buffer, shared by every window, until they are old
//! enough to fold; at the window's close they are its *tail*. Memory per open window is
//! therefore constant, whatever its length.

use super::fold::{
    Point, PointFold, SampledThrottle, Steps, StepsFold, ThrottleFold, TotalPeak, POWER_AVERAGE_S,
};
use crate::device::{PowerSource, Reading, Sample};

/// The statistics of the readings at or after a device's start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct InsideFold {
    /// Some reading is a 1-second average.
    pub averaged: bool,
    pub instant: u64,
    pub usage: u64,
    pub peak_power: Option<f64>,
    pub peak_memory: Option<f64>,
    pub max_temperature: Option<f64>,
    pub utilisation_sum: f64,
    pub utilisation_n: u64,
}

fn max_into(best: &mut Option<f64>, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        *best = Some(best.map_or(v, |b| b.max(v)));
    }
}

impl InsideFold {
    pub(crate) fn push(&mut self, r: &Reading) {
        self.averaged |= r.power_source == Some(PowerSource::Averaged);
        self.instant += u64::from(r.power_source == Some(PowerSource::Instant));
        self.usage += u64::from(matches!(
            r.power_source,
            Some(PowerSource::Averaged | PowerSource::Usage)
        ));
        max_into(&mut self.peak_power, r.power_w);
        max_into(&mut self.peak_memory, r.memory_used_mb);
        max_into(&mut self.max_temperature, r.temperature_c);
        if let Some(u) = r.utilisation_pct {
            self.utilisation_sum += u;
            self.utilisation_n += 1;
        }
    }
}

/// The points of one device as the accounting sees them for one choice of edge readings:
/// with the readings taken at the window's ends, or (when one failed) from the samples alone.
#[derive(Debug, Clone, Copy)]
struct Variant {
    /// What integration uses (`PowerTrace::points`).
    points: PointFold,
    /// Every change around the window (over `PowerTrace::near_points`).
    seen: StepsFold,
    /// The start's edge reading, not yet placed among the near points.
    edge0: Option<Point>,
    /// Whether the points hold the edge readings.
    edges: bool,
}

impl Variant {
    fn push(&mut self, p: Point, t0: f64) {
        if !self.edges {
            self.points.push(p);
            self.seen.push(p);
            return;
        }
        if p.0 > t0 {
            if let Some(e) = self.edge0.take() {
                self.seen.push(e);
            }
            self.points.push(p);
        }
        self.seen.push(p);
    }

    /// The end's edge reading: after the points at or before it.
    fn push_edge1(&mut self, p: Point) {
        if let Some(e) = self.edge0.take() {
            self.seen.push(e);
        }
        self.points.push(p);
        self.seen.push(p);
    }
}

/// What folding a device's samples over a window gave, for the edge readings it closed with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Folded {
    pub integrated: Option<f64>,
    pub sampling_j: f64,
    pub peak_seen: Option<f64>,
    pub seen: Steps,
    pub inside_steps: Steps,
    pub points_len: usize,
    pub largest_gap: f64,
    /// Integral and integration bound from the start to the moment the device was lost.
    pub until_lost: Option<(Option<f64>, f64)>,
    pub inside: InsideFold,
    pub throttle: SampledThrottle,
    /// The last power point folded (the neighbour of the first one still raw).
    pub last_point: Option<Point>,
}

/// How a device's window closes: its end, the edge reading there, and whether it was lost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeviceClose<'a> {
    pub t1: f64,
    /// The edge readings at both ends were taken.
    pub edges: bool,
    pub edge1: Option<&'a Reading>,
    pub lost_at: Option<f64>,
}

/// One device's part of an open window.
#[derive(Debug, Clone)]
pub(crate) struct DeviceStream {
    /// The device's own start (its counter read), clock s.
    t0: f64,
    /// Samples of this device from this time on belong to the window.
    pub(crate) from: f64,
    head_until: f64,
    head: Vec<Sample>,
    /// The head holds a power point later than `t0 + POWER_AVERAGE_S`.
    head_complete: bool,
    /// A sample past the head was folded: the window's samples are no longer all kept.
    spilled: bool,
    last_point: Option<Point>,
    with_edges: Option<Variant>,
    without: Variant,
    inside: InsideFold,
    throttle: ThrottleFold,
}

impl DeviceStream {
    /// A device starting at `t0` with the edge reading `edge0`; `sensor_period_s` for the
    /// changes counted before it, `head_s` of samples kept raw after it.
    pub(crate) fn new(
        device: u32,
        t0: f64,
        edge0: Option<&Reading>,
        sensor_period_s: f64,
        head_s: f64,
    ) -> Self {
        let inf = f64::INFINITY;
        let with_edges = edge0.map(|r| {
            let e = r.power_w.map(|p| (t0, p));
            let mut points = PointFold::new(t0, inf);
            if let Some(e) = e {
                points.push(e);
            }
            Variant {
                points,
                seen: StepsFold::new(t0 - sensor_period_s, inf),
                edge0: e,
                edges: true,
            }
        });
        Self {
            t0,
            from: f64::NEG_INFINITY,
            head_until: t0 + head_s,
            head: Vec::new(),
            head_complete: false,
            spilled: false,
            last_point: None,
            with_edges,
            without: Variant {
                points: PointFold::new(t0, inf),
                seen: StepsFold::new(t0 - sensor_period_s, inf),
                edge0: None,
                edges: false,
            },
            inside: InsideFold::default(),
            throttle: ThrottleFold::new(device, t0, inf),
        }
    }

    /// Take a sample of this device leaving the sampler's buffer (in time order).
    pub(crate) fn take(&mut self, s: &Sample) {
        if s.t_s < self.from {
            return;
        }
        let power = s.reading.power_w;
        if s.t_s <= self.head_until || (!self.head_complete && power.is_some()) {
            self.head.push(*s);
            self.head_complete |= power.is_some() && s.t_s > self.t0 + POWER_AVERAGE_S;
        }
        self.spilled |= s.t_s > self.head_until;
        self.fold(s);
    }

    fn fold(&mut self, s: &Sample) {
        if let Some(p) = s.reading.power_w {
            let point = (s.t_s, p);
            self.without.push(point, self.t0);
            if let Some(v) = self.with_edges.as_mut() {
                v.push(point, self.t0);
            }
            self.last_point = Some(point);
        }
        if s.t_s >= self.t0 {
            self.inside.push(&s.reading);
        }
        if let Some(r) = s.reading.throttle {
            self.throttle.push((s.t_s, r));
        }
    }

    /// Whether every sample of the window is still at hand raw (in the head or the buffer).
    pub(crate) fn is_whole(&self) -> bool {
        !self.spilled
    }

    /// The samples kept raw from the window's start.
    pub(crate) fn head(&self) -> &[Sample] {
        &self.head
    }

    /// Fold the samples still in the buffer (`tail`, this device's, in time order) and give
    /// what the accounting takes from the whole window.
    pub(crate) fn finish(mut self, tail: &[Sample], close: DeviceClose<'_>) -> Folded {
        let t1 = close.t1;
        let mut v = match (close.edges, self.with_edges) {
            (true, Some(v)) => v,
            _ => self.without,
        };
        v.points.set_t1(t1);
        v.seen.set_to(t1);
        let edge1 = close
            .edge1
            .and_then(|r| r.power_w)
            .filter(|_| v.edges)
            .map(|p| (t1, p));
        // the point sequence of the rest, the end's edge reading placed after the samples at
        // or before it; a copy cut where the device was lost
        let mut until = close.lost_at.map(|at| {
            let mut u = v.points;
            u.set_t1(at);
            u
        });
        let mut pending = edge1;
        for s in tail {
            if let (Some(e), true) = (pending, s.t_s > t1) {
                v.push_edge1(e);
                push_until(&mut until, close.lost_at, e);
                pending = None;
            }
            if let Some(p) = s.reading.power_w {
                let point = (s.t_s, p);
                v.push(point, self.t0);
                if !v.edges || point.0 > self.t0 {
                    push_until(&mut until, close.lost_at, point);
                }
            }
            if s.t_s >= self.t0 {
                self.inside.push(&s.reading);
            }
            if let Some(r) = s.reading.throttle {
                self.throttle.push((s.t_s, r));
            }
        }
        if let Some(e) = pending {
            v.push_edge1(e);
            push_until(&mut until, close.lost_at, e);
        }
        Folded {
            integrated: v.points.integrated(),
            sampling_j: v.points.bound(),
            peak_seen: v.points.peak(),
            seen: v.seen.steps,
            inside_steps: v.points.inside_steps(),
            points_len: v.points.count(),
            largest_gap: v.points.largest_gap(),
            until_lost: until.map(|u| (u.integrated(), u.bound())),
            inside: self.inside,
            throttle: self.throttle.finish(t1),
            last_point: self.last_point,
        }
    }
}

fn push_until(until: &mut Option<PointFold>, lost_at: Option<f64>, p: Point) {
    if let (Some(u), Some(at)) = (until.as_mut(), lost_at) {
        if p.0 <= at {
            u.push(p);
        }
    }
}

/// An open window's state in the sampler: per device, its [`DeviceStream`]; over all
/// devices, the rounds and the total peak of samples already folded.
#[derive(Debug, Clone)]
pub(crate) struct WindowStream {
    pub(crate) id: u64,
    /// The window's start, clock s.
    pub(crate) t0: f64,
    /// Samples from this long before `t0` belong to it (the last one of each device before
    /// that too).
    pub(crate) lookback_s: f64,
    /// By device position.
    pub(crate) devices: Vec<DeviceStream>,
    /// Rounds folded inside the window.
    pub(crate) rounds: u64,
    pub(crate) peak: TotalPeak,
}

impl WindowStream {
    /// Take a sample leaving the sampler's buffer; `position` is its device's.
    pub(crate) fn take(&mut self, position: usize, s: &Sample) {
        if let Some(d) = self.devices.get_mut(position) {
            d.take(s);
        }
        if s.t_s >= self.t0 {
            self.peak.push(s.device, s.reading.power_w);
        }
    }

    /// Take a round time leaving the sampler's buffer.
    pub(crate) fn take_round(&mut self, t: f64) {
        self.rounds += u64::from(t >= self.t0);
    }
}
