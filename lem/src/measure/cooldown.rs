//! Thermally stable samples: wait until every device is back near its idle temperature
//! before a sample or a cycle. A GPU that has warmed up draws more power for the same work
//! (leakage grows with temperature), so back-to-back trials drift upward; waiting for the
//! temperature the idle baseline was measured at removes that drift from the comparison.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::measure::meter::Meter;

/// How often the temperatures are read while waiting.
pub const POLL: Duration = Duration::from_millis(250);

/// What a cooldown did (recorded beside each sample or cycle).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cooldown {
    /// Time waited, s.
    pub waited_s: f64,
    /// Every device was within the margin of its idle temperature when it ended.
    pub reached: bool,
    /// The hottest device's temperature above its idle temperature at the end, °C (`null`
    /// where no device reports both).
    pub excess_c: Option<f64>,
}

/// The hottest device's temperature above its idle temperature, °C; `None` when no device
/// has both an idle temperature (from its baseline) and a current one.
pub fn excess_c(meter: &Meter) -> Option<f64> {
    meter
        .devices()
        .iter()
        .zip(meter.baselines())
        .filter_map(|(d, b)| Some(d.temperature_c()? - b.idle_temperature_c?))
        .reduce(f64::max)
}

/// Wait (on the meter's clock) until every device is within `margin_c` of its idle
/// temperature, or `timeout` has passed. `None` when no device has an idle temperature to
/// wait for (no baseline, or a device without a temperature reading).
pub fn cool_down(meter: &Meter, margin_c: f64, timeout: Duration) -> Option<Cooldown> {
    let clock = meter.clock();
    let t0 = clock.now();
    loop {
        let excess = excess_c(meter)?;
        let waited = clock.now().saturating_sub(t0);
        if excess <= margin_c || waited >= timeout {
            return Some(Cooldown {
                waited_s: waited.as_secs_f64(),
                reached: excess <= margin_c,
                excess_c: Some(excess),
            });
        }
        clock.sleep(POLL.min(timeout - waited));
    }
}
