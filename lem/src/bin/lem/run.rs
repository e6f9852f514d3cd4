//! `lem run`: measure a command from spawn to exit, once or over cycles.

use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lem::output::process_result_path;
use lem::MeterBuilder;

mod aggregate;

use crate::signals;
use crate::ui::{age, joules_pm, watts, Ui};
use crate::{Failure, EXIT_LEM, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use aggregate::{aggregate_as_process_0, aggregate_wait};

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    meter: lem::args::MeterArgs,
    #[command(flatten)]
    out: lem::args::OutputArgs,
    /// Write the power/thermal time series beside the result.
    #[arg(long)]
    timeseries: bool,
    /// Run the command N times, one result per cycle, with statistics in an aggregate.
    #[arg(long, default_value_t = 1, value_name = "N")]
    cycles: u32,
    /// Idle gap between cycles, s.
    #[arg(long, default_value = "0", value_name = "S")]
    cycle_gap_s: String,
    /// Seed of the random start delay before each cycle (with --cycles above 1; default:
    /// from the experiment id). Each cycle starts within one sensor period of a random
    /// phase, so that a command locked to the sensor's sampling does not alias the same way
    /// every time.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Before each cycle, wait until every device is within C °C of its idle temperature
    /// (measured with the baseline): thermally stable cycles. Recorded as `cooldown`.
    #[arg(long, value_name = "C")]
    cooldown: Option<f64>,
    /// Longest cooldown before a cycle, s (then the cycle starts warm, with a warning).
    #[arg(long, default_value = "300", value_name = "S")]
    cooldown_timeout_s: String,
    /// Replace this process's earlier results under OUTPUT/raw/<experiment_id>/ (removed
    /// before the run); without it, a run whose process already has files there is refused.
    #[arg(long)]
    overwrite: bool,
    /// With --cycles above 1, how long process 0 waits for the other processes' results
    /// (of the world size) before it writes the aggregate, s.
    #[arg(long, default_value = "60", value_name = "S")]
    aggregate_wait_s: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// Make sure results can be written before running anything.
fn check_writable(dir: &Path) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::new(format!(
            "--output: cannot write results to {}: {e}",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(format!(".lem-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn builder(ui: &Ui, a: &RunArgs) -> Result<MeterBuilder, Failure> {
    Ok(ui.with_baseline_progress(a.meter.builder()?))
}

struct Outcome {
    exit_code: Option<i32>,
    signal: Option<i32>,
}

impl Outcome {
    /// The code `lem run` exits with: the command's, or 128 + signal.
    fn code(&self) -> u8 {
        match (self.exit_code, self.signal) {
            (Some(c), _) => u8::try_from(c.rem_euclid(256)).unwrap_or(EXIT_LEM),
            (None, Some(s)) => u8::try_from((128 + s).min(255)).unwrap_or(EXIT_LEM),
            (None, None) => EXIT_LEM,
        }
    }
}

/// Spawn `argv` and wait for it; `on_spawn` hears the child's pid as soon as it runs.
fn spawn_and_wait(argv: &[String], on_spawn: impl FnOnce(u32)) -> Result<Outcome, Failure> {
    use std::os::unix::process::ExitStatusExt;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    // lem spawns and waits on this same thread, which lives until the command has ended
    signals::end_with_lem(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        let (code, what) = match e.kind() {
            std::io::ErrorKind::NotFound => (EXIT_NOT_FOUND, "not found".to_string()),
            std::io::ErrorKind::PermissionDenied => (
                EXIT_NOT_EXECUTABLE,
                "not executable (permission denied)".to_string(),
            ),
            _ => (EXIT_NOT_EXECUTABLE, format!("cannot be started: {e}")),
        };
        Failure {
            code,
            message: format!("command `{}` {what}", argv[0]),
        }
    })?;
    signals::child_started(child.id());
    on_spawn(child.id());
    let status = child.wait();
    signals::child_ended();
    let status = status.map_err(|e| Failure::new(format!("waiting for `{}`: {e}", argv[0])))?;
    Ok(Outcome {
        exit_code: status.code(),
        signal: status.signal(),
    })
}

pub fn run(ui: &Ui, a: RunArgs) -> Result<u8, Failure> {
    if a.command.is_empty() {
        return Err(Failure::new(
            "no command given after `--` (usage: lem run [OPTIONS] -- CMD [ARGS...])",
        ));
    }
    if a.cycles == 0 {
        return Err(Failure::new("invalid --cycles: must be at least 1"));
    }
    let gap = if a.cycle_gap_s.trim() == "0" {
        Duration::ZERO
    } else {
        lem::parse_seconds("--cycle-gap-s", &a.cycle_gap_s)?
    };
    aggregate_wait(&a)?;
    let output = a.out.output_dir();
    let experiment_id = a.out.experiment_id("")?;
    let (process_index, world_size) = a.out.rank_and_world()?;
    let exp_dir = output.join("raw").join(&experiment_id);
    let created = !exp_dir.exists();
    check_writable(&exp_dir)?;
    claim_results(&exp_dir, process_index, a.overwrite)?;
    let result = measure_cycles(
        ui,
        &a,
        &output,
        &experiment_id,
        (process_index, world_size),
        &exp_dir,
        gap,
    );
    if created && result.is_err() {
        // nothing was written: leave no empty experiment directory behind
        let _ = std::fs::remove_dir(&exp_dir);
    }
    result
}

/// Refuse to mix with this process's earlier results in `exp_dir`, or remove them with
/// `overwrite`.
fn claim_results(exp_dir: &Path, process_index: u32, overwrite: bool) -> Result<(), Failure> {
    let earlier = lem::aggregate::process_files(exp_dir, process_index)?;
    let Some(first) = earlier.first() else {
        return Ok(());
    };
    if !overwrite {
        return Err(Failure::new(format!(
            "{}: process {process_index} already has {} result file(s) there ({}...): use another --experiment-id, or --overwrite to replace them",
            exp_dir.display(),
            earlier.len(),
            first.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned())
        )));
    }
    for p in &earlier {
        std::fs::remove_file(p).map_err(|e| {
            Failure::new(format!("--overwrite: cannot remove {}: {e}", p.display()))
        })?;
    }
    Ok(())
}

fn measure_cycles(
    ui: &Ui,
    a: &RunArgs,
    output: &Path,
    experiment_id: &str,
    (process_index, world_size): (u32, Option<u32>),
    exp_dir: &Path,
    gap: Duration,
) -> Result<u8, Failure> {
    let meter = builder(ui, a)?.build()?;
    for n in meter.notices() {
        ui.warn(n);
    }
    signals::install()?;
    let at = Place {
        output,
        exp_dir,
        experiment_id,
        process_index,
        world_size,
        run_id: lem::aggregate::new_run_id(),
    };
    let mut last_code = 0;
    let mut written = Vec::new();
    // a cycle after the first that could not be measured (its command gone, say): the
    // cycles before it are aggregated all the same, then the failure is reported
    let mut late_failure = None;
    for cycle in 0..a.cycles {
        if cycle > 0 {
            idle_gap(ui, gap);
        }
        if interrupted_before(ui, cycle, a.cycles) {
            break;
        }
        let cooldown = cool_before(ui, &meter, a, cycle)?;
        let delay = start_delay(&meter, a, experiment_id, cycle);
        if a.timeseries {
            // streamed as sampled, so that a killed run still leaves its samples
            let stream = lem::output::timeseries_stream_path(&result_path(a, &at, cycle));
            meter.record_timeseries(&stream, experiment_id)?;
        }
        let (report, outcome) = match measure_command(&meter, &a.command, delay) {
            Ok(m) => m,
            Err(f) if cycle > 0 => {
                late_failure = Some(Failure {
                    code: f.code,
                    message: format!("cycle {}/{}: {}", cycle + 1, a.cycles, f.message),
                });
                break;
            }
            Err(f) => return Err(f),
        };
        let interrupted = signals::received().is_some();
        let code = outcome.code();
        let m = Measured {
            cycle,
            delay_s: delay,
            cooldown,
            report,
            outcome,
            interrupted,
        };
        let path = write_result(ui, &meter, a, &at, m)?;
        written.push(path);
        last_code = code;
        if interrupted || last_code != 0 {
            stopping(ui, interrupted, cycle, a.cycles);
            break;
        }
    }
    if a.cycles > 1 && !written.is_empty() {
        let last_cycle = u32::try_from(written.len() - 1).unwrap_or(0);
        let aggregated = aggregate_as_process_0(
            ui,
            a,
            output,
            exp_dir,
            (process_index, world_size),
            last_cycle,
        );
        if let (Some(_), Err(e)) = (&late_failure, &aggregated) {
            ui.warn(format!(
                "the cycles before were not aggregated: {}",
                e.message
            ));
        } else {
            aggregated?;
        }
    }
    if let Some(f) = late_failure {
        return Err(f);
    }
    // an interrupted run says so whatever the command's own code, even between cycles
    Ok(signals::received().map_or(last_code, interrupted_code))
}

/// With `--cooldown`, wait before cycle `cycle` until the devices are near their idle
/// temperature; what the wait did (`None` without `--cooldown`, or nothing to wait for,
/// said once).
fn cool_before(
    ui: &Ui,
    meter: &lem::Meter,
    a: &RunArgs,
    cycle: u32,
) -> Result<Option<lem::cooldown::Cooldown>, Failure> {
    let Some(margin) = a.cooldown else {
        return Ok(None);
    };
    if !(margin.is_finite() && margin >= 0.0) {
        return Err(Failure::new(format!(
            "--cooldown: {margin} is not a number of degrees Celsius (>= 0)"
        )));
    }
    let timeout = lem::parse_seconds("--cooldown-timeout-s", &a.cooldown_timeout_s)?;
    let Some(c) = lem::cooldown::cool_down(meter, margin, timeout) else {
        if cycle == 0 {
            ui.warn("--cooldown: no device has an idle temperature from a baseline and a temperature reading (a baseline cached by an older lem has none: add --force-baseline); cycles start without waiting");
        }
        return Ok(None);
    };
    if !c.reached {
        ui.warn(format!(
            "cycle {}: cooldown timed out after {:.0} s, {:.1} °C above idle; the cycle starts warm",
            cycle + 1,
            c.waited_s,
            c.excess_c.unwrap_or(f64::NAN)
        ));
    }
    Ok(Some(c))
}

/// Where a run's results go.
struct Place<'a> {
    output: &'a Path,
    exp_dir: &'a Path,
    experiment_id: &'a str,
    process_index: u32,
    /// The run's world size, where known.
    world_size: Option<u32>,
    /// This run's identity (its files are aggregated, an earlier run's are not).
    run_id: String,
}

/// One cycle, measured.
struct Measured {
    cycle: u32,
    delay_s: f64,
    cooldown: Option<lem::cooldown::Cooldown>,
    report: lem::EnergyReport,
    outcome: Outcome,
    interrupted: bool,
}

/// Write cycle `m`'s result (and its time series) and summarise it; returns the file.
fn write_result(
    ui: &Ui,
    meter: &lem::Meter,
    a: &RunArgs,
    at: &Place,
    m: Measured,
) -> Result<PathBuf, Failure> {
    let mut rf = meter.result_file(m.report, at.experiment_id, at.process_index);
    rf.extra.insert(
        "command".into(),
        serde_json::json!({
            "argv": a.command,
            "exit_code": m.outcome.exit_code,
            "signal": m.outcome.signal,
        }),
    );
    rf.extra
        .insert("interrupted".into(), serde_json::json!(m.interrupted));
    if let Some(c) = &m.cooldown {
        rf.extra.insert(
            "cooldown".into(),
            serde_json::to_value(c).unwrap_or(serde_json::Value::Null),
        );
    }
    if let Some(w) = at.world_size {
        rf.extra.insert("world_size".into(), serde_json::json!(w));
    }
    rf.extra.insert(
        "run".into(),
        serde_json::json!({ "id": at.run_id, "cycles": a.cycles }),
    );
    if a.cycles > 1 {
        rf.extra.insert(
            "start_delay".into(),
            serde_json::json!({ "seed": seed_of(a, at.experiment_id), "delay_s": m.delay_s }),
        );
        rf.extra.insert("cycle".into(), serde_json::json!(m.cycle));
    }
    let path = result_path(a, at, m.cycle);
    meter.save(&mut rf, &path, a.timeseries)?;
    if a.timeseries {
        // the time-series file now holds the window's samples: the stream is not kept
        if let Some(stream) = meter.stop_timeseries()? {
            let _ = std::fs::remove_file(stream);
        }
    }
    let cycles = (m.cycle, a.cycles);
    summarise(ui, &rf, &m.outcome, &path, cycles, meter.notices());
    if ui.json && a.cycles == 1 {
        ui.json_out(&rf)?;
    }
    Ok(path)
}

/// Where cycle `cycle`'s result goes.
fn result_path(a: &RunArgs, at: &Place, cycle: u32) -> PathBuf {
    if a.cycles > 1 {
        at.exp_dir
            .join(format!("process_{}_cycle_{cycle}.json", at.process_index))
    } else {
        process_result_path(at.output, at.experiment_id, at.process_index)
    }
}

/// "this command: X J of Y J active (Z %, estimated from SM utilisation)", or why not.
fn attribution_line(r: &lem::EnergyReport) -> Option<String> {
    let a = r.attribution.as_ref()?;
    Some(match (a.self_active_j, a.active_j, a.self_share()) {
        (Some(x), Some(y), Some(z)) => format!(
            "  this command: {x:.2} J of {y:.2} J active ({:.1} %, estimated from SM utilisation)",
            100.0 * z
        ),
        _ => format!(
            "  this command: share unavailable ({})",
            a.reason.as_deref().unwrap_or("unknown")
        ),
    })
}

/// Measure `argv` from spawn to exit after a start delay of `delay_s`.
fn measure_command(
    meter: &lem::Meter,
    argv: &[String],
    delay_s: f64,
) -> Result<(lem::EnergyReport, Outcome), Failure> {
    if delay_s > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(delay_s));
    }
    if let Some(sig) = signals::received() {
        // signalled during the start delay: never start the command just to stop it
        return Err(Failure {
            code: interrupted_code(sig),
            message: format!("interrupted by signal {sig} before the command started"),
        });
    }
    let scope = meter.start("run")?;
    // the energy is attributed to the command's process tree: its pid and descendants
    let outcome = spawn_and_wait(argv, |pid| scope.attribute_to([pid]));
    let report = scope.finish()?;
    Ok((report, outcome?))
}

