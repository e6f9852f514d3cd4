//! What a benchmark run prints and writes beside each result file: its table on stdout and
//! the rows of `bench_summary.csv`.

use std::path::Path;

use super::outcome::BenchOutcome;
use crate::results::stats::Interval;

fn fmt_time(s: f64) -> String {
    let a = s.abs();
    if a >= 1.0 {
        format!("{s:.3} s")
    } else if a >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else if a >= 1e-6 {
        format!("{:.3} µs", s * 1e6)
    } else {
        format!("{:.1} ns", s * 1e9)
    }
}

fn fmt_energy(j: f64) -> String {
    let a = j.abs();
    if a >= 1.0 {
        format!("{j:.3} J")
    } else if a >= 1e-3 {
        format!("{:.3} mJ", j * 1e3)
    } else {
        format!("{:.3} µJ", j * 1e6)
    }
}

fn line(label: &str, i: &Option<Interval>, f: fn(f64) -> String) -> Option<String> {
    line_pm(label, i, None, f)
}

/// A statistic's row; with `bound`, the mean carries "± bound" (the measurement's own
/// error bound, beside the spread the CI shows).
fn line_pm(
    label: &str,
    i: &Option<Interval>,
    bound: Option<f64>,
    f: fn(f64) -> String,
) -> Option<String> {
    let i = i.as_ref()?;
    let ci = match (i.ci95_low, i.ci95_high) {
        (Some(l), Some(h)) => format!("[{}, {}]", f(l), f(h)),
        _ => "[-]".into(),
    };
    let cv = i.cv.map_or("-".into(), |c| format!("{:.1} %", c * 100.0));
    let mean = match bound {
        Some(b) => format!("{} ± {}", f(i.mean), f(b)),
        None => f(i.mean),
    };
    Some(format!(
        "  {label:<22} {mean:>22}   95% CI {ci:<28} CV {cv}"
    ))
}

pub(super) fn print_table(o: &BenchOutcome, simulated: bool) {
    let s = &o.stats;
    let sim = if simulated {
        "  [SIMULATED device: not a measurement]"
    } else {
        ""
    };
    println!("{}{sim}", s.name);
    let iters = if s.iterations_per_sample_max > s.iterations_per_sample {
        format!(
            "{}-{}",
            s.iterations_per_sample, s.iterations_per_sample_max
        )
    } else {
        s.iterations_per_sample.to_string()
    };
    let over = if s.interval_over == "cycles" {
        ": intervals over the cycles' means"
    } else {
        ""
    };
    println!(
        "  {} samples x {iters} iterations ({} cycle(s){over})",
        s.samples, s.cycles
    );
    let unit = s.units.clone().unwrap_or_default();
    let rows = [
        line("time/iter", &s.time_per_iter_s, fmt_time),
        line_pm(
            "energy/iter (raw)",
            &s.energy_per_iter_j,
            s.energy_per_iter_uncertainty_j,
            fmt_energy,
        ),
        line_pm(
            "energy/iter (adjusted)",
            &s.adjusted_energy_per_iter_j,
            s.adjusted_energy_per_iter_uncertainty_j,
            fmt_energy,
        ),
        line("power", &s.power_w, |w| format!("{w:.1} W")),
        line_pm(
            &format!("energy/{unit} (raw)"),
            &s.energy_per_unit_j,
            s.energy_per_unit_uncertainty_j,
            fmt_energy,
        ),
        line(
            &format!("energy/{unit} (adj.)"),
            &s.adjusted_energy_per_unit_j,
            fmt_energy,
        ),
        line(&format!("{unit}/s"), &s.units_per_s, |x| format!("{x:.1}")),
    ];
    for r in rows.into_iter().flatten() {
        println!("{r}");
    }
    if s.energy_per_iter_j.is_none() {
        println!("  energy                 not measured (no energy source; see LEM_DEVICE)");
    } else if s.energy_samples < s.samples {
        println!(
            "  energy                 measured in {} of {} samples (figures over those)",
            s.energy_samples, s.samples
        );
    }
    for c in &s.per_cycle {
        let e = c
            .adjusted_energy_per_iter_j
            .or(c.energy_per_iter_j)
            .map_or("-".into(), fmt_energy);
        let t = c.time_per_iter_s.map_or("-".into(), fmt_time);
        println!(
            "  cycle {:<3} {:>3} samples   time/iter {t:>12}   energy/iter {e:>12}",
            c.cycle, c.samples
        );
    }
    if let Some(r) = s.achieved_relative_uncertainty {
        let target = s.max_uncertainty.map_or(String::new(), |t| {
            format!(" (max_uncertainty {:.2} %)", t * 100.0)
        });
        let of = s.relative_uncertainty_of.as_deref().unwrap_or("raw");
        println!(
            "  uncertainty            ≤ {:.2} % of each sample's {of} energy{target}",
            r * 100.0
        );
    }
    for w in &o.warnings {
        println!("  warning: {w}");
    }
}

