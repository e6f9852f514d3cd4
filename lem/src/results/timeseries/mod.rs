//! The time series as it is sampled: a JSON Lines stream written by its own thread
//! (`writer`), read back sample by sample in bounded memory (`read`), and converted at the
//! end of a window into the `<stem>_timeseries.json` file beside its result.
//!
//! The stream (`<stem>_timeseries.jsonl`):
//! - line 1, the header: a JSON object with `format` = [`FORMAT`], `stream_version`,
//!   `schema_version`, the experiment, the sampling interval, whether the devices are
//!   simulated, the wall-clock time of the meter's origin, the devices, the `columns` of
//!   every sample line and their `units`;
//! - then one line per sample: a JSON array of the header's columns (`null` for a value the
//!   device did not give);
//! - at a clean end, one trailer line `{"end": {...}}` with `complete: true`, the sample
//!   count and the rounds dropped (the writer fell behind). A stream without it was cut
//!   short (the run was killed, or is still running): it holds every sample up to the last
//!   flush, and a torn last line is left out.

use serde::{Deserialize, Serialize};
use std::io::Write;

use crate::device::{Sample, ThrottleReasons};

pub mod read;
pub mod writer;

/// The header's `format`: tells a stream from any other JSON Lines file.
pub const FORMAT: &str = "lem-timeseries-stream";
/// Version of the stream layout (header, sample lines, trailer).
pub const STREAM_VERSION: u32 = 1;
/// The columns of every sample line, in order.
pub const COLUMNS: [&str; 7] = [
    "t_s",
    "device",
    "power_w",
    "memory_used_mb",
    "temperature_c",
    "utilisation_pct",
    "throttle_reasons",
];
/// How often the writer hands what it has to the operating system, s: a killed run loses at
/// most this much.
pub const FLUSH_PERIOD_S: f64 = 1.0;

/// A device named in a stream's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamDevice {
    /// Device index.
    pub index: u32,
    /// Stable identifier.
    pub uuid: String,
    /// Product name.
    pub name: String,
    /// Idle baseline when the stream started, W.
    pub baseline_power_w: Option<f64>,
}

/// The first line of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`STREAM_VERSION`] of the writer.
    pub stream_version: u32,
    /// Result schema version of the writer.
    pub schema_version: String,
    /// The experiment (empty when not known when the stream started).
    pub experiment_id: String,
    /// Sampling interval, ms.
    pub interval_ms: f64,
    /// Simulated devices.
    pub simulated: bool,
    /// Meter time (`t_s` of the sample lines) when the stream started, s.
    pub start_s: f64,
    /// Wall-clock time (Unix s) at meter time 0: `t_s` + this is a sample's Unix time.
    pub origin_unix_s: f64,
    /// Wall-clock start of the stream, RFC 3339 UTC.
    pub started_at: String,
    /// How often the writer flushes, s.
    pub flush_period_s: f64,
    /// The devices sampled.
    pub devices: Vec<StreamDevice>,
    /// The columns of every sample line ([`COLUMNS`]).
    pub columns: Vec<String>,
    /// The unit of each column.
    pub units: serde_json::Map<String, serde_json::Value>,
}

impl StreamHeader {
    /// A header for a stream that starts at meter time `start_s`.
    pub fn new(
        experiment_id: &str,
        interval_ms: f64,
        simulated: bool,
        (start_s, origin_unix_s): (f64, f64),
        devices: Vec<StreamDevice>,
    ) -> Self {
        let units = [
            ("t_s", "s since the meter's origin (origin_unix_s)"),
            ("device", "device index"),
            ("power_w", "W"),
            ("memory_used_mb", "MiB"),
            ("temperature_c", "°C"),
            ("utilisation_pct", "%"),
            ("throttle_reasons", "NVML clocks-event reasons bitmask"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
        .collect();
        Self {
            format: FORMAT.into(),
            stream_version: STREAM_VERSION,
            schema_version: crate::results::report::SCHEMA_VERSION.into(),
            experiment_id: experiment_id.into(),
            interval_ms,
            simulated,
            start_s,
            origin_unix_s,
            started_at: crate::base::timefmt::rfc3339(origin_unix_s + start_s),
            flush_period_s: FLUSH_PERIOD_S,
            devices,
            columns: COLUMNS.iter().map(|c| (*c).to_string()).collect(),
            units,
        }
    }
}

/// The trailer of a stream that ended cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// Always true: the stream holds every sample it was given but the dropped rounds.
    pub complete: bool,
    /// Sample lines written.
    pub sample_count: u64,
    /// Sampling rounds left out because the writer had fallen behind.
    pub dropped_rounds: u64,
}

/// The trailer line's shape.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct EndLine {
    pub(crate) end: StreamEnd,
}

