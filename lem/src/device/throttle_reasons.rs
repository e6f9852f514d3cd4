//! NVML clocks-event (throttle) reasons as a small bitmask with snake_case names.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A set of clocks-event reasons, bit-compatible with NVML's
/// `nvmlClocksEventReason*` constants.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ThrottleReasons(u64);

/// Name and NVML bit of every known reason, in NVML's bit order.
pub const REASONS: &[(&str, u64)] = &[
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
];

impl ThrottleReasons {
    /// No reason at all.
    pub const NONE: Self = Self(0);
    /// The GPU is idle: not a throttle.
    pub const GPU_IDLE: Self = Self(0x1);
    /// Software power cap (the power limit).
    pub const SW_POWER_CAP: Self = Self(0x4);
    /// Hardware slowdown: thermal or power brake, NVML does not say which.
    pub const HW_SLOWDOWN: Self = Self(0x8);
    /// Software thermal slowdown.
    pub const SW_THERMAL: Self = Self(0x20);
    /// Hardware thermal slowdown.
    pub const HW_THERMAL: Self = Self(0x40);
    /// Hardware power brake.
    pub const HW_POWER_BRAKE: Self = Self(0x80);

    const THERMAL_MASK: u64 = 0x20 | 0x40;
    const POWER_MASK: u64 = 0x4 | 0x80;
    /// Reasons that slow the clocks down against the workload's will.
    const THROTTLE_MASK: u64 = Self::THERMAL_MASK | Self::POWER_MASK | 0x8;

    /// From NVML's raw bitmask (unknown bits are kept).
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw bitmask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Parse one snake_case name (`hw_thermal_slowdown`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        REASONS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| Self(*b))
    }

    /// Union of two sets.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Any reason that actually slows the clocks (power, thermal or hardware slowdown).
    pub const fn is_throttled(self) -> bool {
        self.0 & Self::THROTTLE_MASK != 0
    }

    /// Thermal throttling: software OR hardware thermal slowdown.
    pub const fn is_thermal(self) -> bool {
        self.0 & Self::THERMAL_MASK != 0
    }

    /// Power throttling: software power cap OR hardware power brake.
    pub const fn is_power(self) -> bool {
        self.0 & Self::POWER_MASK != 0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// These reasons without the bits of `other`.
    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// A slowdown worth a warning: thermal, hardware slowdown or the power brake. The SW power
    /// cap alone is GPU Boost running at its limit, normal under heavy load.
    pub const fn is_slowdown(self) -> bool {
        self.0 & (Self::THROTTLE_MASK & !Self::SW_POWER_CAP.0) != 0
    }

    /// Only the reasons that throttle (drops idle, sync boost, clock settings).
    #[must_use]
    pub const fn throttling_only(self) -> Self {
        Self(self.0 & Self::THROTTLE_MASK)
    }

    /// The names of the set bits, in NVML's bit order; unknown bits as `unknown_0x...`.
    pub fn names(self) -> Vec<String> {
        let mut out: Vec<String> = REASONS
            .iter()
            .filter(|(_, b)| self.0 & b != 0)
            .map(|(n, _)| (*n).to_string())
            .collect();
        let known: u64 = REASONS.iter().map(|(_, b)| b).sum();
        let unknown = self.0 & !known;
        if unknown != 0 {
            out.push(format!("unknown_{unknown:#x}"));
        }
        out
    }
}

impl fmt::Debug for ThrottleReasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ThrottleReasons({})", self.names().join("|"))
    }
}

impl fmt::Display for ThrottleReasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        f.write_str(&self.names().join(", "))
    }
}

impl Serialize for ThrottleReasons {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for ThrottleReasons {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut out = Self::NONE;
        for n in names {
            // Unknown names from a newer lem are kept as nothing rather than failing the read.
            if let Some(r) = Self::from_name(&n) {
                out = out.union(r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thermal_includes_software_and_hardware() {
        assert!(ThrottleReasons::SW_THERMAL.is_thermal());
        assert!(ThrottleReasons::HW_THERMAL.is_thermal());
        assert!(!ThrottleReasons::SW_POWER_CAP.is_thermal());
        assert!(ThrottleReasons::HW_POWER_BRAKE.is_power());
        assert!(ThrottleReasons::HW_SLOWDOWN.is_throttled());
        assert!(!ThrottleReasons::GPU_IDLE.is_throttled());
        assert!(!ThrottleReasons::from_name("sync_boost")
            .unwrap_or_default()
            .is_throttled());
    }

    #[test]
    fn names_round_trip() {
        for (name, bit) in REASONS {
            let r = ThrottleReasons::from_name(name).unwrap_or_default();
            assert_eq!(r.bits(), *bit);
            assert_eq!(r.names(), vec![name.to_string()]);
        }
        assert!(ThrottleReasons::from_name("hot").is_none());
        let r = ThrottleReasons::from_bits(0x40 | 0x4 | 0x1000);
        assert_eq!(
            r.names(),
            vec!["sw_power_cap", "hw_thermal_slowdown", "unknown_0x1000"]
        );
        let json = serde_json::to_string(&ThrottleReasons::from_bits(0x44)).unwrap_or_default();
        assert_eq!(json, r#"["sw_power_cap","hw_thermal_slowdown"]"#);
        let back: ThrottleReasons = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back.bits(), 0x44);
    }
}
