//! Energy of LLM inference: prefill and decode energy, J/token, TTFT and inter-token latency
//! of a Llama-style transformer (burn), measured with lem.
//!
//! Run with: `cargo run --release --example llm_energy`
//! (CUDA: `cargo run --release --features cuda --example llm_energy -- --backend cuda`)
//!
//! Without a GPU it runs on the CPU and measures whatever energy source `auto` finds (RAPL
//! as root), saying plainly when there is none; latency and throughput are reported anyway.
//! Try a simulated GPU with `--device sim:examples/scenarios/steady_300w.json`.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

use lem::Meter;
use lem_burn::burn::prelude::Backend;
use lem_burn::generate::{generate, measure_request, GenerateOptions};
use lem_burn::sampling::{Rng, Sampling};
use lem_burn::serve::Arrivals;
use lem_burn::tokenizer::{ByteTokenizer, EOS};
use lem_burn::workload::{sections, WorkloadInfo};
use lem_burn::{Model, ModelConfig};

#[derive(Debug, Parser)]
#[command(
    name = "llm_energy",
    about = "Energy of LLM inference, prefill and decode, measured with lem"
)]
struct Args {
    /// Preset: tiny, small (~125M), llama-1b (Llama-3.2-1B dimensions).
    #[arg(long, default_value = "small")]
    model: String,
    /// Load real weights: a directory with config.json and *.safetensors (Llama layout).
    #[arg(long, value_name = "DIR")]
    weights: Option<PathBuf>,
    /// cpu or cuda (default: cuda when built with it and a GPU is usable, else cpu).
    #[arg(long)]
    backend: Option<String>,
    /// f32 (CPU and CUDA), f16 or bf16 (CUDA).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Sequences per request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    /// Tokens generated per sequence.
    #[arg(long, default_value_t = 32)]
    gen_tokens: usize,
    /// Measured requests per cycle.
    #[arg(long, default_value_t = 3)]
    requests: usize,
    /// Serve: requests arrive by a seeded Poisson process of RATE requests per second
    /// (`poisson:RATE`) and are decoded as one continuous batch, each a shared window.
    #[arg(long, value_name = "poisson:RATE")]
    arrivals: Option<String>,
    /// Cycles (each writes a result; with more than one, an aggregate with statistics).
    #[arg(long, default_value_t = 1)]
    cycles: usize,
    /// The device, baseline and interval flags every lem command shares.
    #[command(flatten)]
    meter: lem::args::MeterArgs,
    /// Where results go, as in `lem run`.
    #[command(flatten)]
    out: lem::args::OutputArgs,
    /// Write the power time series beside the result.
    #[arg(long)]
    timeseries: bool,
    /// Plot power over time (with phases) to this SVG; implies --timeseries.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Seed of the random weights and of sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Top-p.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Stop a sequence at EOS (by default every sequence generates --gen-tokens tokens,
    /// as serving benchmarks do).
    #[arg(long)]
    stop_at_eos: bool,
    /// Print the result JSON on stdout (the table then goes to stderr).
    #[arg(long)]
    json: bool,
    /// CPU threads (default: all cores, as PyTorch does).
    #[arg(long)]
    threads: Option<usize>,
}

type Fail = String;

fn fmt_j(v: Option<f64>) -> String {
    v.map_or_else(|| "not measured".into(), |j| format!("{j:.3} J"))
}

/// A figure with its bound (`1.234 ± 0.056 J`); the bare figure where the bound is unknown.
fn fmt_j_pm(v: Option<f64>, u: Option<f64>) -> String {
    match (v, u) {
        (Some(j), Some(u)) => format!("{j:.3} ± {u:.3} J"),
        _ => fmt_j(v),
    }
}

fn fmt_ms(v: &serde_json::Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.2} ms"))
}

fn meter_for<B: Backend>(a: &Args, device: &B::Device) -> Result<Meter, Fail> {
    let b = a.meter.builder().map_err(|e| e.to_string())?;
    b.sync(lem_burn::backend_sync::<B>(device.clone()))
        .keep_timeseries(a.timeseries || a.plot.is_some())
        .build()
        .map_err(|e| e.to_string())
}

