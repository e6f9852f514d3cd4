//! `lem show`: a readable summary of any result, aggregate or time-series file.

use serde_json::Value;
use std::path::Path;

use crate::ui::{joules, joules_pm, watts, Ui};
use crate::Failure;

fn f(v: &Value, p: &str) -> Option<f64> {
    v.pointer(p).and_then(Value::as_f64)
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("-")
}

pub fn show(ui: &Ui, path: &Path) -> Result<(), Failure> {
    // a time series is read one sample at a time, whatever its length
    let is_series = lem::timeseries::read::stream_header(path)?.is_some()
        || path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with("_timeseries.json"));
    if is_series {
        return show_timeseries(ui, path);
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::new(format!("{}: not valid JSON ({e})", path.display())))?;
    lem::output::check_schema(path, &v)?;
    if ui.json {
        return ui.json_out(&v);
    }
    if v.get("samples").is_some() {
        return show_timeseries(ui, path);
    }
    let aggregated = v.get("aggregated").and_then(Value::as_bool) == Some(true);
    if !aggregated {
        // validate as a result so a corrupted file is an error, not a half summary
        lem::output::read_result(path)?;
    } else {
        lem::aggregate::read_aggregate(path)?;
    }
    let sim = if v.get("simulated").and_then(Value::as_bool) == Some(true) {
        "  [SIMULATED device: not a measurement]"
    } else {
        ""
    };
    if aggregated {
        println!(
            "aggregate {} ({} processes, {} cycles){sim}",
            s(&v, "/experiment_id"),
            v["num_processes"],
            v.pointer("/cycles/n").cloned().unwrap_or(Value::Null)
        );
    } else {
        println!(
            "{} / process {}: `{}`{sim}",
            s(&v, "/experiment_id"),
            v["process_index"],
            s(&v, "/name")
        );
    }
    println!("  started     {}", s(&v, "/started_at"));
    println!("  duration    {:.3} s", f(&v, "/duration_s").unwrap_or(0.0));
    println!(
        "  energy      raw {} | adjusted {} ({})",
        joules_pm(f(&v, "/energy/raw_j"), f(&v, "/energy/uncertainty_j")),
        joules_pm(
            f(&v, "/energy/adjusted_j"),
            f(&v, "/energy/adjusted_uncertainty_j")
        ),
        s(&v, "/energy/method")
    );
    println!(
        "  baseline    {} ({})",
        watts(f(&v, "/energy/baseline_power_w")),
        s(&v, "/energy/baseline_method")
    );
    if v.pointer("/energy/shared_group").is_some() {
        println!(
            "  shared      {} of group `{}` (weight {})",
            joules_pm(
                f(&v, "/energy/shared_j"),
                f(&v, "/energy/shared_uncertainty_j")
            ),
            s(&v, "/energy/shared_group"),
            f(&v, "/energy/shared_weight").unwrap_or(0.0)
        );
    }
    show_groups(&v);
    show_details(&v);
    let _ = ui;
    Ok(())
}

/// Each group of shared windows: the union's energy beside the shares' sum, the gaps, and
/// the energy per window and per weight unit.
fn show_groups(v: &Value) {
    let Some(groups) = v.get("groups").and_then(Value::as_array) else {
        return;
    };
    for g in groups {
        println!(
            "  group       `{}`: {} windows | union {} | shares sum {} | gaps {:.3} s ({})",
            s(g, "/name"),
            g.get("windows").cloned().unwrap_or(Value::Null),
            joules_pm(f(g, "/union_j"), f(g, "/union_uncertainty_j")),
            joules(f(g, "/shares_sum_j")),
            f(g, "/gaps_s").unwrap_or(0.0),
            joules(f(g, "/gaps_j"))
        );
        println!(
            "              per window p50 {} p95 {} p99 {} | per weight unit {} ({} split)",
            joules(f(g, "/per_window_j/p50")),
            joules(f(g, "/per_window_j/p95")),
            joules(f(g, "/per_window_j/p99")),
            f(g, "/per_weight_j").map_or("-".into(), |x| format!("{x:.4} J")),
            s(g, "/split")
        );
    }
}