const CSV_HEADER: &[&str] = &[
    "bench_name",
    "samples",
    "iterations_per_sample",
    "cycles",
    "units",
    "time_per_iter_s_mean",
    "time_per_iter_s_ci95_low",
    "time_per_iter_s_ci95_high",
    "energy_per_iter_j_mean",
    "energy_per_iter_j_std",
    "energy_per_iter_j_cv",
    "energy_per_iter_j_ci95_low",
    "energy_per_iter_j_ci95_high",
    "energy_per_iter_uncertainty_j",
    "relative_uncertainty_max",
    "adjusted_energy_per_iter_j_mean",
    "adjusted_energy_per_iter_j_ci95_low",
    "adjusted_energy_per_iter_j_ci95_high",
    "power_w_mean",
    "energy_per_unit_j_mean",
    "energy_per_unit_j_ci95_low",
    "energy_per_unit_j_ci95_high",
    "warmup_converged",
    "warmup_iterations",
    "warmup_final_cv",
    "warmup_target_cv",
    "throttled_samples",
    "simulated",
    "env_gpu_name",
    "command",
    "iterations_per_sample_max",
    "energy_samples",
    "interval_over",
    "relative_uncertainty_of",
];

pub(super) fn csv_row(o: &BenchOutcome, simulated: bool, gpu: &str, command: &str) -> Vec<String> {
    let s = &o.stats;
    let f = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
    let m = |i: &Option<Interval>| f(i.as_ref().map(|i| i.mean));
    let lo = |i: &Option<Interval>| f(i.as_ref().and_then(|i| i.ci95_low));
    let hi = |i: &Option<Interval>| f(i.as_ref().and_then(|i| i.ci95_high));
    let w = o.warmups.first();
    vec![
        s.name.clone(),
        s.samples.to_string(),
        s.iterations_per_sample.to_string(),
        s.cycles.to_string(),
        s.units.clone().unwrap_or_default(),
        m(&s.time_per_iter_s),
        lo(&s.time_per_iter_s),
        hi(&s.time_per_iter_s),
        m(&s.energy_per_iter_j),
        f(s.energy_per_iter_j.as_ref().and_then(|i| i.std)),
        f(s.energy_per_iter_j.as_ref().and_then(|i| i.cv)),
        lo(&s.energy_per_iter_j),
        hi(&s.energy_per_iter_j),
        f(s.energy_per_iter_uncertainty_j),
        f(s.achieved_relative_uncertainty),
        m(&s.adjusted_energy_per_iter_j),
        lo(&s.adjusted_energy_per_iter_j),
        hi(&s.adjusted_energy_per_iter_j),
        m(&s.power_w),
        m(&s.energy_per_unit_j),
        lo(&s.energy_per_unit_j),
        hi(&s.energy_per_unit_j),
        w.map_or(String::new(), |w| w.converged.to_string()),
        w.map_or(String::new(), |w| w.iterations.to_string()),
        f(w.and_then(|w| w.final_cv)),
        f(w.map(|w| w.target_cv)),
        s.per_sample
            .iter()
            .filter(|r| r.throttled)
            .count()
            .to_string(),
        simulated.to_string(),
        gpu.to_string(),
        command.to_string(),
        s.iterations_per_sample_max.to_string(),
        s.energy_samples.to_string(),
        s.interval_over.clone(),
        s.relative_uncertainty_of.clone().unwrap_or_default(),
    ]
}

/// The rows of an earlier `bench_summary.csv` to keep beside this run's: those of benchmarks
/// this run did not measure (a run of a selection updates its rows, keeps the others). A
/// file with other columns (an older lem) is replaced.
fn earlier_rows(path: &Path, rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let Ok(mut r) = csv::Reader::from_path(path) else {
        return Vec::new();
    };
    let same = r
        .headers()
        .is_ok_and(|h| h.iter().eq(CSV_HEADER.iter().copied()));
    if !same {
        return Vec::new();
    }
    let ours: std::collections::HashSet<&str> = rows
        .iter()
        .filter_map(|r| r.first().map(String::as_str))
        .collect();
    r.records()
        .filter_map(std::result::Result::ok)
        .map(|rec| rec.iter().map(str::to_string).collect::<Vec<_>>())
        .filter(|rec| rec.first().is_some_and(|n| !ours.contains(n.as_str())))
        .collect()
}

/// Write `bench_summary.csv` (this run's rows, and the earlier rows of benchmarks it did not
/// run, sorted by name); false (said on stderr) when it could not be written.
pub(super) fn write_summary(out_dir: &Path, rows: &[Vec<String>]) -> bool {
    let path = out_dir.join("bench_summary.csv");
    let mut all = earlier_rows(&path, rows);
    all.extend(rows.iter().cloned());
    all.sort_by(|a, b| a.first().cmp(&b.first()));
    let mut w = csv::Writer::from_writer(Vec::new());
    let ok = w.write_record(CSV_HEADER).is_ok() && all.iter().all(|r| w.write_record(r).is_ok());
    match w.into_inner() {
        Ok(bytes) if ok => match crate::base::cache::write_atomic(&path, &bytes) {
            Ok(()) => {
                println!("summary {}", path.display());
                true
            }
            Err(e) => {
                eprintln!("lem: error: {e}");
                false
            }
        },
        _ => {
            eprintln!(
                "lem: error: {}: could not format the CSV summary",
                path.display()
            );
            false
        }
    }
}
