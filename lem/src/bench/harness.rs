//! `lem::main!()`: the benchmark binary's entry point. Command-line compatible with
//! `cargo bench` (`--bench`, a name filter, `--exact`, `--list`, `--ignored`); other libtest
//! flags are accepted and ignored. Without `--bench` (as under `cargo test --benches`) every
//! benchmark runs once, quickly, as a smoke test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::against::{baseline_path, change, reference, regression_pct, Against};
use super::bencher::Bencher;
use super::outcome::BenchOutcome;
use super::plan::{BenchOptions, Plan};
use super::summary::{csv_row, print_table, write_summary};
use crate::device::DeviceSpec;
use crate::measure::baseline::BaselineMode;
use crate::measure::builder::MeterBuilder;
use crate::measure::meter::Meter;
use crate::measure::warmup::WarmupMode;
use crate::results::compare::{Judge, DEFAULT_MARGIN_PCT, DEFAULT_NOISE_PCT};

/// A benchmark registered by `#[energy_bench]`.
#[derive(Debug)]
pub struct BenchDef {
    /// The benchmark's name (the function's, or the `name` option).
    pub name: &'static str,
    /// Where it was defined.
    pub module_path: &'static str,
    /// Its options.
    pub options: BenchOptions,
    /// Labels of its `args` (empty: no arguments).
    pub args: &'static [&'static str],
    /// Runs it with the index of its argument.
    pub run: fn(&mut Bencher<'_>, usize),
}

inventory::collect!(BenchDef);

/// The harness's command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HarnessArgs {
    /// `--bench`: measure (else a quick smoke run).
    pub bench: bool,
    /// `--list`.
    pub list: bool,
    /// `--exact`: filters match whole names.
    pub exact: bool,
    /// `--ignored`: run only ignored benchmarks.
    pub ignored: bool,
    /// `--include-ignored`.
    pub include_ignored: bool,
    /// Name filters (any may match).
    pub filters: Vec<String>,
    /// `--skip` filters.
    pub skip: Vec<String>,
    /// `--save-baseline NAME`: save this run's results as baseline NAME.
    pub save_baseline: Option<String>,
    /// `--baseline NAME`: compare with baseline NAME instead of the previous run.
    pub baseline: Option<String>,
    /// `--fail-on-regression PCT` (or `LEM_FAIL_ON_REGRESSION`): exit 1 when a benchmark's
    /// energy or time per iteration regressed significantly by more than PCT percent.
    pub fail_on_regression: Option<String>,
    /// `--noise-threshold F`, a fraction as criterion spells it (0.01 = 1 %): a significant
    /// change of at most this is `no change`.
    pub noise_threshold: Option<String>,
}

impl HarnessArgs {
    /// Parse libtest-style arguments; unknown flags are ignored.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Self {
        let mut a = Self::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--bench" => a.bench = true,
                "--list" => a.list = true,
                "--exact" => a.exact = true,
                "--ignored" => a.ignored = true,
                "--include-ignored" => a.include_ignored = true,
                "--skip" => a.skip.extend(it.next()),
                "--save-baseline" => a.save_baseline = it.next(),
                "--baseline" => a.baseline = it.next(),
                "--fail-on-regression" => a.fail_on_regression = it.next(),
                "--noise-threshold" => a.noise_threshold = it.next(),
                // libtest flags that take a separate value
                "--format" | "--color" | "--test-threads" | "--logfile" | "--shuffle-seed"
                | "-Z" | "--report-time" => {
                    let _ = it.next();
                }
                s if s.starts_with('-') => {}
                s => a.filters.push(s.to_string()),
            }
        }
        a
    }

    /// Whether a benchmark named `name` (ignored or not) is selected.
    pub fn selects(&self, name: &str, ignored: bool) -> bool {
        if self.ignored && !ignored {
            return false;
        }
        if ignored && !self.ignored && !self.include_ignored {
            return false;
        }
        self.names(name)
    }

    /// Whether `name` passes the name filters and skips (what `--list` shows, as libtest
    /// does: ignored benchmarks included unless `--ignored` asks for those only).
    pub fn lists(&self, name: &str, ignored: bool) -> bool {
        (!self.ignored || ignored) && self.names(name)
    }

    fn names(&self, name: &str) -> bool {
        let hit = |f: &String| {
            if self.exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        };
        if self.skip.iter().any(hit) {
            return false;
        }
        self.filters.is_empty() || self.filters.iter().any(hit)
    }
}