/// A warning when one decode step is shorter than a part-time power sensor's period: a
/// power pattern that repeats every step can alias with the sensor, which no NVML reading
/// shows (README, "How sure is a joule").
fn decode_aliasing_warning(meter: &Meter, metrics: &serde_json::Value) -> Option<String> {
    let step_s = metrics["itl_ms"]["p50"].as_f64()? / 1000.0;
    let sensor = meter.part_time_sensor()?;
    (step_s < sensor.period_s).then(|| {
        format!(
            "one decode step ({:.1} ms, ITL p50) is shorter than the power sensor's period ({:.0} ms, {:.0} % of it observed): a power pattern repeating each step can alias with the sensor, which no reading shows; compare runs, and prefer whole-request and whole-run figures",
            step_s * 1e3,
            sensor.period_s * 1e3,
            sensor.sensing_fraction * 100.0
        )
    })
}

const PROMPT: &str = "Energy is the currency of computation. ";

/// The prompt: through the weights' own `tokenizer.json` when there is one (feature
/// `hf-tokenizer`), else the built-in byte tokenizer.
fn prompt_tokens<B: Backend>(a: &Args, model: &Model<B>) -> Result<Vec<u32>, Fail> {
    #[cfg(feature = "hf-tokenizer")]
    if let Some(dir) = &a.weights {
        let path = dir.join("tokenizer.json");
        if path.exists() {
            let t =
                lem_burn::tokenizer::HfTokenizer::from_file(&path).map_err(|e| e.to_string())?;
            return t
                .prompt_of_len(PROMPT, a.prompt_len)
                .map_err(|e| e.to_string());
        }
    }
    let ids = ByteTokenizer.prompt_of_len(PROMPT, a.prompt_len);
    if model.config.vocab_size < lem_burn::tokenizer::BYTE_VOCAB {
        return Err(format!(
            "the model's vocabulary ({}) is smaller than the byte tokenizer's ({})",
            model.config.vocab_size,
            lem_burn::tokenizer::BYTE_VOCAB
        ));
    }
    Ok(ids)
}

