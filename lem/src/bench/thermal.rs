//! Thermally stable samples: the cooldown before each sample and what a throttled sample
//! does (`on_throttle`).

use super::plan::{Plan, ThrottlePolicy, MAX_DISCARDS};
use crate::measure::cooldown::cool_down;
use crate::measure::meter::Meter;

/// Wait for the devices to cool (with `cooldown_c`): the time waited, s (`None` without a
/// cooldown or anything to wait for); a timeout or a missing idle temperature is said once.
pub(super) fn cooldown(plan: &Plan, meter: &Meter, warnings: &mut Vec<String>) -> Option<f64> {
    let (margin, timeout) = plan.cooldown?;
    let Some(c) = cool_down(meter, margin, timeout) else {
        push_once(
            warnings,
            format!(
                "{}: cooldown_c is set but no device has an idle temperature from a baseline and a temperature reading (a baseline cached by an older lem has none: measure it again with LEM_BASELINE=force): samples start without waiting",
                plan.name
            ),
        );
        return None;
    };
    if !c.reached {
        push_once(
            warnings,
            format!(
                "{}: cooldown timed out after {:.0} s: a device was still {:.1} °C above its idle temperature (cooldown_c {margin}); samples started warm",
                plan.name,
                c.waited_s,
                c.excess_c.unwrap_or(f64::NAN)
            ),
        );
    }
    Some(c.waited_s)
}

/// What to do with a throttled sample after `discarded` throttled ones in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Keep,
    Again,
    Abort,
}

pub(super) fn decide(plan: &Plan, throttled: bool, discarded: usize) -> Decision {
    match (throttled, plan.on_throttle) {
        (false, _) | (true, ThrottlePolicy::Continue) => Decision::Keep,
        (true, ThrottlePolicy::Discard) if discarded < MAX_DISCARDS => Decision::Again,
        (true, ThrottlePolicy::Discard) => Decision::Keep,
        (true, ThrottlePolicy::Abort) => Decision::Abort,
    }
}

pub(super) fn push_once(warnings: &mut Vec<String>, msg: String) {
    if !warnings.contains(&msg) {
        warnings.push(msg);
    }
}
