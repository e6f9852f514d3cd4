//! The small subcommands: baseline, env, aggregate, export.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use lem::baseline::{self, BaselineMode};
use lem::{DeviceSpec, MeterBuilder, MonotonicClock};

use crate::ui::{age, watts, Ui};
use crate::Failure;

pub fn baseline_measure(
    ui: &Ui,
    device: Option<&str>,
    duration: Option<&str>,
    force: bool,
) -> Result<(), Failure> {
    let mut b = MeterBuilder::from_env()?;
    if let Some(d) = device {
        b = b.device(DeviceSpec::parse_for("--device", d)?);
    }
    if let Some(d) = duration {
        b = b.baseline_duration(lem::parse_seconds("--duration", d)?);
    }
    b = b.baseline_mode(if force {
        BaselineMode::Force
    } else {
        BaselineMode::Auto
    });
    let meter = ui.with_baseline_progress(b).build()?;
    for n in meter.notices() {
        ui.warn(n);
    }
    if meter.devices().is_empty() {
        return Err(Failure::new(
            "no device to measure a baseline for (see the notice above; try --device)",
        ));
    }
    if ui.json {
        return ui.json_out(&meter.baselines());
    }
    for (d, b) in meter.devices().iter().zip(meter.baselines()) {
        let i = d.info();
        let sim = if i.simulated { " [simulated]" } else { "" };
        ui.out(format!(
            "device {} {} ({}){sim}: {} idle, {}{}{}",
            i.index,
            i.name,
            i.uuid,
            watts(b.power_w),
            b.method,
            b.cache_age_s
                .map_or(String::new(), |a| format!(", measured {} ago", age(a))),
            if b.busy {
                ", FLAGGED: device was not idle"
            } else {
                ""
            }
        ));
    }
    Ok(())
}

fn cache_dir() -> PathBuf {
    baseline::default_cache_dir()
}

pub fn baseline_show(ui: &Ui, ttl: &str) -> Result<(), Failure> {
    let ttl = lem::parse_seconds("--ttl", ttl)?.as_secs_f64();
    let dir = cache_dir();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let entries = baseline::list_cache(&dir);
    if ui.json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(|(p, e)| match e {
                Ok(e) => serde_json::json!({
                    "file": p, "name": e.device_name, "uuid": e.uuid, "power_w": e.power_w,
                    "timestamp": e.timestamp, "age_s": now - e.timestamp_unix_s,
                    "expires_in_s": ttl - (now - e.timestamp_unix_s), "simulated": e.simulated,
                }),
                Err(err) => serde_json::json!({"file": p, "error": err}),
            })
            .collect();
        return ui.json_out(&v);
    }
    if entries.is_empty() {
        ui.out(format!("no cached baselines in {}", dir.display()));
        return Ok(());
    }
    ui.out(format!("cached baselines in {}:", dir.display()));
    for (p, e) in entries {
        match e {
            Ok(e) => {
                let a = now - e.timestamp_unix_s;
                let left = ttl - a;
                let status = if left > 0.0 {
                    format!("expires in {}", age(left))
                } else {
                    "expired".into()
                };
                let sim = if e.simulated { " [simulated]" } else { "" };
                ui.out(format!(
                    "  {}{sim} ({}): {:.1} W, measured {} ago, {status}",
                    e.device_name,
                    e.uuid,
                    e.power_w,
                    age(a.max(0.0))
                ));
            }
            Err(err) => ui.out(format!("  {}: unreadable ({err})", p.display())),
        }
    }
    Ok(())
}

pub fn baseline_clear(ui: &Ui) -> Result<(), Failure> {
    let dir = cache_dir();
    let n = baseline::clear_cache(&dir)?;
    ui.out(format!(
        "removed {n} cached baseline(s) from {}",
        dir.display()
    ));
    Ok(())
}

