//! Naming the processes a window is attributed to: by default the calling process (and its
//! descendants); `lem run` names the command it spawned.

use std::borrow::Cow;

use super::WindowProcs;
use crate::error::Result;
use crate::measure::meter::Meter;
use crate::measure::window::{EnergyScope, OpenWindow};

impl Meter {
    /// Open a scope attributed to `pids` and their descendants instead of the calling
    /// process: its report's `attribution` gives their share of each shared GPU's active
    /// energy.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_for(
        &self,
        name: impl Into<Cow<'static, str>>,
        pids: impl IntoIterator<Item = u32>,
    ) -> Result<EnergyScope<'_>> {
        let scope = self.start(name)?;
        scope.attribute_to(pids);
        Ok(scope)
    }

    /// Attribute open window `window` to `pids` and their descendants (any time before it
    /// closes; a process is recognised as a descendant while it lives).
    pub fn attribute_window(&self, window: &OpenWindow, pids: impl IntoIterator<Item = u32>) {
        if window.meter_id == self.meter_id {
            self.sampler
                .shared()
                .processes()
                .set_targets(window.id, pids.into_iter().collect());
        }
    }

    /// Take window `id`'s process reads out at its close (`t1`), reading once more.
    pub(crate) fn close_processes(&self, id: u64, t1: f64) -> Option<WindowProcs> {
        let shared = self.sampler.shared();
        let clock = self.clock.clone();
        shared
            .processes()
            .close(id, t1, shared.devices(), &|| clock.now().as_secs_f64())
    }
}

impl EnergyScope<'_> {
    /// Attribute this scope to `pids` and their descendants instead of the calling process.
    pub fn attribute_to(&self, pids: impl IntoIterator<Item = u32>) {
        if let Some(w) = &self.window {
            self.meter.attribute_window(w, pids);
        }
    }
}