/// Running power statistics of one device.
#[derive(Default)]
struct Power {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// A time-series file or stream: per device, the power's mean and range; a stream cut short
/// says it is partial.
fn show_timeseries(ui: &Ui, path: &Path) -> Result<(), Failure> {
    let mut power: std::collections::BTreeMap<u32, Power> = std::collections::BTreeMap::new();
    let mut t_last: Option<f64> = None;
    let ts = lem::timeseries::read::read_series(path, |x| {
        t_last = Some(t_last.map_or(x.t_s, |t: f64| t.max(x.t_s)));
        if let Some(p) = x.power_w {
            let e = power.entry(x.device).or_insert(Power {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                ..Power::default()
            });
            e.n += 1;
            e.sum += p;
            e.min = e.min.min(p);
            e.max = e.max.max(p);
        }
    })?;
    if ui.json {
        return ui.json_out(&serde_json::json!({
            "experiment_id": ts.experiment_id,
            "interval_ms": ts.interval_ms,
            "sample_count": ts.sample_count,
            "simulated": ts.simulated,
            "stream": ts.stream,
            "complete": ts.partial().is_none(),
            "last_t_s": t_last,
        }));
    }
    println!(
        "time series of {} ({} samples at {} ms){}",
        ts.experiment_id,
        ts.sample_count,
        ts.interval_ms,
        if ts.simulated { " [SIMULATED]" } else { "" }
    );
    if let Some(why) = ts.partial() {
        println!(
            "  PARTIAL     {why}; the last sample is at {:.3} s",
            t_last.unwrap_or(0.0)
        );
    }
    if let Some(end) = ts.end.filter(|e| e.dropped_rounds > 0) {
        println!(
            "  warning     {} sampling rounds were dropped (the writer fell behind)",
            end.dropped_rounds
        );
    }
    for d in &ts.devices {
        let st = power.get(&d.index).filter(|p| p.n > 0);
        println!(
            "  device {} {}: power mean {} min {} max {}",
            d.index,
            d.name,
            watts(st.map(|x| x.sum / x.n as f64)),
            watts(st.map(|x| x.min)),
            watts(st.map(|x| x.max))
        );
    }
    Ok(())
}

/// The parts below the totals: devices, throttling, tokens, cycles, environment, command
/// and warnings.
fn show_details(v: &Value) {
    if let Some(devs) = v.get("devices").and_then(Value::as_array) {
        for d in devs {
            println!(
                "  device      {} {}: raw {} | adjusted {} | mean {} | peak {} | max {} C",
                d.get("index")
                    .or(d.get("host"))
                    .cloned()
                    .unwrap_or(Value::Null),
                s(d, "/name"),
                joules_pm(
                    f(d, "/energy/raw_j").or(f(d, "/raw_j")),
                    f(d, "/energy/uncertainty_j")
                ),
                joules_pm(
                    f(d, "/energy/adjusted_j").or(f(d, "/adjusted_j")),
                    f(d, "/energy/adjusted_uncertainty_j")
                ),
                watts(f(d, "/power/mean_w")),
                watts(f(d, "/power/peak_w")),
                f(d, "/temperature/max_c").map_or("-".into(), |t| format!("{t:.0}"))
            );
        }
    }
    if v.pointer("/thermal/throttle_detected")
        .and_then(Value::as_bool)
        == Some(true)
    {
        println!(
            "  THROTTLED   {:.2} s (thermal {:.2} s, power {:.2} s)",
            f(v, "/thermal/throttle_duration_s").unwrap_or(0.0),
            f(v, "/thermal/thermal_duration_s").unwrap_or(0.0),
            f(v, "/thermal/power_duration_s").unwrap_or(0.0)
        );
    }
    if let Some(m) = v.get("metrics") {
        println!(
            "  tokens      {} out | {} tok/s | {} J/token (raw {})",
            v.pointer("/workload/tokens_out")
                .cloned()
                .unwrap_or(Value::Null),
            f(m, "/tokens_per_s").map_or("-".into(), |x| format!("{x:.1}")),
            f(m, "/energy_per_output_token_j").map_or("-".into(), |x| format!("{x:.4}")),
            f(m, "/energy_per_output_token_raw_j").map_or("-".into(), |x| format!("{x:.4}"))
        );
    }
    if let Some(i) = v
        .pointer("/cycles/energy_adjusted_j")
        .filter(|x| !x.is_null())
    {
        println!(
            "  cycles      adjusted mean {} ± std {} (95% CI {} .. {})",
            joules(f(i, "/mean")),
            joules(f(i, "/std")),
            joules(f(i, "/ci95_low")),
            joules(f(i, "/ci95_high"))
        );
    }
    println!("  environment {}", s(v, "/environment/summary"));
    if let Some(c) = v.get("command") {
        let argv: Vec<&str> = c["argv"]
            .as_array()
            .map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_str).collect());
        let status = match (
            c.get("exit_code").and_then(Value::as_i64),
            c.get("signal").and_then(Value::as_i64),
        ) {
            (Some(code), _) => format!(" (exit {code})"),
            (None, Some(sig)) => format!(" (killed by signal {sig})"),
            _ => String::new(),
        };
        println!("  command     {}{status}", argv.join(" "));
    }
    if let Some(ws) = v.get("warnings").and_then(Value::as_array) {
        for w in ws {
            println!("  warning     {}", w.as_str().unwrap_or(""));
        }
    }
}