pub fn env(ui: &Ui, device: Option<&str>) -> Result<(), Failure> {
    let spec = match device {
        Some(d) => DeviceSpec::parse_for("--device", d)?,
        None => DeviceSpec::from_env()?,
    };
    let opened = lem::device::open_devices(&spec, Arc::new(MonotonicClock::new()))?;
    let env = lem::collect_environment(&opened.devices, None);
    if ui.json {
        return ui.json_out(&env);
    }
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("{}", env.summary);
    println!("host        {}", o(&env.hostname));
    println!("os          {} (kernel {})", o(&env.os), o(&env.kernel));
    println!(
        "cpu         {} ({} logical, governor {})",
        o(&env.cpu_model),
        env.cpu_count.map_or("-".into(), |n| n.to_string()),
        o(&env.cpu_governor)
    );
    println!(
        "container   {}",
        if env.in_container { "yes" } else { "no" }
    );
    println!(
        "driver      {}  CUDA {}",
        o(&env.driver_version),
        o(&env.cuda_version)
    );
    if let Some(c) = &env.cuda_visible_devices {
        println!("CUDA_VISIBLE_DEVICES={c}");
    }
    for g in &env.gpus {
        println!(
            "device {}    {}{} | {} | {} MiB | cc {} | limit {} | {}{}",
            g.index,
            g.name,
            if g.simulated { " [simulated]" } else { "" },
            g.uuid,
            g.memory_total_mb.map_or("-".into(), |m| format!("{m:.0}")),
            g.compute_capability.clone().unwrap_or_else(|| "-".into()),
            watts(g.power_limit_w),
            g.temperature_c.map_or("-".into(), |t| format!("{t:.0} C")),
            if g.mig { " | MIG" } else { "" }
        );
    }
    for g in &env.gpus {
        if let Some(p) = &g.probe {
            println!(
                "probe {}     energy counter every {} ms (p95 {}); power {}; probed {}",
                g.index,
                p.counter_update_ms
                    .map_or("-".into(), |v| format!("{v:.1}")),
                p.counter_update_p95_ms
                    .map_or("-".into(), |v| format!("{v:.1}")),
                p.power_update_ms
                    .map_or("constant while probed".into(), |v| format!(
                        "every {v:.1} ms"
                    )),
                p.timestamp
            );
        }
    }
    for n in &opened.notices {
        ui.warn(n);
    }
    Ok(())
}

fn describe_probe(r: &lem::probe::ProbeResult) -> Vec<String> {
    let mut lines = vec![format!(
        "{}{} (driver {}), probed {} for {:.1} s per phase",
        r.name,
        if r.simulated { " [simulated]" } else { "" },
        r.driver_version.as_deref().unwrap_or("-"),
        r.timestamp,
        r.duration_s
    )];
    lines.push(match r.counter_update_ms {
        Some(s) => format!(
            "  energy counter: changes every {:.1} ms (p95 {:.1} ms), smallest step {} mJ",
            s.median,
            s.p95,
            r.counter_step_mj.map_or("-".into(), |v| format!("{v:.1}"))
        ),
        None if r.counter_changes > 0 => format!(
            "  energy counter: only {} change(s) seen: probe longer",
            r.counter_changes
        ),
        None => "  energy counter: none, or it did not move".into(),
    });
    lines.push(match (r.power_update_ms, r.power_constant) {
        (Some(s), _) => format!(
            "  power reading: changes every {:.1} ms (p95 {:.1} ms)",
            s.median, s.p95
        ),
        (None, true) => "  power reading: constant while probed".into(),
        (None, false) => "  power reading: changed once".into(),
    });
    for c in &r.calls {
        lines.push(format!(
            "  {:<45} {:>8.1} µs median {:>8.1} µs p95{}",
            c.call,
            c.latency_us.median,
            c.latency_us.p95,
            if c.failures > 0 {
                format!(" ({} failed)", c.failures)
            } else {
                String::new()
            }
        ));
    }
    lines
}

