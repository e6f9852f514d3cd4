//! The shares of a group of windows: each stretch between two of the group's boundaries is
//! divided among the windows open in it, in bounded memory.
//!
//! The equal parts of every stretch go into one running sum per unit window (`cum`); a
//! window's equal share is that sum at its close minus the sum at its open. The parts
//! divided by weight are credited at the end of the stretch to the windows that reported a
//! weight in it. So each open window keeps a fixed handful of numbers, a boundary costs
//! O(log n) plus one credit per window that reported weight in the stretch, and the shares
//! add up to the energy of the stretches with a window open (the union), by construction.

use std::collections::BTreeMap;

use crate::results::group::{GroupSummary, Percentiles};

/// Raw energy, adjusted energy and the bound, per window or per stretch, J.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Amounts {
    pub(super) raw: f64,
    pub(super) adj: f64,
    pub(super) unc: f64,
}

impl Amounts {
    fn plus(self, o: Amounts, k: f64) -> Amounts {
        Amounts {
            raw: self.raw + k * o.raw,
            adj: self.adj + k * o.adj,
            unc: self.unc + k * o.unc,
        }
    }
}

/// What one stretch between two boundaries measured.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stretch {
    pub(super) raw: Option<f64>,
    pub(super) adj: Option<f64>,
    pub(super) unc: Option<f64>,
    pub(super) duration_s: f64,
}

/// Running equal shares per unit window, and how many stretches so far were unknown.
#[derive(Debug, Clone, Copy, Default)]
struct Cumulative {
    per: Amounts,
    unknown: [u64; 3],
}

/// An open window's bookkeeping: constant size.
#[derive(Debug, Clone, Copy)]
struct Member {
    at_open: Cumulative,
    /// What it was credited by weight.
    direct: Amounts,
    /// Weight reported in the current stretch.
    pending: f64,
    /// Weight reported in all.
    weight: f64,
}

/// A closed window's part of the group's energy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Share {
    pub(super) raw: Option<f64>,
    pub(super) adj: Option<f64>,
    pub(super) unc: Option<f64>,
    pub(super) weight: f64,
}

/// A group's shares: the open windows, the running sums, the union and the gaps.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    open: BTreeMap<u64, Member>,
    next: u64,
    /// Windows that reported weight in the current stretch, and its total.
    pending: Vec<u64>,
    pending_total: f64,
    cum: Cumulative,
    /// Over stretches with a window open.
    union: Amounts,
    union_unknown: [bool; 3],
    gaps_s: f64,
    gaps_j: f64,
    gaps_unknown: bool,
    span_s: f64,
    stretches: u64,
    weighted: u64,
    covered: u64,
    /// Closed windows: their count, known shares, and shares added up.
    closed: u64,
    shares: Vec<f64>,
    closed_sum: Amounts,
    weight: f64,
}

impl Ledger {
    /// A window joins (right after a boundary); its slot.
    pub(super) fn join(&mut self) -> u64 {
        self.next += 1;
        self.open.insert(
            self.next,
            Member {
                at_open: self.cum,
                direct: Amounts::default(),
                pending: 0.0,
                weight: 0.0,
            },
        );
        self.next
    }

    /// Window `slot` reports `w` units of progress in the current stretch.
    pub(super) fn add_weight(&mut self, slot: u64, w: f64) {
        if let Some(m) = self.open.get_mut(&slot) {
            if m.pending == 0.0 && w > 0.0 {
                self.pending.push(slot);
            }
            m.pending += w;
            m.weight += w;
            self.pending_total += w;
            self.weight += w;
        }
    }

    /// The current stretch ended with `s`: divide it among the windows open in it (none:
    /// a gap).
    pub(super) fn stretch(&mut self, s: Stretch) {
        self.stretches += 1;
        self.span_s += s.duration_s;
        let n = self.open.len();
        if n == 0 {
            self.gaps_s += s.duration_s;
            self.gaps_j += s.raw.unwrap_or(0.0);
            self.gaps_unknown |= s.raw.is_none();
            return;
        }
        self.covered += 1;
        let known = [s.raw, s.adj, s.unc];
        for (i, k) in known.iter().enumerate() {
            if k.is_none() {
                self.cum.unknown[i] += 1;
                self.union_unknown[i] = true;
            }
        }
        let total = Amounts {
            raw: s.raw.unwrap_or(0.0),
            adj: s.adj.unwrap_or(0.0),
            unc: s.unc.unwrap_or(0.0),
        };
        self.union = self.union.plus(total, 1.0);
        let (equal, by_weight) = divide(total, s.adj.is_some(), self.pending_total > 0.0);
        self.cum.per = self.cum.per.plus(equal, 1.0 / n as f64);
        if self.pending_total > 0.0 {
            self.weighted += 1;
            for slot in self.pending.drain(..) {
                if let Some(m) = self.open.get_mut(&slot) {
                    m.direct = m.direct.plus(by_weight, m.pending / self.pending_total);
                    m.pending = 0.0;
                }
            }
        }
        self.pending.clear();
        self.pending_total = 0.0;
    }