/// Whether lem was signalled to stop before cycle `cycle` (saying so after the first).
fn interrupted_before(ui: &Ui, cycle: u32, cycles: u32) -> bool {
    let Some(sig) = signals::received() else {
        return false;
    };
    if cycle > 0 {
        ui.warn(format!(
            "interrupted by signal {sig} after cycle {cycle}/{cycles}: the remaining cycles are not run"
        ));
    }
    true
}

/// Say why the remaining cycles are not run (cycle `cycle` of `cycles` was the last).
fn stopping(ui: &Ui, interrupted: bool, cycle: u32, cycles: u32) {
    if cycles > 1 && cycle + 1 < cycles {
        ui.warn(format!(
            "stopping after cycle {}/{cycles}: the command {}",
            cycle + 1,
            if interrupted {
                "was interrupted"
            } else {
                "failed"
            }
        ));
    }
}

/// The code of a run interrupted by signal `sig`: 128 + `sig`, as a shell reports it.
fn interrupted_code(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(EXIT_LEM)
}

/// The seed of the start delays: `--seed`, else one from the experiment id (FNV-1a).
fn seed_of(a: &RunArgs, experiment_id: &str) -> u64 {
    a.seed
        .unwrap_or_else(|| lem::args::seed_from(experiment_id))
}

