//! Reading a time series back one sample at a time, in bounded memory: a stream (complete or
//! cut short) or a `<stem>_timeseries.json` file; and converting a stream's window into such
//! a file.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use super::{parse_line, EndLine, Point, StreamEnd, StreamHeader, FORMAT};
use crate::error::{Error, Result};
use crate::results::output::{TimeseriesDevice, TimeseriesSample};

/// What a time series says about itself, read alongside its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    /// The experiment.
    pub experiment_id: String,
    /// Sampling interval, ms.
    pub interval_ms: f64,
    /// Simulated devices.
    pub simulated: bool,
    /// The devices.
    pub devices: Vec<TimeseriesDevice>,
    /// Samples read.
    pub sample_count: u64,
    /// Whether this is a stream (JSON Lines) rather than a time-series file.
    pub stream: bool,
    /// A stream's trailer; `None` for a stream cut short (and for a time-series file).
    pub end: Option<StreamEnd>,
}

impl SeriesInfo {
    /// Why the series is partial: a stream without its end mark.
    pub fn partial(&self) -> Option<&'static str> {
        (self.stream && self.end.is_none()).then_some(
            "partial: the stream has no end mark (the run was killed, or is still running); it holds the samples up to its last flush",
        )
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The header of the stream at `path`, or `None` when the file is not a stream.
///
/// # Errors
/// [`Error::Io`] naming the file when it cannot be read.
pub fn stream_header(path: &Path) -> Result<Option<StreamHeader>> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::new(f);
    let mut first = Vec::new();
    // a stream's header is short; a pretty JSON file's first line is `{`
    r.by_ref()
        .take(1 << 20)
        .read_until(b'\n', &mut first)
        .map_err(|e| Error::io(path, e))?;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&first) else {
        return Ok(None);
    };
    if v.get("format").and_then(serde_json::Value::as_str) != Some(FORMAT) {
        return Ok(None);
    }
    crate::results::output::check_schema(path, &v)?;
    serde_json::from_value(v)
        .map(Some)
        .map_err(|e| bad(path, format!("not a lem time-series stream header ({e})")))
}

/// Read a stream or a time-series file, calling `f` for every sample in file order.
/// A stream's times are made relative to its start; a time-series file's are kept (relative
/// to its window's start).
///
/// # Errors
/// [`Error::Io`] / [`Error::BadFile`] naming the file.
pub fn read_series(path: &Path, f: impl FnMut(&Point)) -> Result<SeriesInfo> {
    match stream_header(path)? {
        Some(h) => read_stream(path, &h, f),
        None => read_json_series(path, f),
    }
}

/// Read the stream at `path` (with header `h`), times as written (the meter's).
fn read_stream_raw(
    path: &Path,
    h: &StreamHeader,
    mut f: impl FnMut(&Point),
) -> Result<(u64, Option<StreamEnd>)> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut line = String::new();
    let mut n: u64 = 0;
    let mut end = None;
    let mut line_no = 0u64;
    loop {
        line.clear();
        let got = r.read_line(&mut line).map_err(|e| Error::io(path, e))?;
        if got == 0 {
            break;
        }
        line_no += 1;
        if line_no == 1 {
            continue;
        }
        let whole = line.ends_with('\n');
        if let Some(p) = parse_line(&line) {
            n += 1;
            f(&p);
        } else if let Ok(e) = serde_json::from_str::<EndLine>(&line) {
            end = Some(e.end);
        } else if whole && !line.trim().is_empty() {
            return Err(bad(
                path,
                format!(
                    "line {line_no} is not a sample line of stream version {}",
                    h.stream_version
                ),
            ));
        }
        // a torn last line (no newline: cut by a kill) is left out
    }
    Ok((n, end))
}