/// One benchmark instance (a function, or one of its arguments).
struct Instance {
    name: String,
    def: &'static BenchDef,
    arg: usize,
}

fn instances() -> Vec<Instance> {
    let mut out = Vec::new();
    for def in inventory::iter::<BenchDef> {
        let base = def.options.name.unwrap_or(def.name);
        if def.args.is_empty() {
            out.push(Instance {
                name: base.to_string(),
                def,
                arg: 0,
            });
        } else {
            for (i, label) in def.args.iter().enumerate() {
                out.push(Instance {
                    name: format!("{base}/{label}"),
                    def,
                    arg: i,
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn output_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LEM_OUTPUT_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("lem");
    }
    // bench binaries live in <target>/<profile>/deps/
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent()?.parent().map(|t| t.join("lem")))
        .unwrap_or_else(|| PathBuf::from("target/lem"))
}

/// `<dir>/<name>.json`; a name with `/` (one benchmark per argument, `decode/8`) becomes a
/// sub-directory. Components that could escape the directory are replaced.
fn result_path(dir: &std::path::Path, bench: &str) -> PathBuf {
    let mut p = dir.to_path_buf();
    let parts: Vec<String> = bench
        .split('/')
        .map(|c| {
            let c: String = c
                .chars()
                .map(|ch| {
                    if ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '=') {
                        ch
                    } else {
                        '_'
                    }
                })
                .collect();
            if c.is_empty() || c.chars().all(|ch| ch == '.') {
                c.replace('.', "_") + "_"
            } else {
                c
            }
        })
        .collect();
    let (last, dirs) = parts
        .split_last()
        .map_or((String::from("bench"), &[][..]), |(l, d)| (l.clone(), d));
    for d in dirs {
        p.push(d);
    }
    p.push(format!("{last}.json"));
    p
}

fn build_meter(spec: Option<&str>, test_mode: bool) -> crate::error::Result<Meter> {
    let mut b = MeterBuilder::from_env()?;
    if let Some(s) = spec {
        b = b.device(DeviceSpec::parse_for("energy_bench(device)", s)?);
    }
    if test_mode {
        b = b.baseline_mode(BaselineMode::Off);
    }
    b.build()
}

/// Run the registered benchmarks with this process's arguments; the process exit code.
pub fn run_main() -> i32 {
    run_with(HarnessArgs::parse(std::env::args().skip(1)))
}

/// Run the registered benchmarks with `args`; the process exit code.
pub fn run_with(args: HarnessArgs) -> i32 {
    let all = instances();
    let selected: Vec<&Instance> = all
        .iter()
        .filter(|i| args.selects(&i.name, i.def.options.ignore))
        .collect();
    if args.list {
        for i in all
            .iter()
            .filter(|i| args.lists(&i.name, i.def.options.ignore))
        {
            println!("{}: benchmark", i.name);
        }
        return 0;
    }
    let test_mode = !args.bench;
    let against = match against_of(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lem: error: {e}");
            return 1;
        }
    };
    let mut meters: BTreeMap<Option<&'static str>, Meter> = BTreeMap::new();
    let run = Run {
        against,
        out_dir: output_dir(),
        command: std::env::args().collect(),
        experiment_id: format!(
            "bench-{}",
            crate::base::timefmt::compact_id(crate::base::timefmt::unix_now_s())
        ),
    };
    let mut csv_rows = Vec::new();
    let mut failures = 0;
    for inst in selected {
        let Some(meter) = meter_for(&mut meters, inst, test_mode) else {
            failures += 1;
            continue;
        };
        let outcome = match run_instance(meter, inst, test_mode) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("lem: error: {}: {e}", inst.name);
                failures += 1;
                continue;
            }
        };
        if test_mode {
            println!("Testing {} ... ok", inst.name);
            continue;
        }
        let (row, written) = run.save(meter, inst, &outcome);
        csv_rows.extend(row);
        if let Some(why) = &outcome.aborted {
            eprintln!("lem: error: {}: {why}", inst.name);
            failures += 1;
        }
        if let Err(e) = written {
            eprintln!("lem: error: {e}");
            failures += 1;
        }
    }
    if !csv_rows.is_empty() && !write_summary(&run.out_dir, &csv_rows) {
        failures += 1;
    }
    i32::from(failures > 0)
}

