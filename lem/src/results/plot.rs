//! Power plots: power over time per device, throttle intervals shaded, phase boundaries
//! marked, the idle baseline as a dashed line. SVG (plotters), so no system libraries are
//! needed.

use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use plotters::coord::types::RangedCoordf64;

use crate::results::output::TimeseriesDevice;

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    crate::results::output::read_lem_json(path)
}

/// Phase windows (name, start, end) relative to the window start, from a result's `phases`
/// section: each of a phase's `intervals` when it lists them, else its `start_s` and
/// `duration_s`.
fn phases(result: &Value) -> Vec<Phase> {
    let origin = result.get("start_s").and_then(Value::as_f64).unwrap_or(0.0);
    let Some(map) = result.get("phases").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out: Vec<Phase> = Vec::new();
    for (name, p) in map {
        if let Some(iv) = p.get("intervals").and_then(Value::as_array) {
            for w in iv {
                if let (Some(s), Some(e)) = (
                    w.get(0).and_then(Value::as_f64),
                    w.get(1).and_then(Value::as_f64),
                ) {
                    out.push((name.clone(), s - origin, e - origin));
                }
            }
        } else if let (Some(s), Some(d)) = (
            p.get("start_s").and_then(Value::as_f64),
            p.get("duration_s").and_then(Value::as_f64),
        ) {
            out.push((name.clone(), s - origin, s - origin + d));
        }
    }
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    out
}

/// A phase: name, start and end (s since the window's start).
type Phase = (String, f64, f64);

/// The time series to read, the phases and the window's duration of a plot input.
fn load(path: &Path) -> Result<(PathBuf, Vec<Phase>, Option<f64>)> {
    if crate::results::timeseries::read::stream_header(path)?.is_some() {
        return Ok((path.to_path_buf(), Vec::new(), None));
    }
    let v = read_json(path)?;
    if v.get("samples").is_some() {
        return Ok((path.to_path_buf(), Vec::new(), None));
    }
    let name = v
        .get("timeseries_file")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                path,
                "this result has no time series (run with --timeseries)",
            )
        })?;
    let ts_path: PathBuf = path.parent().unwrap_or(Path::new(".")).join(name);
    let duration = v.get("duration_s").and_then(Value::as_f64);
    Ok((ts_path, phases(&v), duration))
}

/// Most points a device's line keeps: past this, samples are merged into time buckets
/// (each keeping its lowest and highest power), so a plot of days of samples holds a few
/// thousand points per device.
const MAX_BUCKETS: usize = 2000;

/// One device's power line, decimated as it is read: per time bucket, the lowest and the
/// highest reading (with their times); the bucket width doubles whenever the buckets would
/// pass [`MAX_BUCKETS`].
#[derive(Debug, Default)]
struct Line {
    width: f64,
    /// Per bucket: (time of the lowest, lowest, time of the highest, highest).
    buckets: Vec<Option<(f64, f64, f64, f64)>>,
    /// Throttled intervals, each sample held until the device's next one.
    throttled: Vec<(f64, f64)>,
    throttled_since: Option<f64>,
}

impl Line {
    fn add(&mut self, t: f64, power: Option<f64>, throttled: bool) {
        match (self.throttled_since, throttled) {
            (None, true) => self.throttled_since = Some(t),
            (Some(since), false) => {
                self.throttled.push((since, t));
                self.throttled_since = None;
            }
            _ => {}
        }
        let Some(p) = power else {
            return;
        };
        let t = t.max(0.0);
        let mut i = (t / self.width) as usize;
        while i >= MAX_BUCKETS {
            self.coarsen();
            i = (t / self.width) as usize;
        }
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, None);
        }
        let b = &mut self.buckets[i];
        *b = Some(match *b {
            None => (t, p, t, p),
            Some((tl, lo, th, hi)) => {
                let (tl, lo) = if p < lo { (t, p) } else { (tl, lo) };
                let (th, hi) = if p > hi { (t, p) } else { (th, hi) };
                (tl, lo, th, hi)
            }
        });
    }

    /// Double the bucket width, merging pairs.
    fn coarsen(&mut self) {
        self.width *= 2.0;
        let merged = self
            .buckets
            .chunks(2)
            .map(|c| {
                c.iter().flatten().copied().reduce(|a, b| {
                    let (tl, lo) = if b.1 < a.1 { (b.0, b.1) } else { (a.0, a.1) };
                    let (th, hi) = if b.3 > a.3 { (b.2, b.3) } else { (a.2, a.3) };
                    (tl, lo, th, hi)
                })
            })
            .collect();
        self.buckets = merged;
    }

    /// The points to draw, in time order.
    fn points(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(self.buckets.len() * 2);
        for (tl, lo, th, hi) in self.buckets.iter().flatten() {
            let (a, b) = if tl <= th {
                ((*tl, *lo), (*th, *hi))
            } else {
                ((*th, *hi), (*tl, *lo))
            };
            out.push(a);
            if b != a {
                out.push(b);
            }
        }
        out
    }
}

/// A time series read for plotting: what it says of itself, each device's line, and the
/// time and power ranges.
struct Read {
    info: crate::results::timeseries::read::SeriesInfo,
    lines: std::collections::BTreeMap<u32, Line>,
    t_max: f64,
    p_max: f64,
}