    /// What `m` has been given so far, with unknowns as `None`.
    fn share_of(&self, m: &Member) -> Share {
        let d = self.amounts_of(m);
        let known = |i: usize| self.cum.unknown[i] == m.at_open.unknown[i];
        Share {
            raw: known(0).then_some(d.raw),
            // the stretches' adjusted energy (over every device) is summed unfloored (a
            // stretch below the baseline offsets one above it) and the window's total
            // floored once
            adj: known(1).then_some(d.adj.max(0.0)),
            unc: (known(0) && known(2)).then_some(d.unc),
            weight: m.weight,
        }
    }

    fn amounts_of(&self, m: &Member) -> Amounts {
        Amounts {
            raw: self.cum.per.raw - m.at_open.per.raw + m.direct.raw,
            adj: self.cum.per.adj - m.at_open.per.adj + m.direct.adj,
            unc: self.cum.per.unc - m.at_open.per.unc + m.direct.unc,
        }
    }

    /// Window `slot` leaves (right after a boundary): its share.
    pub(super) fn leave(&mut self, slot: u64) -> Option<Share> {
        let m = self.open.remove(&slot)?;
        if m.pending > 0.0 {
            // reported after the last stretch ended: nothing left to divide by it
            self.pending_total -= m.pending;
            self.pending.retain(|s| *s != slot);
        }
        let share = self.share_of(&m);
        self.closed += 1;
        self.closed_sum = self.closed_sum.plus(self.amounts_of(&m), 1.0);
        if let Some(r) = share.raw {
            self.shares.push(r);
        }
        Some(share)
    }

    /// The group's summary now.
    pub(super) fn summary(&self, name: &str) -> GroupSummary {
        let open_sum = self
            .open
            .values()
            .fold(Amounts::default(), |a, m| a.plus(self.amounts_of(m), 1.0));
        let sum = self.closed_sum.plus(open_sum, 1.0);
        let union_j = (!self.union_unknown[0]).then_some(self.union.raw);
        let shares_sum_j = union_j.map(|_| sum.raw);
        GroupSummary {
            name: name.to_string(),
            windows: self.closed,
            open_windows: self.open.len() as u64,
            union_j,
            union_uncertainty_j: union_j
                .filter(|_| !self.union_unknown[2])
                .map(|_| self.union.unc),
            union_adjusted_j: (!self.union_unknown[1]).then_some(self.union.adj.max(0.0)),
            shares_sum_j,
            shares_sum_relative_error: union_j
                .zip(shares_sum_j)
                .filter(|(u, _)| *u != 0.0)
                .map(|(u, s)| ((s - u) / u).abs()),
            gaps_s: self.gaps_s,
            gaps_j: (!self.gaps_unknown).then_some(self.gaps_j),
            span_s: self.span_s,
            stretches: self.stretches,
            per_window_j: Percentiles::of(&self.shares),
            per_weight_j: shares_sum_j
                .filter(|_| self.weight > 0.0)
                .map(|s| s / self.weight),
            weight: self.weight,
            split: match self.weighted {
                0 => "equal",
                w if w == self.covered => "weight",
                _ => "mixed",
            }
            .to_string(),
        }
    }
}