fn read_stream(path: &Path, h: &StreamHeader, mut f: impl FnMut(&Point)) -> Result<SeriesInfo> {
    let (n, end) = read_stream_raw(path, h, |p| {
        f(&Point {
            t_s: p.t_s - h.start_s,
            ..*p
        });
    })?;
    Ok(SeriesInfo {
        experiment_id: h.experiment_id.clone(),
        interval_ms: h.interval_ms,
        simulated: h.simulated,
        devices: h
            .devices
            .iter()
            .map(|d| TimeseriesDevice {
                index: d.index,
                uuid: d.uuid.clone(),
                name: d.name.clone(),
                baseline_power_w: d.baseline_power_w,
            })
            .collect(),
        sample_count: n,
        stream: true,
        end,
    })
}

/// A time-series file's top level, read with its samples handed out one by one.
struct JsonSeries<'a, F> {
    f: &'a mut F,
    info: SeriesInfo,
    version: Option<String>,
}

struct Samples<'a, F>(&'a mut F, &'a mut u64);

impl<'de, F: FnMut(&Point)> DeserializeSeed<'de> for Samples<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(&Point)> Visitor<'de> for Samples<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of samples")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some(s) = seq.next_element::<TimeseriesSample>()? {
            *self.1 += 1;
            (self.0)(&Point {
                t_s: s.t_s,
                device: s.device,
                power_w: s.power_w,
                memory_used_mb: s.memory_used_mb,
                temperature_c: s.temperature_c,
                utilisation_pct: s.utilisation_pct,
                throttle_reasons: s.throttle_reasons,
            });
        }
        Ok(())
    }
}

impl<'de, F: FnMut(&Point)> Visitor<'de> for &mut JsonSeries<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a lem time series")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "samples" => {
                    let mut n = 0;
                    map.next_value_seed(Samples(self.f, &mut n))?;
                    self.info.sample_count = n;
                }
                "schema_version" => self.version = Some(map.next_value()?),
                "experiment_id" => self.info.experiment_id = map.next_value()?,
                "interval_ms" => self.info.interval_ms = map.next_value()?,
                "simulated" => self.info.simulated = map.next_value()?,
                "devices" => self.info.devices = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

fn read_json_series(path: &Path, mut f: impl FnMut(&Point)) -> Result<SeriesInfo> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut de = serde_json::Deserializer::from_reader(BufReader::with_capacity(1 << 16, file));
    let mut js = JsonSeries {
        f: &mut f,
        info: SeriesInfo {
            experiment_id: String::new(),
            interval_ms: 0.0,
            simulated: false,
            devices: Vec::new(),
            sample_count: 0,
            stream: false,
            end: None,
        },
        version: None,
    };
    serde::Deserializer::deserialize_map(&mut de, &mut js)
        .map_err(|e| bad(path, format!("not a lem time series ({e})")))?;
    let v = serde_json::json!({ "schema_version": js.version });
    crate::results::output::check_schema(path, &v)?;
    Ok(js.info)
}

/// What a time-series file converted from a stream says besides its samples.
#[derive(Debug, Clone)]
pub struct WindowSeries<'a> {
    /// The experiment.
    pub experiment_id: &'a str,
    /// Sampling interval, ms.
    pub interval_ms: f64,
    /// Simulated devices.
    pub simulated: bool,
    /// The devices (with the window's baselines).
    pub devices: Vec<TimeseriesDevice>,
    /// The window on the meter's clock relative to its origin (a report's `start_s` and
    /// `start_s + duration_s`), s.
    pub from_s: f64,
    /// See `from_s`.
    pub to_s: f64,
}

/// Call `f` with the samples of the stream at `path` inside `[from_s, to_s]` (meter time),
/// times made relative to `from_s`.
///
/// # Errors
/// [`Error::Io`] / [`Error::BadFile`] naming the file.
pub fn stream_window(
    path: &Path,
    (from_s, to_s): (f64, f64),
    mut f: impl FnMut(&Point),
) -> Result<()> {
    let h = stream_header(path)?.ok_or_else(|| bad(path, "not a lem time-series stream"))?;
    let eps = 1e-9;
    read_stream_raw(path, &h, |p| {
        if p.t_s >= from_s - eps && p.t_s <= to_s + eps {
            f(&Point {
                t_s: (p.t_s - from_s).max(0.0),
                ..*p
            });
        }
    })?;
    Ok(())
}