/// The meter for a benchmark's device, built once per device; `None` (said on stderr) when
/// it cannot be built.
fn meter_for<'a>(
    meters: &'a mut BTreeMap<Option<&'static str>, Meter>,
    inst: &Instance,
    test_mode: bool,
) -> Option<&'a Meter> {
    let device = inst.def.options.device;
    if let std::collections::btree_map::Entry::Vacant(slot) = meters.entry(device) {
        match build_meter(device, test_mode) {
            Ok(m) => {
                if !test_mode {
                    for n in m.notices() {
                        eprintln!("lem: {n}");
                    }
                }
                slot.insert(m);
            }
            Err(e) => {
                eprintln!("lem: error: {}: {e}", inst.name);
                return None;
            }
        }
    }
    meters.get(&device)
}

/// Run one benchmark (once, quickly, in test mode).
fn run_instance(meter: &Meter, inst: &Instance, test_mode: bool) -> Result<BenchOutcome, String> {
    let mut plan =
        Plan::new(&inst.name, &inst.def.options, !test_mode).map_err(|e| e.to_string())?;
    if test_mode {
        plan.warmup.mode = WarmupMode::Fixed;
        plan.warmup.fixed_iters = 1;
        plan.samples = 1;
        plan.min_sample_s = 0.0;
        plan.max_uncertainty = None;
        plan.cycles = 1;
        plan.cycle_gap = Duration::ZERO;
    }
    let mut b = Bencher::new(meter, plan);
    (inst.def.run)(&mut b, inst.arg);
    b.take_outcome()
        .ok_or_else(|| "the benchmark never called `b.iter(...)`".to_string())
}

/// What the run compares with, saves and fails on, from `args` and
/// `LEM_FAIL_ON_REGRESSION`.
fn against_of(args: &HarnessArgs) -> Result<Against, String> {
    let (flag, raw) = match &args.fail_on_regression {
        Some(v) => ("--fail-on-regression", Some(v.clone())),
        None => (
            "LEM_FAIL_ON_REGRESSION",
            std::env::var("LEM_FAIL_ON_REGRESSION")
                .ok()
                .filter(|v| !v.trim().is_empty()),
        ),
    };
    let fail_pct = match raw {
        None => None,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 => Some(p),
            _ => return Err(format!("{flag}: `{v}` is not a percentage (>= 0)")),
        },
    };
    let noise_pct = match &args.noise_threshold {
        None => None,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 => Some(f * 100.0),
            _ => {
                return Err(format!(
                    "--noise-threshold: `{v}` is not a fraction (>= 0, 0.01 = 1 %)"
                ))
            }
        },
    };
    for (flag, name) in [
        ("--baseline", &args.baseline),
        ("--save-baseline", &args.save_baseline),
    ] {
        if let Some(n) = name {
            let ok = !n.is_empty()
                && !n.starts_with('.')
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(format!(
                    "{flag}: `{n}` is not a baseline name (letters, digits, `-`, `_`, `.`)"
                ));
            }
        }
    }
    Ok(Against {
        baseline: args.baseline.clone(),
        save: args.save_baseline.clone(),
        fail_pct,
        noise_pct,
    })
}

/// Whether a result file records a comparison (`bench.change`).
fn rf_has_change(rf: &crate::results::output::ResultFile) -> bool {
    rf.extra
        .get("bench")
        .and_then(|b| b.get("change"))
        .is_some()
}

/// What every benchmark of one run shares.
struct Run {
    against: Against,
    out_dir: PathBuf,
    command: Vec<String>,
    experiment_id: String,
}

