//! The live exporter: a Prometheus `/metrics` endpoint for long-running servers.
//!
//! - `gpu`: every device's energy since the exporter started (raw, above the idle baseline,
//!   with its bound), its readings and throttle time, advanced on every sampler round by
//!   consecutive windows that tile time (`Meter::rolling`), and with processes the
//!   per-process active energy.
//! - `windows`: histograms of the windows an application closes, by name.
//! - `http`: the endpoint (tiny_http threads; the text exposition 0.0.4, or OpenMetrics when
//!   the scraper asks for it), reading only what the metrics hold: a scrape never calls the
//!   driver.
//! - `serve`: `Meter::serve_metrics`, and the loop `lem monitor` runs.

pub mod gpu;
pub mod http;
pub mod serve;
pub mod windows;

pub use gpu::GpuMetrics;
pub use http::MetricsServer;
pub use serve::{MetricsOptions, DEFAULT_LISTEN};
pub use windows::{Buckets, WindowMetrics};