pub fn probe(ui: &Ui, device: Option<&str>, duration: Option<&str>) -> Result<(), Failure> {
    let spec = match device {
        Some(d) => DeviceSpec::parse_for("--device", d)?,
        None => DeviceSpec::from_env()?,
    };
    let duration = match duration {
        Some(d) => {
            lem::probe::validate_duration("--duration", lem::parse_seconds("--duration", d)?)?
        }
        None => std::time::Duration::from_secs(5),
    };
    let clock: Arc<dyn lem::Clock> = Arc::new(MonotonicClock::new());
    let opened = lem::device::open_devices(&spec, clock.clone())?;
    for n in &opened.notices {
        ui.warn(n);
    }
    if opened.devices.is_empty() {
        return Err(Failure::new(
            "no device to probe (see the notice above; try --device)",
        ));
    }
    let dir = baseline::default_cache_dir();
    let results = lem::probe::probe_all(&opened.devices, &clock, duration);
    for r in &results {
        lem::probe::save(&dir, r)?;
    }
    if ui.json {
        return ui.json_out(&results);
    }
    for (i, r) in results.iter().enumerate() {
        for (k, line) in describe_probe(r).into_iter().enumerate() {
            if k == 0 {
                ui.out(format!("device {i}: {line}"));
            } else {
                ui.out(line);
            }
        }
    }
    ui.out(format!("cached in {}", dir.display()));
    Ok(())
}

pub fn probe_show(ui: &Ui) -> Result<(), Failure> {
    let dir = baseline::default_cache_dir();
    let list = lem::probe::list(&dir);
    if ui.json {
        let ok: Vec<&lem::probe::ProbeResult> =
            list.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        return ui.json_out(&ok);
    }
    if list.is_empty() {
        ui.out(format!("no cached probe in {}", dir.display()));
    }
    for (path, r) in &list {
        match r {
            Ok(r) => {
                for line in describe_probe(r) {
                    ui.out(line);
                }
            }
            Err(e) => ui.warn(format!("{}: unreadable ({e})", path.display())),
        }
    }
    Ok(())
}

/// `lem aggregate`'s options from its flags.
pub fn aggregate_opts(
    strict: bool,
    include_failed: bool,
    clock_skew_s: &str,
) -> Result<lem::aggregate::AggregateOptions, Failure> {
    let skew = clock_skew_s
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| {
            Failure::new(format!(
                "invalid --clock-skew-s `{clock_skew_s}`: seconds, 0 or more"
            ))
        })?;
    Ok(lem::aggregate::AggregateOptions {
        strict,
        include_failed,
        clock_skew_s: skew,
    })
}

pub fn aggregate(
    ui: &Ui,
    dir: &Path,
    opts: &lem::aggregate::AggregateOptions,
    output: Option<&Path>,
) -> Result<(), Failure> {
    let agg = lem::aggregate::aggregate_dir_with(dir, opts)?;
    let root = output.map_or_else(|| lem::aggregate::results_root_of(dir), Path::to_path_buf);
    let path = lem::aggregate::write_aggregate(&root, &agg)?;
    if ui.json {
        return ui.json_out(&agg);
    }
    ui.out(format!(
        "{}: {} process(es), {} cycle(s), {} device(s){}",
        agg.experiment_id,
        agg.num_processes,
        agg.cycles.n,
        agg.devices.len(),
        if agg.simulated { " [simulated]" } else { "" }
    ));
    ui.out(format!(
        "  energy    raw {} | adjusted {} over {:.2} s",
        crate::ui::joules_pm(agg.energy.raw_j, agg.energy.uncertainty_j),
        crate::ui::joules_pm(agg.energy.adjusted_j, agg.energy.adjusted_uncertainty_j),
        agg.duration_s
    ));
    if let Some(i) = &agg.cycles.energy_adjusted_j {
        if let (Some(l), Some(h)) = (i.ci95_low, i.ci95_high) {
            ui.out(format!(
                "  cycles    adjusted mean {:.2} J, 95% CI [{l:.2}, {h:.2}] J",
                i.mean
            ));
        }
    }
    for w in &agg.warnings {
        ui.warn(w);
    }
    if agg.num_processes > 1 {
        ui.out(format!(
            "  overlap   checked allowing {} s of clock skew between hosts",
            opts.clock_skew_s
        ));
    }
    ui.out(format!("  written   {}", path.display()));
    Ok(())
}

pub fn export(ui: &Ui, csv: &Path, paths: &[PathBuf], per_process: bool) -> Result<(), Failure> {
    let n = lem::export::export_csv(csv, paths, per_process)?;
    ui.say(format!("wrote {n} row(s) to {}", csv.display()));
    Ok(())
}