/// A stretch's energy as (what each open window gets, to be divided by their number; what
/// is divided by weight). Without weights all of it is divided equally. With weights, the
/// active part of the raw energy (the adjusted energy where positive) goes by weight and the
/// idle part (raw − active) equally, and the bound follows the raw energy; the adjusted
/// energy goes by weight whatever its sign (a stretch below the baseline offsets, in the
/// same windows, the noise above it in the next). Without a baseline the whole raw energy
/// goes by weight.
fn divide(total: Amounts, adjusted_known: bool, weighted: bool) -> (Amounts, Amounts) {
    if !weighted {
        return (total, Amounts::default());
    }
    if !adjusted_known {
        return (
            Amounts::default(),
            Amounts {
                raw: total.raw,
                adj: 0.0,
                unc: total.unc,
            },
        );
    }
    // only raw energy above the baseline is divided by weight; a stretch below it (adjusted
    // energy < 0, kept unfloored so that the sums are not biased upwards) is idle energy
    let active = total.adj.max(0.0);
    let idle = total.raw - active;
    let (unc_idle, unc_active) = if total.raw > 0.0 {
        (total.unc * idle / total.raw, total.unc * active / total.raw)
    } else {
        (total.unc, 0.0)
    };
    (
        Amounts {
            raw: idle,
            adj: 0.0,
            unc: unc_idle,
        },
        Amounts {
            raw: active,
            adj: total.adj,
            unc: unc_active,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(raw: f64, adj: f64) -> Stretch {
        Stretch {
            raw: Some(raw),
            adj: Some(adj),
            unc: Some(raw / 100.0),
            duration_s: 1.0,
        }
    }

    #[test]
    fn equal_split_over_overlapping_windows() {
        let mut l = Ledger::default();
        let a = l.join();
        l.stretch(st(100.0, 60.0)); // a alone
        let b = l.join();
        l.stretch(st(100.0, 60.0)); // a and b
        let sa = l.leave(a).unwrap();
        l.stretch(st(100.0, 60.0)); // b alone
        let sb = l.leave(b).unwrap();
        assert_eq!(sa.raw, Some(150.0));
        assert_eq!(sb.raw, Some(150.0));
        assert_eq!(sa.adj, Some(90.0));
        assert_eq!(sa.unc, Some(1.5));
        let g = l.summary("g");
        assert_eq!(g.union_j, Some(300.0));
        assert_eq!(g.shares_sum_j, Some(300.0));
        assert_eq!(g.split, "equal");
        assert_eq!(g.per_weight_j, None);
    }

    #[test]
    fn weights_divide_the_active_part_and_idle_goes_equally() {
        let mut l = Ledger::default();
        let a = l.join();
        let b = l.join();
        l.add_weight(a, 3.0);
        l.add_weight(b, 1.0);
        l.stretch(st(100.0, 60.0));
        let sa = l.leave(a).unwrap();
        let sb = l.leave(b).unwrap();
        // idle 40 halves, active 60 by 3:1
        assert_eq!(sa.raw, Some(20.0 + 45.0));
        assert_eq!(sb.raw, Some(20.0 + 15.0));
        assert_eq!(sa.adj, Some(45.0));
        assert_eq!(sa.weight, 3.0);
        let g = l.summary("g");
        assert_eq!(g.split, "weight");
        assert_eq!(g.per_weight_j, Some(25.0));
    }

    #[test]
    fn adjusted_energy_below_the_baseline_offsets_the_noise_above_it() {
        // equal split: a stretch 10 J above the baseline, then one 10 J below it
        let mut l = Ledger::default();
        let a = l.join();
        let b = l.join();
        l.stretch(st(100.0, 10.0));
        l.stretch(st(80.0, -10.0));
        let (sa, sb) = (l.leave(a).unwrap(), l.leave(b).unwrap());
        assert_eq!((sa.adj, sb.adj), (Some(0.0), Some(0.0)));
        assert_eq!(sa.raw, Some(90.0));
        assert_eq!(l.summary("g").union_adjusted_j, Some(0.0));
        // by weight: only a reports weight; the stretch below the baseline is idle raw
        // energy, and its shortfall goes with the weight, as the excess did
        let mut l = Ledger::default();
        let a = l.join();
        let b = l.join();
        l.add_weight(a, 1.0);
        l.stretch(st(100.0, 10.0));
        l.add_weight(a, 1.0);
        l.stretch(st(80.0, -10.0));
        let (sa, sb) = (l.leave(a).unwrap(), l.leave(b).unwrap());
        assert_eq!((sa.adj, sb.adj), (Some(0.0), Some(0.0)));
        // raw: 45 + 10 and 40 (idle halves, the active 10 J by weight); b 45 + 40
        assert_eq!(sa.raw, Some(95.0));
        assert_eq!(sb.raw, Some(85.0));
        let g = l.summary("g");
        assert_eq!(g.shares_sum_j, g.union_j);
        assert_eq!(g.union_adjusted_j, Some(0.0));
        // a window's total below the baseline is floored once, at its end
        let mut l = Ledger::default();
        let a = l.join();
        l.stretch(st(50.0, -5.0));
        assert_eq!(l.leave(a).unwrap().adj, Some(0.0));
    }

    #[test]
    fn gaps_and_unknown_stretches() {
        let mut l = Ledger::default();
        let a = l.join();
        l.stretch(st(10.0, 5.0));
        l.leave(a).unwrap();
        l.stretch(st(7.0, 0.0)); // nobody open
        let b = l.join();
        l.stretch(Stretch {
            raw: None,
            adj: None,
            unc: None,
            duration_s: 1.0,
        });
        let sb = l.leave(b).unwrap();
        assert_eq!(sb.raw, None);
        let g = l.summary("g");
        assert_eq!(g.gaps_s, 1.0);
        assert_eq!(g.gaps_j, Some(7.0));
        assert_eq!(g.union_j, None);
        assert_eq!(g.windows, 2);
    }
}
