//! Power plots: power over time per device, throttle intervals shaded, phase boundaries
//! marked, the idle baseline as a dashed line. SVG (plotters), so no system libraries are
//! needed.

use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use plotters::coord::types::RangedCoordf64;

use crate::results::output::{Timeseries, TimeseriesDevice};

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

/// The time series, the phases and the window's duration of a plot input.
fn load(path: &Path) -> Result<(Timeseries, Vec<Phase>, Option<f64>)> {
    let v = read_json(path)?;
    if v.get("samples").is_some() {
        let ts: Timeseries = serde_json::from_value(v)
            .map_err(|e| bad(path, format!("not a lem time series ({e})")))?;
        return Ok((ts, Vec::new(), None));
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
    let tv = read_json(&ts_path)?;
    let ts: Timeseries = serde_json::from_value(tv)
        .map_err(|e| bad(&ts_path, format!("not a lem time series ({e})")))?;
    let duration = v.get("duration_s").and_then(Value::as_f64);
    Ok((ts, phases(&v), duration))
}

/// Throttled intervals of one device, each sample held until the next.
fn throttled(ts: &Timeseries, device: u32, end: f64) -> Vec<(f64, f64)> {
    let pts: Vec<(f64, bool)> = ts
        .samples
        .iter()
        .filter(|s| s.device == device)
        .map(|s| (s.t_s, s.throttle_reasons.is_throttled()))
        .collect();
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, (t, th)) in pts.iter().enumerate() {
        if !th {
            continue;
        }
        let e = pts.get(i + 1).map_or(end, |n| n.0);
        match out.last_mut() {
            Some(last) if (last.1 - t).abs() < 1e-9 => last.1 = e,
            _ => out.push((*t, e)),
        }
    }
    out
}

/// Plot a result file (with its time series beside it) or a time-series file to an SVG,
/// written atomically.
///
/// # Errors
/// [`Error::Io`] / [`Error::BadFile`] naming the file that cannot be read or written, or
/// that has no time series or no power samples.
pub fn plot_file(input: &Path, output: &Path) -> Result<()> {
    let (ts, phases, duration) = load(input)?;
    if ts.samples.iter().all(|s| s.power_w.is_none()) {
        return Err(bad(input, "no power samples to plot"));
    }
    let t_max = ts
        .samples
        .iter()
        .map(|s| s.t_s)
        .fold(duration.unwrap_or(0.0), f64::max)
        .max(1e-3);
    let p_max = ts
        .samples
        .iter()
        .filter_map(|s| s.power_w)
        .chain(ts.devices.iter().filter_map(|d| d.baseline_power_w))
        .fold(0.0, f64::max)
        * 1.15
        + 1.0;
    let title = format!(
        "{}{}",
        ts.experiment_id,
        if ts.simulated {
            " (SIMULATED device)"
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
        for d in &ts.devices {
            draw_device(&mut chart, &ts, d, (t_max, p_max), &e)?;
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
    crate::base::cache::write_atomic(output, svg.as_bytes())
}

/// The chart the plot draws on: time (s) against power (W).
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
/// Turns a drawing failure into lem's error.
type DrawError<'a> = dyn Fn(&dyn std::fmt::Display) -> Error + 'a;

/// One device: its throttled stretches, its power line and its idle baseline (dashed).
fn draw_device(
    chart: &mut Chart<'_, '_>,
    ts: &Timeseries,
    d: &TimeseriesDevice,
    (t_max, p_max): (f64, f64),
    e: &DrawError<'_>,
) -> Result<()> {
    let colour = COLOURS[d.index as usize % COLOURS.len()];
    for (a, b) in throttled(ts, d.index, t_max) {
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
    let pts: Vec<(f64, f64)> = ts
        .samples
        .iter()
        .filter(|s| s.device == d.index)
        .filter_map(|s| s.power_w.map(|p| (s.t_s, p)))
        .collect();
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
