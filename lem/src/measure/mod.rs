//! The measuring layer: the meter and its windows, the background sampler, the idle
//! baseline, the probe of update periods, warmup, and the accounting of one device over one
//! window. It turns device readings into reports; it reads devices (below) and writes the
//! results schema (below), never the other way round.

pub mod accounting;
pub mod attribution;
pub mod baseline;
pub mod builder;
pub mod cooldown;
pub mod group;
pub mod meter;
pub mod probe;
pub mod rolling;
pub mod sampler;
pub mod series;
pub mod share;
pub mod stretch;
pub mod warmup;
pub mod window;
