//! Shared windows: windows of a group divide the energy of the times they overlap instead
//! of each counting all of it.
//!
//! A group measures its time as stretches, one after another from its first window's
//! start on (`measure/stretch.rs`). At every boundary (a window of the group opening or
//! closing) the devices are read once: the readings end the current stretch (accounted like
//! any window: counter or integrated trace, baseline, bounds) and start the next, so the
//! stretches tile the group's span with nothing between them. Each stretch's energy is
//! divided among the windows open in it (`measure/share.rs`). A shared window is also an
//! ordinary window, so its report keeps `raw_j` (all the energy over its lifetime) and adds
//! `shared_j` beside it; the read at each of its boundaries is also its own start or end, so
//! its stretches tile exactly its lifetime and it reads the devices no more often than an
//! ordinary window. Open windows and open shares are found by id (O(log n) in the windows
//! open), and the stretches are one stream cut at each boundary, so a window of a group costs
//! an ordinary window, the accounting of the two stretches that end at its boundaries, and
//! O(log n) bookkeeping.

use std::any::Any;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard};

use super::meter::Meter;
use super::share::{Ledger, Share};
use super::stretch::Stretches;
use super::window::{edge_time, DeviceEnd, DeviceStart, OpenWindow};
use crate::error::{Error, Result};
use crate::results::group::GroupSummary;
use crate::results::report::{EnergyReport, SharedEnergy};

/// A group's state: its shares and the stretch being measured.
#[derive(Debug)]
struct GroupState {
    ledger: Ledger,
    stretches: Stretches,
}

/// A group of shared windows on one meter.
#[derive(Debug)]
struct GroupInner {
    name: String,
    meter_id: u64,
    state: Mutex<GroupState>,
}

impl GroupInner {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // every update leaves the state whole, so a poisoned lock is still usable
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A group of windows that share energy where they overlap ([`Meter::group`]).
#[derive(Debug, Clone)]
pub struct WindowGroup<'m> {
    meter: &'m Meter,
    inner: Arc<GroupInner>,
}

impl<'m> WindowGroup<'m> {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Open a shared window in this group (after the sync hook).
    ///
    /// # Errors
    /// As [`Meter::start`].
    pub fn start(&self, name: impl Into<Cow<'static, str>>) -> Result<SharedScope<'m>> {
        let window = self.meter.join_group(&self.inner, name)?;
        Ok(SharedScope {
            meter: self.meter,
            window: Some(window),
        })
    }

    /// The group's summary so far: union energy, the shares' sum, gaps, percentiles.
    pub fn summary(&self) -> GroupSummary {
        self.inner.lock().ledger.summary(&self.inner.name)
    }
}

/// An open shared window that does not borrow its meter ([`Meter::open_shared`]); close it
/// with [`Meter::close_shared`] or [`Meter::discard_shared`].
#[derive(Debug)]
#[must_use = "a shared window is measured only when closed with Meter::close_shared"]
pub struct SharedWindow {
    window: OpenWindow,
    group: Arc<GroupInner>,
    slot: u64,
}

impl SharedWindow {
    /// The window's name.
    pub fn name(&self) -> &str {
        self.window.name()
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group.name
    }

    /// Report `units` of progress (tokens, items...) made since the last boundary: the
    /// active energy of each stretch is divided by the weight reported in it.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a negative or non-finite weight.
    pub fn add_weight(&self, units: f64) -> Result<()> {
        if !units.is_finite() || units < 0.0 {
            return Err(Error::config(
                "weight",
                format!("{units} is not a finite weight >= 0"),
            ));
        }
        self.group.lock().ledger.add_weight(self.slot, units);
        Ok(())
    }
}

/// An open shared window borrowing its meter ([`WindowGroup::start`]). Dropping it
/// without [`finish`](Self::finish) leaves the group (its share stays counted in the
/// group) without a report.
#[must_use = "dropping a SharedScope discards its report; call finish() to get it"]
#[derive(Debug)]
pub struct SharedScope<'m> {
    meter: &'m Meter,
    window: Option<SharedWindow>,
}