/// Write the window `w` of the stream at `stream` as a time-series file at `out`
/// (atomically), reading the stream twice (to count, then to copy) and holding one sample
/// at a time. Returns the samples written.
///
/// # Errors
/// [`Error::Io`] / [`Error::BadFile`] naming the file that could not be read or written.
pub fn convert_window(stream: &Path, out: &Path, w: &WindowSeries<'_>) -> Result<u64> {
    let range = (w.from_s, w.to_s);
    let mut count: u64 = 0;
    stream_window(stream, range, |_| count += 1)?;
    let mut inner: Result<()> = Ok(());
    let written = crate::base::cache::write_atomic_with(out, |file| {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        write!(
            file,
            "{{\n  \"schema_version\": {},\n  \"experiment_id\": {},\n  \"interval_ms\": {},\n  \"sample_count\": {count},\n  \"simulated\": {},\n  \"devices\": ",
            q(crate::results::report::SCHEMA_VERSION),
            q(w.experiment_id),
            serde_json::Value::from(w.interval_ms),
            w.simulated
        )?;
        serde_json::to_writer(&mut *file, &w.devices)?;
        file.write_all(b",\n  \"samples\": [")?;
        let mut first = true;
        let mut io: std::io::Result<()> = Ok(());
        let read = stream_window(stream, range, |p| {
            if io.is_err() {
                return;
            }
            let s = TimeseriesSample {
                t_s: p.t_s,
                device: p.device,
                power_w: p.power_w,
                memory_used_mb: p.memory_used_mb,
                temperature_c: p.temperature_c,
                utilisation_pct: p.utilisation_pct,
                throttle_reasons: p.throttle_reasons,
            };
            io = file
                .write_all(if first { b"\n    " } else { b",\n    " })
                .and_then(|()| serde_json::to_writer(&mut *file, &s).map_err(std::io::Error::from));
            first = false;
        });
        if let Err(e) = read {
            let why = e.to_string();
            inner = Err(e);
            return Err(std::io::Error::other(why));
        }
        io?;
        file.write_all(b"\n  ]\n}\n")
    });
    inner?;
    written?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        let h = StreamHeader::new("e", 10.0, true, (5.0, 1.0e9), Vec::new());
        serde_json::to_string(&h).unwrap()
    }

    #[test]
    fn a_stream_cut_short_reads_up_to_its_last_whole_line_and_is_partial() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.jsonl");
        let text = format!(
            "{}\n[5.5,0,100,null,null,null,0]\n[5.6,0,101,null,null,null,0]\n[5.7,0,1",
            header()
        );
        std::fs::write(&p, text).unwrap();
        let mut ts = Vec::new();
        let info = read_series(&p, |s| ts.push(s.t_s)).unwrap();
        assert_eq!(info.sample_count, 2);
        assert!(info.partial().is_some());
        assert!(
            (ts[0] - 0.5).abs() < 1e-9,
            "relative to the stream's start: {ts:?}"
        );
        // with its end mark it is complete
        let text = format!(
            "{}\n[5.5,0,100,null,null,null,0]\n{{\"end\":{{\"complete\":true,\"sample_count\":1,\"dropped_rounds\":0}}}}\n",
            header()
        );
        std::fs::write(&p, text).unwrap();
        let info = read_series(&p, |_| ()).unwrap();
        assert_eq!(info.partial(), None);
        assert_eq!(info.end.map(|e| e.sample_count), Some(1));
        // a damaged whole line is an error naming the file and the line
        let text = format!("{}\n[5.5,0,100,null,null,null,0]\nnot a sample\n", header());
        std::fs::write(&p, text).unwrap();
        let e = read_series(&p, |_| ()).unwrap_err().to_string();
        assert!(e.contains("s.jsonl") && e.contains("line 3"), "{e}");
    }
}