/// Read the time series at `path` once, decimating as it goes.
fn read_lines(path: &Path, duration: Option<f64>) -> Result<Read> {
    let mut lines: std::collections::BTreeMap<u32, Line> = std::collections::BTreeMap::new();
    let mut t_max = duration.unwrap_or(0.0);
    let mut p_max: f64 = 0.0;
    let mut any_power = false;
    let info = crate::results::timeseries::read::read_series(path, |s| {
        let line = lines.entry(s.device).or_insert_with(|| Line {
            width: 1e-3,
            ..Line::default()
        });
        line.add(s.t_s, s.power_w, s.throttle_reasons.is_throttled());
        t_max = t_max.max(s.t_s);
        if let Some(p) = s.power_w {
            any_power = true;
            p_max = p_max.max(p);
        }
    })?;
    if !any_power {
        return Err(bad(path, "no power samples to plot"));
    }
    for l in lines.values_mut() {
        if let Some(since) = l.throttled_since.take() {
            l.throttled.push((since, t_max));
        }
    }
    let p_max = info
        .devices
        .iter()
        .filter_map(|d| d.baseline_power_w)
        .fold(p_max, f64::max)
        * 1.15
        + 1.0;
    Ok(Read {
        info,
        lines,
        t_max: t_max.max(1e-3),
        p_max,
    })
}

/// Plot a result file (with its time series beside it), a time-series file or a stream
/// (complete or cut short) to an SVG, written atomically. The series is read once, one
/// sample at a time, and each device's line decimated to a few thousand points, so memory
/// does not grow with the series' length. Returns what the series says of itself (a stream
/// cut short is [`partial`](crate::results::timeseries::read::SeriesInfo::partial)).
///
/// # Errors
/// [`Error::Io`] / [`Error::BadFile`] naming the file that cannot be read or written, or
/// that has no time series or no power samples.
pub fn plot_file(
    input: &Path,
    output: &Path,
) -> Result<crate::results::timeseries::read::SeriesInfo> {
    let (series, phases, duration) = load(input)?;
    let read = read_lines(&series, duration)?;
    let (t_max, p_max) = (read.t_max, read.p_max);
    let ts = &read.info;
    let title = format!(
        "{}{}{}",
        ts.experiment_id,
        if ts.simulated {
            " (SIMULATED device)"
        } else {
            ""
        },
        if ts.partial().is_some() {
            " (partial)"
        } else {
            ""
        }
    );
    // Render into memory, then write atomically: no half-written SVG on failure.
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 560)).into_drawing_area();
        let e = |e: &dyn std::fmt::Display| bad(output, format!("cannot draw the plot: {e}"));
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..t_max, 0.0..p_max)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .bold_line_style(BLACK.mix(0.15))
            .x_desc("time (s)")
            .y_desc("power (W)")
            .draw()
            .map_err(|x| e(&x))?;
        let empty = Line::default();
        for d in &ts.devices {
            let line = read.lines.get(&d.index).unwrap_or(&empty);
            draw_device(&mut chart, line, d, (t_max, p_max), &e)?;
        }
        draw_phases(&mut chart, &phases, (t_max, p_max), &e)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))?;
    }
    crate::base::cache::write_atomic(output, svg.as_bytes())?;
    Ok(read.info)
}

/// The chart the plot draws on: time (s) against power (W).
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
/// Turns a drawing failure into lem's error.
type DrawError<'a> = dyn Fn(&dyn std::fmt::Display) -> Error + 'a;

/// One device: its throttled stretches, its power line and its idle baseline (dashed).
fn draw_device(
    chart: &mut Chart<'_, '_>,
    line: &Line,
    d: &TimeseriesDevice,
    (t_max, p_max): (f64, f64),
    e: &DrawError<'_>,
) -> Result<()> {
    let colour = COLOURS[d.index as usize % COLOURS.len()];
    for &(a, b) in &line.throttled {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, 0.0), (b, p_max)],
                RGBColor(214, 39, 40).mix(0.15).filled(),
            )))
            .map_err(|x| e(&x))?
            .label(format!("device {} throttled", d.index))
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 15, y + 5)],
                    RGBColor(214, 39, 40).mix(0.3).filled(),
                )
            });
    }
    let pts = line.points();
    chart
        .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label(format!("device {} {} power", d.index, d.name))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour.stroke_width(2)));
    if let Some(b) = d.baseline_power_w {
        let dashes = (0..)
            .map(|i| f64::from(i) * t_max / 60.0)
            .take_while(|x| *x < t_max)
            .map(move |x| {
                PathElement::new(
                    vec![(x, b), ((x + t_max / 120.0).min(t_max), b)],
                    colour.stroke_width(1),
                )
            });
        chart
            .draw_series(dashes)
            .map_err(|x| e(&x))?
            .label(format!("device {} idle baseline {b:.1} W", d.index))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 6, y)], colour.stroke_width(1))
            });
    }
    Ok(())
}

/// A line at each phase start (and at each request's end), labelled once per phase.
fn draw_phases(
    chart: &mut Chart<'_, '_>,
    phases: &[Phase],
    (t_max, p_max): (f64, f64),
    e: &DrawError<'_>,
) -> Result<()> {
    let mut names: Vec<&str> = phases.iter().map(|p| p.0.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut labelled: Vec<&str> = Vec::new();
    for (name, s, end) in phases {
        let rank = names.iter().position(|n| n == name).unwrap_or(0);
        let shade = BLACK.mix(0.25 + 0.15 * rank as f64);
        let mut marks = vec![*s];
        if name == "request" {
            marks.push(*end);
        }
        for t in marks {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(t, 0.0), (t, p_max)],
                    shade.stroke_width(1),
                )))
                .map_err(|x| e(&x))?;
        }
        if !labelled.contains(&name.as_str()) {
            labelled.push(name.as_str());
            let y = p_max * (0.97 - 0.05 * rank as f64);
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{name} →"),
                    (*s + t_max * 0.004, y),
                    ("sans-serif", 13),
                )))
                .map_err(|x| e(&x))?;
        }
    }
    Ok(())
}