impl SharedScope<'_> {
    /// The scope's name.
    pub fn name(&self) -> &str {
        self.window.as_ref().map_or("", |w| w.name())
    }

    /// See [`SharedWindow::add_weight`].
    ///
    /// # Errors
    /// As [`SharedWindow::add_weight`].
    pub fn add_weight(&self, units: f64) -> Result<()> {
        match &self.window {
            Some(w) => w.add_weight(units),
            None => Err(Error::config("scope", "already finished")),
        }
    }

    /// Close the window and its share: its report, with `energy.shared_j`.
    ///
    /// # Errors
    /// As [`Meter::close_shared`].
    pub fn finish(mut self) -> Result<EnergyReport> {
        match self.window.take() {
            Some(w) => self.meter.close_shared(w),
            None => Err(Error::config("scope", "already finished")),
        }
    }
}

impl Drop for SharedScope<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.window.take() {
            self.meter.discard_shared(w);
        }
    }
}

impl Meter {
    /// The group of shared windows named `name`, created on first use; every later call
    /// with the name gives the same group. The meter's result files list every group
    /// (`groups[]`).
    pub fn group(&self, name: &str) -> WindowGroup<'_> {
        WindowGroup {
            meter: self,
            inner: self.group_inner(name),
        }
    }

    fn group_inner(&self, name: &str) -> Arc<GroupInner> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let found = groups
            .iter()
            .filter_map(|g| Arc::clone(g).downcast::<GroupInner>().ok())
            .find(|g| g.name == name);
        if let Some(g) = found {
            return g;
        }
        let g = Arc::new(GroupInner {
            name: name.to_string(),
            meter_id: self.meter_id,
            state: Mutex::new(GroupState {
                ledger: Ledger::default(),
                stretches: Stretches::new(
                    self.next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ),
            }),
        });
        groups.push(Arc::clone(&g) as Arc<dyn Any + Send + Sync>);
        g
    }

    /// Every group's summary, in the order they were created.
    pub fn group_summaries(&self) -> Vec<GroupSummary> {
        let groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        groups
            .iter()
            .filter_map(|g| Arc::clone(g).downcast::<GroupInner>().ok())
            .map(|g| g.lock().ledger.summary(&g.name))
            .collect()
    }

    /// Open a shared window in group `group` (created on first use) that does not borrow
    /// the meter, for owners that keep the meter behind an `Arc`.
    ///
    /// # Errors
    /// As [`Meter::start`].
    pub fn open_shared(
        &self,
        group: &str,
        name: impl Into<Cow<'static, str>>,
    ) -> Result<SharedWindow> {
        let inner = self.group_inner(group);
        self.join_group(&inner, name)
    }

    fn join_group(
        &self,
        inner: &Arc<GroupInner>,
        name: impl Into<Cow<'static, str>>,
    ) -> Result<SharedWindow> {
        if let Some(s) = &self.sync {
            s();
        }
        let mut st = inner.lock();
        // one read of the devices ends the group's stretch, starts the next and starts the
        // window: its stretches tile exactly its lifetime
        let (ends, failed) = self.read_ends();
        let t = edge_time(&ends, self.clock.now().as_secs_f64());
        let starts = self.starts_from(&ends);
        let window = self.window_at(&starts, t, name.into(), failed);
        self.sampler.shared().processes().open(
            window.id,
            window.t0,
            vec![std::process::id()],
            self.devices.len(),
        );
        self.boundary_at(&mut st, Some(&starts), &ends, t);
        let slot = st.ledger.join();
        Ok(SharedWindow {
            window,
            group: Arc::clone(inner),
            slot,
        })
    }

    /// Close a shared window: its report, with its share of the group's energy.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when the window belongs to another meter.
    pub fn close_shared(&self, w: SharedWindow) -> Result<EnergyReport> {
        if w.group.meter_id != self.meter_id {
            return Err(Error::config(
                "window",
                format!("`{}` was opened on another meter", w.name()),
            ));
        }
        if let Some(s) = &self.sync {
            s();
        }
        // one read ends the window, the group's stretch and starts the next
        let (share, ends, failed, t) = {
            let mut st = w.group.lock();
            let (ends, failed) = self.read_ends();
            let t = edge_time(&ends, self.clock.now().as_secs_f64());
            self.boundary_at(&mut st, None, &ends, t);
            (st.ledger.leave(w.slot), ends, failed, t)
        };
        let mut report = self.finish_with_ends(&w.window, t, ends, failed);
        report.energy.shared = Some(SharedEnergy {
            shared_group: w.group.name.clone(),
            shared_j: share.and_then(|s| s.raw),
            shared_uncertainty_j: share.and_then(|s| s.unc),
            shared_adjusted_j: share.and_then(|s| s.adj),
            shared_weight: share.map_or(0.0, |s| s.weight),
        });
        self.observe(&report);
        Ok(report)
    }

    /// Close a shared window without a report: it leaves the group, its share counted
    /// there.
    pub fn discard_shared(&self, w: SharedWindow) {
        if w.group.meter_id == self.meter_id {
            self.leave_group(&w.group, w.slot);
            self.discard_window(w.window);
        }
    }

    fn leave_group(&self, inner: &GroupInner, slot: u64) -> Option<Share> {
        let mut st = inner.lock();
        let (ends, _) = self.read_ends();
        let t = edge_time(&ends, self.clock.now().as_secs_f64());
        self.boundary_at(&mut st, None, &ends, t);
        st.ledger.leave(slot)
    }

    /// A boundary of the group at the readings `ends` (taken at about `t`; `starts` are
    /// the same readings as a start; failed reads count in the windows' reports): they end
    /// the current stretch (divided among the windows open in it) and start the next.
    fn boundary_at(
        &self,
        st: &mut GroupState,
        starts: Option<&[DeviceStart]>,
        ends: &[DeviceEnd],
        t: f64,
    ) {
        if let Some(s) = self.cut_stretch(&mut st.stretches, starts, ends, t) {
            st.ledger.stretch(s);
        }
    }

    /// Each device's start, for a window, at the readings `ends` that closed what came
    /// before (and its temperature, read now).
    pub(super) fn starts_from(&self, ends: &[DeviceEnd]) -> Vec<DeviceStart> {
        let mut starts = Vec::with_capacity(ends.len());
        self.starts_into(ends, true, &mut starts);
        starts
    }

    /// Each device's start at the readings `ends`, appended to `out`, with its temperature
    /// read when a window (not only a group's stretch, which reports none) starts there.
    pub(super) fn starts_into(
        &self,
        ends: &[DeviceEnd],
        temperature: bool,
        out: &mut Vec<DeviceStart>,
    ) {
        out.extend(self.devices.iter().zip(ends).map(|(d, e)| DeviceStart {
            t_s: e.t_s,
            e0: e.e1,
            e0_failed: d.info().energy_counter && e.e1.is_none(),
            temp0: if temperature { d.temperature_c() } else { None },
            viol0: e.violations,
            edge0: e.edge,
        }));
    }

    /// A window starting at the readings `ends` that closed the one before it.
    pub(super) fn window_from(&self, ends: &[DeviceEnd], t: f64, name: String) -> OpenWindow {
        let starts = self.starts_from(ends);
        self.window_at(&starts, t, Cow::Owned(name), 0)
    }

    /// A window starting at `starts` (taken at about `t`), `failed_here` of whose reads
    /// failed.
    fn window_at(
        &self,
        starts: &[DeviceStart],
        t: f64,
        name: Cow<'static, str>,
        failed_here: u64,
    ) -> OpenWindow {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t0 = starts.iter().map(|s| s.t_s).reduce(f64::min).unwrap_or(t);
        let shared = self.sampler.shared();
        shared.register(self.window_stream(id, t0, starts));
        OpenWindow {
            meter_id: self.meter_id,
            id,
            name,
            t0,
            failed0: shared.failed_reads(),
            failed_here,
            starts: starts.to_vec(),
        }
    }
}