impl Run {
    /// Print a benchmark's table and write its result file: its CSV row (`None` when it
    /// has no report) and whether the file was written.
    fn save(
        &self,
        meter: &Meter,
        inst: &Instance,
        outcome: &BenchOutcome,
    ) -> (Option<Vec<String>>, crate::error::Result<()>) {
        let simulated = meter.is_simulated();
        print_table(outcome, simulated);
        let Some(report) = outcome.report.clone() else {
            return (None, Ok(()));
        };
        let mut rf = meter.result_file(report, self.experiment_id.clone(), 0);
        let gpu = rf
            .environment
            .as_ref()
            .and_then(|e| e.gpus.first().map(|g| g.name.clone()))
            .unwrap_or_default();
        rf.report.warnings.extend(outcome.warnings.iter().cloned());
        rf.extra.insert(
            "bench".into(),
            serde_json::to_value(&outcome.stats).unwrap_or_default(),
        );
        if let Some(w) = outcome.warmups.first() {
            rf.extra
                .insert("warmup".into(), serde_json::to_value(w).unwrap_or_default());
        }
        rf.extra.insert(
            "command".into(),
            serde_json::json!({ "argv": self.command }),
        );
        let path = result_path(&self.out_dir, &inst.name);
        let rel = path
            .strip_prefix(&self.out_dir)
            .unwrap_or(&path)
            .to_path_buf();
        let mut regressed = false;
        match reference(&self.against, &self.out_dir, &rel, &inst.name) {
            Ok(Some((old, label))) => {
                let judge = Judge {
                    margin_pct: self.against.fail_pct.unwrap_or(DEFAULT_MARGIN_PCT),
                    noise_pct: self.against.noise_pct.unwrap_or(DEFAULT_NOISE_PCT),
                };
                if let Some((change, lines)) = change(&old, &label, &outcome.stats, judge) {
                    for l in lines {
                        println!("{l}");
                    }
                    regressed = self
                        .against
                        .fail_pct
                        .is_some_and(|t| regression_pct(&change).is_some_and(|p| p > t));
                    if let Some(serde_json::Value::Object(b)) = rf.extra.get_mut("bench") {
                        b.insert("change".into(), change);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                // the measurement is still written; the missing baseline fails the run
                eprintln!("lem: error: {e}");
                regressed = true;
            }
        }
        let row = csv_row(outcome, simulated, &gpu, &self.command.join(" "));
        let mut written = crate::results::output::write_result(&path, &mut rf, None);
        if written.is_ok() {
            println!("  result {}", path.display());
            if let Some(n) = &self.against.save {
                let to = baseline_path(&self.out_dir, n, &rel);
                written = crate::results::output::write_result(&to, &mut rf, None);
                if written.is_ok() {
                    println!("  saved as baseline `{n}`: {}", to.display());
                }
            }
        }
        if regressed && written.is_ok() {
            written = Err(match &self.against.fail_pct {
                Some(p) if self.against.baseline.is_none() || rf_has_change(&rf) => {
                    crate::error::Error::config(
                        "--fail-on-regression",
                        format!("{}: regressed by more than {p} %", inst.name),
                    )
                }
                _ => crate::error::Error::config(
                    "--baseline",
                    format!("{}: compared with nothing (see above)", inst.name),
                ),
            });
        }
        (Some(row), written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> HarnessArgs {
        HarnessArgs::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn cargo_bench_arguments_are_understood_and_unknown_flags_ignored() {
        let a =
            parse("decode --bench --exact --nocapture --format terse --test-threads=1 --skip slow");
        assert!(a.bench && a.exact && !a.list);
        assert_eq!(a.filters, vec!["decode"]);
        assert_eq!(a.skip, vec!["slow"]);
        assert!(parse("--list").list);
    }

    #[test]
    fn filters_exact_and_ignored() {
        let a = parse("--bench dec");
        assert!(a.selects("decode/8", false));
        assert!(!a.selects("prefill", false));
        assert!(
            !a.selects("decode/8", true),
            "ignored benches need --ignored"
        );
        let a = parse("--bench --exact decode/8");
        assert!(a.selects("decode/8", false));
        assert!(!a.selects("decode/16", false));
        let a = parse("--bench --ignored");
        assert!(a.selects("slow", true));
        assert!(!a.selects("fast", false));
        let a = parse("--bench --skip 16");
        assert!(!a.selects("decode/16", false));
        assert!(a.selects("decode/8", false));
    }

    #[test]
    fn bench_result_paths_follow_the_name_and_stay_inside() {
        let d = std::path::Path::new("out");
        assert_eq!(result_path(d, "matmul"), PathBuf::from("out/matmul.json"));
        assert_eq!(
            result_path(d, "decode/8"),
            PathBuf::from("out/decode/8.json")
        );
        assert_eq!(result_path(d, "a b:c"), PathBuf::from("out/a_b_c.json"));
        assert_eq!(result_path(d, "../x"), PathBuf::from("out/___/x.json"));
    }
}
