//! A group's stretches, one after another: each boundary of a group (a window of it opening
//! or closing) ends one stretch and starts the next at one device read.
//!
//! The stretches of a group are one stream in the sampler, cut at each boundary rather than
//! closed and registered again: it keeps one id and one place among the open windows, its
//! memory is reused from stretch to stretch, and its samples are read from the sampler's
//! buffer under the same lock that cuts it. A stretch is accounted as any window is (counter
//! or integrated trace, baseline, bound: `accounting::stretch_energy`), with its points built
//! in buffers the group keeps. So a boundary costs a lookup in the open windows and work in
//! the samples of the stretch, and a stretch whose samples are all still in the buffer (the
//! last few seconds) allocates nothing once the group has run a while; a longer one, folded
//! as its samples left the buffer, is accounted from its folds as a window is.

use super::accounting::stream::WindowStream;
use super::accounting::{stretch_energy, StretchEnergy, TraceBuffers};
use super::meter::Meter;
use super::share::Stretch;
use super::window::{edge_time, DeviceEnd, DeviceStart};
use crate::device::Sample;

/// A group's stretches: the one being measured and what the next reuses.
#[derive(Debug)]
pub(super) struct Stretches {
    /// The stream's id among the sampler's open windows (one for every stretch).
    id: u64,
    /// The stream was registered (at the group's first boundary).
    registered: bool,
    /// The current stretch's start and each device's reads there.
    t0: f64,
    starts: Vec<DeviceStart>,
    /// Where the next stretch's starts are built (the memory of the one before).
    next: Vec<DeviceStart>,
    /// The stream of the stretch before, to be the next one's.
    spare: Option<WindowStream>,
    /// The samples of the stretch that ends, every device's; one device's.
    samples: Vec<Sample>,
    mine: Vec<Sample>,
    buffers: TraceBuffers,
}

impl Stretches {
    /// The stretches of a group whose stream is window `id`.
    pub(super) fn new(id: u64) -> Self {
        Self {
            id,
            registered: false,
            t0: 0.0,
            starts: Vec::new(),
            next: Vec::new(),
            spare: None,
            samples: Vec::new(),
            mine: Vec::new(),
            buffers: TraceBuffers::default(),
        }
    }
}

impl Meter {
    /// A boundary at the readings `ends` (taken at about `t`; `starts`, where a window starts
    /// there too, are the same readings as its start): the stretch that ends there, if one
    /// was open, and the next one started.
    pub(super) fn cut_stretch(
        &self,
        st: &mut Stretches,
        starts: Option<&[DeviceStart]>,
        ends: &[DeviceEnd],
        t: f64,
    ) -> Option<Stretch> {
        let mut next_starts = std::mem::take(&mut st.next);
        next_starts.clear();
        match starts {
            Some(s) => next_starts.extend_from_slice(s),
            None => self.starts_into(ends, false, &mut next_starts),
        }
        let starts = &next_starts[..];
        let t0 = starts.iter().map(|s| s.t_s).reduce(f64::min).unwrap_or(t);
        let next = match st.spare.take() {
            Some(mut w) => {
                self.restart_stream(&mut w, t0, starts);
                w
            }
            None => self.window_stream(st.id, t0, starts),
        };
        let shared = self.sampler.shared();
        let registered = std::mem::replace(&mut st.registered, true);
        let stretch = if registered {
            let t1 = edge_time(ends, t);
            let duration_s = (t1 - st.t0).max(0.0);
            let Stretches {
                samples,
                mine,
                buffers,
                starts: before,
                spare,
                ..
            } = st;
            Some(match shared.cut(next, t1, samples) {
                Some(mut old) => {
                    let (raw, adj, unc) =
                        self.stretch_parts(samples, mine, buffers, &mut old, before, ends, t1);
                    *spare = Some(old);
                    Stretch {
                        raw,
                        adj,
                        unc: raw.and(unc),
                        duration_s,
                    }
                }
                // the group's stream was not among the open windows (it is now): what it
                // measured is unknown, and said so in the shares
                None => Stretch {
                    raw: None,
                    adj: None,
                    unc: None,
                    duration_s,
                },
            })
        } else {
            shared.register(next);
            None
        };
        st.t0 = t0;
        st.next = std::mem::replace(&mut st.starts, next_starts);
        stretch
    }

    /// The stretch that ended at `t1` (`ends`), streamed as `old` from `starts`: its raw and
    /// adjusted energy and the raw figure's bound over every device (unknown if any device's
    /// is, or without devices).
    #[allow(clippy::too_many_arguments)]
    fn stretch_parts(
        &self,
        samples: &[Sample],
        mine: &mut Vec<Sample>,
        buffers: &mut TraceBuffers,
        old: &mut WindowStream,
        starts: &[DeviceStart],
        ends: &[DeviceEnd],
        t1: f64,
    ) -> (Option<f64>, Option<f64>, Option<f64>) {
        let sum = |acc: &mut Option<f64>, v: Option<f64>| {
            *acc = acc.zip(v).map(|(a, b)| a + b);
        };
        let (mut raw, mut adj, mut unc) = if self.devices.is_empty() {
            (None, None, None)
        } else {
            (Some(0.0), Some(0.0), Some(0.0))
        };
        let n = self.devices.len();
        for (i, stream) in old.devices.drain(..).take(n).enumerate() {
            let (Some(start), Some(end)) = (starts.get(i), ends.get(i)) else {
                (raw, adj, unc) = (None, None, None);
                continue;
            };
            let StretchEnergy {
                raw_j,
                adjusted_j,
                uncertainty_j,
            } = self.device_window(i, start, end, t1, Some(stream), samples, mine, |w, f| {
                stretch_energy(w, f, buffers)
            });
            sum(&mut raw, raw_j);
            sum(&mut adj, adjusted_j);
            sum(&mut unc, uncertainty_j);
        }
        (raw, adj, unc)
    }
}
