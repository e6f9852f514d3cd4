#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]

pub mod accounting;
pub mod aggregate;
pub mod baseline;
pub mod clock;
pub mod device;
pub mod env;
mod error;
pub mod export;
mod meter;
pub mod output;
pub mod report;
pub mod sampler;
pub mod stats;
pub mod throttle_reasons;
pub mod timefmt;

pub use baseline::{Baseline, BaselineConfig, BaselineMethod, BaselineMode};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use device::{DeviceSpec, EnergySource, SharedDevice};
pub use env::Environment;
pub use error::{Error, Result};
pub use meter::{parse_interval_ms, parse_seconds, EnergyScope, Meter, MeterBuilder, SyncHook};
pub use output::ResultFile;
pub use report::{EnergyMethod, EnergyReport, SCHEMA_VERSION};
