//! The results layer: the report schema, result and time-series files, the environment,
//! aggregation, CSV export, plots and pure statistics. It knows devices' static facts and
//! readings, but nothing of how they are measured: it never imports the measuring layer.

pub mod aggregate;
pub mod attribution;
pub mod compare;
pub mod env;
pub mod export;
pub mod group;
pub mod output;
#[cfg(feature = "plot")]
pub mod plot;
pub mod report;
pub mod stats;
pub mod timeseries;
