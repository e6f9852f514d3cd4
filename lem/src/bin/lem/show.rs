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
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(format!("{}: {e}", path.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::new(format!("{}: not valid JSON ({e})", path.display())))?;
    lem::output::check_schema(path, &v)?;
    if ui.json {
        return ui.json_out(&v);
    }
    if v.get("samples").is_some() {
        return show_timeseries(path, v);
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
    show_details(&v);
    let _ = ui;
    Ok(())
}

/// A time-series file: per device, the power's mean and range.
fn show_timeseries(path: &Path, v: Value) -> Result<(), Failure> {
    let ts: lem::output::Timeseries = serde_json::from_value(v)
        .map_err(|e| Failure::new(format!("{}: not a lem time series ({e})", path.display())))?;
    println!(
        "time series of {} ({} samples at {} ms){}",
        ts.experiment_id,
        ts.sample_count,
        ts.interval_ms,
        if ts.simulated { " [SIMULATED]" } else { "" }
    );
    for d in &ts.devices {
        let p: Vec<f64> = ts
            .samples
            .iter()
            .filter(|x| x.device == d.index)
            .filter_map(|x| x.power_w)
            .collect();
        let st = lem::stats::Summary::of(&p);
        println!(
            "  device {} {}: power mean {} min {} max {}",
            d.index,
            d.name,
            watts(st.map(|x| x.mean)),
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