/// One sample as read back from a stream or a time-series file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Seconds since the series' origin (the window's start in a time-series file, the
    /// stream's start in a stream).
    pub t_s: f64,
    /// Device index.
    pub device: u32,
    /// Power, W.
    pub power_w: Option<f64>,
    /// Memory in use, MiB.
    pub memory_used_mb: Option<f64>,
    /// Temperature, °C.
    pub temperature_c: Option<f64>,
    /// Utilisation, %.
    pub utilisation_pct: Option<f64>,
    /// Clocks-event reasons.
    pub throttle_reasons: ThrottleReasons,
}

fn opt(w: &mut impl Write, v: Option<f64>) -> std::io::Result<()> {
    match v {
        Some(x) if x.is_finite() => write!(w, ",{x}"),
        _ => w.write_all(b",null"),
    }
}

/// Write one sample line: its time relative to the meter's origin `origin_s`.
///
/// # Errors
/// The writer's.
pub fn write_line(w: &mut impl Write, s: &Sample, origin_s: f64) -> std::io::Result<()> {
    let r = &s.reading;
    write!(w, "[{}", s.t_s - origin_s)?;
    write!(w, ",{}", s.device)?;
    opt(w, r.power_w)?;
    opt(w, r.memory_used_mb)?;
    opt(w, r.temperature_c)?;
    opt(w, r.utilisation_pct)?;
    writeln!(w, ",{}]", r.throttle.unwrap_or_default().bits())
}

fn num(field: &str) -> Option<Option<f64>> {
    let f = field.trim();
    if f == "null" {
        return Some(None);
    }
    f.parse::<f64>().ok().map(Some)
}

/// Parse one sample line (without its newline); `None` when it is not one.
pub fn parse_line(line: &str) -> Option<Point> {
    let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut it = inner.split(',');
    let t_s = num(it.next()?)??;
    let device = it.next()?.trim().parse::<u32>().ok()?;
    let power_w = num(it.next()?)?;
    let memory_used_mb = num(it.next()?)?;
    let temperature_c = num(it.next()?)?;
    let utilisation_pct = num(it.next()?)?;
    let bits = it.next()?.trim().parse::<u64>().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some(Point {
        t_s,
        device,
        power_w,
        memory_used_mb,
        temperature_c,
        utilisation_pct,
        throttle_reasons: ThrottleReasons::from_bits(bits),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Reading;

    #[test]
    fn a_line_round_trips_with_missing_values() {
        let s = Sample {
            t_s: 12.5,
            device: 3,
            reading: Reading {
                power_w: Some(250.25),
                temperature_c: None,
                memory_used_mb: Some(1024.0),
                throttle: Some(ThrottleReasons::HW_THERMAL),
                ..Reading::default()
            },
        };
        let mut out = Vec::new();
        write_line(&mut out, &s, 2.0).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "[10.5,3,250.25,1024,null,null,64]\n");
        let p = parse_line(text.trim_end()).unwrap();
        assert_eq!(p.t_s, 10.5);
        assert_eq!(p.device, 3);
        assert_eq!(p.power_w, Some(250.25));
        assert_eq!(p.temperature_c, None);
        assert_eq!(p.throttle_reasons, ThrottleReasons::HW_THERMAL);
        assert!(parse_line("[10.5,3,250.2").is_none(), "a torn line");
        assert!(parse_line("{\"end\": {}}").is_none());
    }
}