/// The random delay before cycle `cycle`, s: uniform within the meter's longest sensor
/// period (0 for a single run, or an ideal sensor).
fn start_delay(meter: &lem::Meter, a: &RunArgs, experiment_id: &str, cycle: u32) -> f64 {
    if a.cycles <= 1 {
        return 0.0;
    }
    lem::args::cycle_start_delay(
        seed_of(a, experiment_id),
        cycle,
        meter.longest_sensor_period_s(),
    )
}

/// Wait out the idle gap between cycles (an interrupt ends it early).
fn idle_gap(ui: &Ui, gap: Duration) {
    if gap.is_zero() {
        return;
    }
    let pb = ui.progress(gap.as_millis() as u64, "idle gap between cycles");
    let t = Instant::now();
    while t.elapsed() < gap && signals::received().is_none() {
        std::thread::sleep(Duration::from_millis(50).min(gap));
        pb.set_position(t.elapsed().as_millis() as u64);
    }
    pb.finish_and_clear();
}

fn summarise(
    ui: &Ui,
    rf: &lem::ResultFile,
    o: &Outcome,
    path: &Path,
    (cycle, cycles): (u32, u32),
    already_said: &[String],
) {
    let r = &rf.report;
    let cmd = rf
        .extra
        .get("command")
        .and_then(|c| c.get("argv"))
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let how = match (o.exit_code, o.signal) {
        (Some(c), _) => format!("exited {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended".into(),
    };
    let tag = if r.simulated {
        "  [SIMULATED device: not a measurement]"
    } else {
        ""
    };
    let cyc = if cycles > 1 {
        format!("cycle {}/{cycles}: ", cycle + 1)
    } else {
        String::new()
    };
    ui.say(format!(
        "lem: {cyc}`{cmd}` {how} after {:.2} s{tag}",
        r.duration_s
    ));
    let e = &r.energy;
    let method = e.method.map_or("-".to_string(), |m| m.to_string());
    ui.say(format!(
        "  energy    raw {} | adjusted {}  ({method})",
        joules_pm(e.raw_j, e.uncertainty_j),
        joules_pm(e.adjusted_j, e.adjusted_uncertainty_j)
    ));
    // One basis for mean and peak: all devices together.
    let all = if r.devices.len() > 1 {
        format!(" (all {} devices)", r.devices.len())
    } else {
        String::new()
    };
    ui.say(format!(
        "  power     mean {} | peak {}{all}",
        watts(r.power.mean_w),
        watts(r.power.peak_w)
    ));
    let b = match (e.baseline_power_w, e.baseline_cache_age_s) {
        (Some(w), Some(a)) => format!("{w:.1} W ({}, measured {} ago)", e.baseline_method, age(a)),
        (Some(w), None) => format!("{w:.1} W ({})", e.baseline_method),
        (None, _) => format!("none ({})", e.baseline_method),
    };
    ui.say(format!("  baseline  {b}"));
    if let Some(line) = attribution_line(r) {
        ui.say(line);
    }
    if r.thermal.throttle_detected {
        ui.warn(format!(
            "throttling detected: {:.2} s throttled (thermal {:.2} s, power {:.2} s)",
            r.thermal.throttle_duration_s, r.thermal.thermal_duration_s, r.thermal.power_duration_s
        ));
    }
    for w in &r.warnings {
        if !already_said.contains(w) {
            ui.warn(w);
        }
    }
    ui.say(format!("  result    {}", path.display()));
}