fn run<B: Backend>(a: &Args, device: B::Device, backend: &str) -> Result<ExitCode, Fail> {
    let sampling = if a.temperature > 0.0 {
        if !(a.top_p > 0.0 && a.top_p <= 1.0) {
            return Err(format!("invalid --top-p: {} is not in (0, 1]", a.top_p));
        }
        Sampling::Random {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
        }
    } else {
        Sampling::Greedy
    };
    if a.batch == 0 || a.prompt_len == 0 || a.gen_tokens == 0 || a.requests == 0 || a.cycles == 0 {
        return Err(
            "--batch, --prompt-len, --gen-tokens, --requests and --cycles must be at least 1"
                .into(),
        );
    }
    let arrivals = match &a.arrivals {
        Some(s) => Some(Arrivals::parse(s).map_err(|e| e.to_string())?),
        None => None,
    };
    if arrivals.is_some() && (a.batch != 1 || a.cycles != 1) {
        return Err("--arrivals serves one request per sequence in one cycle: leave --batch and --cycles at 1".into());
    }
    let output = a.out.output_dir();
    let experiment_id = a.out.experiment_id("llm-").map_err(|e| e.to_string())?;
    let process_index = a.out.process_index().map_err(|e| e.to_string())?;
    // results must be writable before minutes of work are spent
    let exp_dir = output.join("raw").join(&experiment_id);
    std::fs::create_dir_all(&exp_dir).map_err(|e| {
        format!(
            "invalid --output: cannot write results to {}: {e}",
            exp_dir.display()
        )
    })?;
    let meter = meter_for::<B>(a, &device)?;
    for n in meter.notices() {
        eprintln!("lem: {n}");
    }
    let ctx = a.prompt_len + a.gen_tokens;
    let model: Model<B> = match &a.weights {
        Some(dir) => lem_burn::weights::load(dir, ctx, &device).map_err(|e| e.to_string())?,
        None => {
            let cfg = ModelConfig::preset(&a.model).ok_or_else(|| {
                format!(
                    "invalid --model `{}`: one of {}",
                    a.model,
                    lem_burn::config::PRESETS.join(", ")
                )
            })?;
            eprintln!(
                "building {} ({} parameters, random weights, seed {})",
                cfg.name,
                cfg.param_count(),
                a.seed
            );
            Model::random(&cfg, a.seed, ctx, &device)
        }
    };
    if ctx > model.max_len() {
        return Err(format!(
            "invalid --prompt-len + --gen-tokens: {ctx} exceeds the model's context of {}",
            model.config.max_seq_len
        ));
    }
    let prompts = vec![prompt_tokens(a, &model)?; a.batch];
    let opts = GenerateOptions {
        max_new_tokens: a.gen_tokens,
        sampling,
        stop_tokens: if a.stop_at_eos { vec![EOS] } else { vec![] },
    };
    let sync = lem_burn::backend_sync::<B>(device.clone());

    // Warmup until the latency of a (short) request settles.
    let warm_opts = GenerateOptions {
        max_new_tokens: a.gen_tokens.min(8),
        ..opts.clone()
    };
    let mut rng = Rng::new(a.seed);
    let mut failed = None;
    let warmup = lem::warmup::warm_up(
        lem::warmup::WarmupConfig {
            max_iters: 30,
            ..Default::default()
        },
        || {
            if let Err(e) = generate(&model, &prompts, &warm_opts, &mut rng) {
                failed = Some(e.to_string());
            }
        },
        &sync,
        |_, _| {},
    );
    if let Some(e) = failed {
        return Err(e);
    }
    eprintln!(
        "warmup: {} after {} requests (CV {})",
        if warmup.converged {
            "converged"
        } else {
            "NOT converged"
        },
        warmup.iterations,
        warmup.final_cv.map_or("-".into(), |c| format!("{c:.3}"))
    );

    let info = WorkloadInfo {
        model: model.config.name.clone(),
        backend: backend.to_string(),
        threads: (backend == "cpu").then(lem_burn::backend::cpu_threads),
        dtype: a.dtype.clone(),
        batch: a.batch,
        prompt_len: a.prompt_len,
        gen_tokens: a.gen_tokens,
        requests: a.requests,
        seed: a.seed,
        params: model.num_params(),
        weights: a
            .weights
            .as_ref()
            .map_or_else(|| "random".into(), |p| p.display().to_string()),
        sampling: match sampling {
            Sampling::Greedy => "greedy".into(),
            Sampling::Random {
                temperature,
                top_k,
                top_p,
            } => {
                format!("temperature {temperature}, top_k {top_k}, top_p {top_p}")
            }
        },
    };
    let mut last_path = None;
    for cycle in 0..a.cycles {
        let run_scope = meter.start("run").map_err(|e| e.to_string())?;
        let (workload, metrics, key, section, warnings) = match &arrivals {
            Some(arr) => {
                let (w, m, requests, warnings) =
                    lem_burn::serve_report::measure(&meter, &model, &prompts[0], &opts, arr, &info)
                        .map_err(|e| e.to_string())?;
                (w, m, "requests", requests, warnings)
            }
            None => {
                let mut reqs = Vec::with_capacity(a.requests);
                let mut rng = Rng::new(a.seed.wrapping_add(1 + cycle as u64));
                for _ in 0..a.requests {
                    reqs.push(
                        measure_request(&meter, &model, &prompts, &opts, &mut rng)
                            .map_err(|e| e.to_string())?,
                    );
                }
                let (workload, metrics, phases) = sections(&info, &reqs);
                let mut w = lem_burn::workload::uncertainty_warnings(&phases);
                w.extend(decode_aliasing_warning(&meter, &metrics));
                (workload, metrics, "phases", phases, w)
            }
        };
        let mut report = run_scope.finish().map_err(|e| e.to_string())?;
        report.warnings.extend(warnings);
        let mut rf = meter.result_file(report, experiment_id.clone(), process_index);
        rf.extra.insert("workload".into(), workload);
        rf.extra.insert("metrics".into(), metrics);
        rf.extra.insert(key.into(), section);
        rf.extra.insert(
            "warmup".into(),
            serde_json::to_value(&warmup).unwrap_or_default(),
        );
        rf.extra.insert(
            "command".into(),
            serde_json::json!({ "argv": std::env::args().collect::<Vec<_>>() }),
        );
        let path = if a.cycles > 1 {
            rf.extra.insert("cycle".into(), serde_json::json!(cycle));
            output
                .join("raw")
                .join(&experiment_id)
                .join(format!("process_{process_index}_cycle_{cycle}.json"))
        } else {
            lem::output::process_result_path(&output, &experiment_id, process_index)
        };
        meter
            .save(&mut rf, &path, a.timeseries || a.plot.is_some())
            .map_err(|e| e.to_string())?;
        print_table(&rf, cycle, a.cycles, a.json);
        eprintln!("result: {}", path.display());
        if a.json {
            println!("{}", serde_json::to_string_pretty(&rf).unwrap_or_default());
        }
        last_path = Some(path);
    }
    if a.cycles > 1 {
        let dir = output.join("raw").join(&experiment_id);
        let agg = lem::aggregate::aggregate_dir(&dir, false).map_err(|e| e.to_string())?;
        let p = lem::aggregate::write_aggregate(&output, &agg).map_err(|e| e.to_string())?;
        if let Some(i) = agg.cycles.energy_adjusted_j.or(agg.cycles.energy_raw_j) {
            eprintln!(
                "cycles: n={} energy mean {:.3} J, 95% CI [{}, {}]",
                agg.cycles.n,
                i.mean,
                i.ci95_low.map_or("-".into(), |x| format!("{x:.3}")),
                i.ci95_high.map_or("-".into(), |x| format!("{x:.3}"))
            );
        }
        eprintln!("aggregate: {}", p.display());
    }
    if let (Some(svg), Some(result)) = (&a.plot, &last_path) {
        lem::plot::plot_file(result, svg).map_err(|e| e.to_string())?;
        eprintln!("plot: {}", svg.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rf: &lem::ResultFile, cycle: usize, cycles: usize, json: bool) {
    // with --json, stdout carries the JSON alone: the human table goes to stderr
    macro_rules! println {
        ($($t:tt)*) => {
            if json {
                std::eprintln!($($t)*)
            } else {
                std::println!($($t)*)
            }
        };
    }
    let w = &rf.extra["workload"];
    let m = &rf.extra["metrics"];
    let sim = if rf.report.simulated {
        "   [SIMULATED device: energy figures are not measurements]"
    } else {
        ""
    };
    let cyc = if cycles > 1 {
        format!(" (cycle {}/{cycles})", cycle + 1)
    } else {
        String::new()
    };
    println!(
        "{} on {} {} | batch {} | prompt {} | gen {} | {} requests{cyc}{sim}",
        w["model"].as_str().unwrap_or("?"),
        w["backend"].as_str().unwrap_or("?"),
        w["dtype"].as_str().unwrap_or("?"),
        w["batch"],
        w["prompt_len"],
        w["gen_tokens"],
        w["requests"]
    );
    println!(
        "  environment   {}",
        rf.environment.as_ref().map_or("-", |e| e.summary.as_str())
    );
    if let Some(arrivals) = w["arrivals"].as_str() {
        println!("  server        {arrivals} arrivals, continuous batching");
        for line in lem_burn::serve_report::table(m) {
            println!("{line}");
        }
    } else {
        print_phases(rf, json);
    }
    if rf.report.energy.raw_j.is_none() {
        println!(
            "  energy        not measured: no energy source (see the notice above; try --device)"
        );
    }
    if rf.report.thermal.throttle_detected {
        println!(
            "  WARNING       the device throttled for {:.2} s",
            rf.report.thermal.throttle_duration_s
        );
    }
    for w in &rf.report.warnings {
        if !w.starts_with("simulated device from") && !w.starts_with("no energy source") {
            println!("  warning       {w}");
        }
    }
}

/// The latency, throughput, phase and J/token lines of a run of whole requests.
fn print_phases(rf: &lem::ResultFile, json: bool) {
    macro_rules! println {
        ($($t:tt)*) => {
            if json {
                std::eprintln!($($t)*)
            } else {
                std::println!($($t)*)
            }
        };
    }
    let w = &rf.extra["workload"];
    let m = &rf.extra["metrics"];
    let p = &rf.extra["phases"];
    println!(
        "  latency       TTFT {} | ITL p50 {} p95 {} p99 {}",
        fmt_ms(&m["ttft_ms"]),
        fmt_ms(&m["itl_ms"]["p50"]),
        fmt_ms(&m["itl_ms"]["p95"]),
        fmt_ms(&m["itl_ms"]["p99"])
    );
    println!(
        "  throughput    {:.1} tok/s overall | prefill {:.1} tok/s | decode {:.1} tok/s",
        m["tokens_per_s"].as_f64().unwrap_or(0.0),
        m["prefill_tokens_per_s"].as_f64().unwrap_or(0.0),
        m["decode_tokens_per_s"].as_f64().unwrap_or(0.0)
    );
    for phase in ["prefill", "decode", "request"] {
        let e = &p[phase]["energy"];
        println!(
            "  {phase:<13} raw {:<24} adjusted {:<24} {:.3} s",
            fmt_j_pm(e["raw_j"].as_f64(), e["uncertainty_j"].as_f64()),
            fmt_j_pm(
                e["adjusted_j"].as_f64(),
                e["adjusted_uncertainty_j"].as_f64()
            ),
            p[phase]["duration_s"].as_f64().unwrap_or(0.0)
        );
    }
    println!(
        "  J/token       {} adjusted | {} raw ({} tokens out)",
        fmt_j_pm(
            m["energy_per_output_token_j"].as_f64(),
            m["energy_per_output_token_uncertainty_j"].as_f64()
        ),
        fmt_j_pm(
            m["energy_per_output_token_raw_j"].as_f64(),
            m["energy_per_output_token_raw_uncertainty_j"].as_f64()
        ),
        w["tokens_out"]
    );
}

fn main() -> ExitCode {
    let a = Args::parse();
    let want = a
        .backend
        .clone()
        .unwrap_or_else(|| match lem_burn::backend::probe_cuda() {
            Ok(()) => "cuda".into(),
            Err(why) => {
                if lem_burn::backend::CUDA_COMPILED {
                    eprintln!("llm_energy: CUDA not usable ({why}); running on the CPU");
                }
                "cpu".into()
            }
        });
    let result = match want.as_str() {
        "cpu" => {
            if a.dtype != "f32" {
                Err(format!(
                    "invalid --dtype {}: the CPU backend runs f32 (f16/bf16 need --backend cuda)",
                    a.dtype
                ))
            } else {
                run_cpu(&a)
            }
        }
        "cuda" => run_cuda(&a),
        other => Err(format!("invalid --backend `{other}`: cpu or cuda")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("llm_energy: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The run on the CPU backend, on `--threads` threads (default: every core) with the run
/// itself on one of them.
fn run_cpu(a: &Args) -> Result<ExitCode, Fail> {
    lem_burn::backend::on_cpu_threads(a.threads, || {
        run::<lem_burn::Cpu>(a, Default::default(), "cpu")
    })
    .and_then(|r| r)
}

#[cfg(feature = "cuda")]
fn run_cuda(a: &Args) -> Result<ExitCode, Fail> {
    use lem_burn::backend::Cuda;
    if let Err(why) = lem_burn::backend::probe_cuda() {
        eprintln!("llm_energy: CUDA not usable ({why}); running on the CPU");
        if a.dtype != "f32" {
            return Err(format!(
                "invalid --dtype {}: the CPU fallback runs f32",
                a.dtype
            ));
        }
        return run_cpu(a);
    }
    let device = Default::default();
    match a.dtype.as_str() {
        "f32" => run::<Cuda<f32>>(a, device, "cuda"),
        "f16" => run::<Cuda<lem_burn::half::f16>>(a, device, "cuda"),
        "bf16" => run::<Cuda<lem_burn::half::bf16>>(a, device, "cuda"),
        other => Err(format!("invalid --dtype `{other}`: f32, f16 or bf16")),
    }
}

#[cfg(not(feature = "cuda"))]
fn run_cuda(a: &Args) -> Result<ExitCode, Fail> {
    eprintln!("llm_energy: this build has no CUDA backend (rebuild with --features cuda); running on the CPU");
    if a.dtype != "f32" {
        return Err(format!(
            "invalid --dtype {}: the CPU backend runs f32",
            a.dtype
        ));
    }
    run::<lem_burn::Cpu>(a, Default::default(), "cpu")
}
