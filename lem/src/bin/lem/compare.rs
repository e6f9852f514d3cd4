//! `lem compare BASE NEW`: did a change cost energy?

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use lem::compare::{
    Comparison, IntervalFrom, Judge, Verdict, DEFAULT_MARGIN_PCT, DEFAULT_NOISE_PCT,
};

use crate::ui::Ui;
use crate::Failure;

/// How the comparison is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// A table for a pull-request comment.
    Markdown,
    /// `{"comparisons": [...]}`.
    Json,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline: a result file, an aggregate, a bench output or a directory of these.
    base: PathBuf,
    /// The measurement to judge, of the same kind.
    new: PathBuf,
    /// A metric to compare, as its JSON path (`energy.adjusted_j`,
    /// `metrics.energy_per_output_token_j`, `bench.energy_per_iter_j`); repeatable. Default:
    /// every metric both inputs have.
    #[arg(long = "metric", value_name = "M")]
    metrics: Vec<String>,
    /// Exit 1 when a metric regressed significantly by more than PCT percent; also the
    /// margin within which an interval counts as `no change` (default 5).
    #[arg(long, value_name = "PCT")]
    threshold: Option<f64>,
    /// A significant change of at most PCT percent is `no change`, as criterion's noise
    /// threshold (default 1).
    #[arg(long = "noise-threshold", value_name = "PCT")]
    noise_threshold: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Compare, print; the exit code (1 for a regression beyond `--threshold`).
pub fn compare(ui: &Ui, a: &CompareArgs) -> Result<u8, Failure> {
    for (flag, v) in [
        ("--threshold", a.threshold),
        ("--noise-threshold", a.noise_threshold),
    ] {
        if let Some(t) = v.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(Failure::new(format!(
                "{flag}: {t} is not a percentage (>= 0)"
            )));
        }
    }
    let base = lem::compare::load(&a.base)?;
    let new = lem::compare::load(&a.new)?;
    let pairs = lem::compare::pair(&base, &new)?;
    let judge = Judge {
        margin_pct: a.threshold.unwrap_or(DEFAULT_MARGIN_PCT),
        noise_pct: a.noise_threshold.unwrap_or(DEFAULT_NOISE_PCT),
    };
    let comparisons = lem::compare::compare_all(&pairs, &a.metrics, judge)?;
    if comparisons.is_empty() {
        return Err(Failure::new(
            "compare: the inputs share no metric with a nonzero base".to_string(),
        ));
    }
    match a.format {
        Format::Json => ui.json_out(&serde_json::json!({ "comparisons": comparisons }))?,
        Format::Markdown => print_lines(&markdown(&comparisons, judge)),
        Format::Table => print_lines(&table(&comparisons, judge)),
    }
    let failed = a.threshold.is_some_and(|t| {
        comparisons
            .iter()
            .any(|c| c.verdict == Verdict::Regressed && c.change_pct > t)
    });
    Ok(u8::from(failed))
}

fn print_lines(lines: &[String]) {
    for l in lines {
        println!("{l}");
    }
}

fn num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.3}")
    } else if a >= 0.001 {
        format!("{x:.4}")
    } else {
        format!("{x:.3e}")
    }
}

fn ci(c: &Comparison) -> String {
    match c.ci_pct {
        Some([lo, hi]) => {
            let mark = if c.interval_from == Some(IntervalFrom::Uncertainty) {
                " †"
            } else {
                ""
            };
            format!("[{lo:+.1} %, {hi:+.1} %]{mark}")
        }
        None => "-".into(),
    }
}

fn p(c: &Comparison) -> String {
    c.p_value.map_or("-".into(), |p| {
        if p < 0.001 {
            "< 0.001".into()
        } else {
            format!("{p:.3}")
        }
    })
}

fn notes(cs: &[Comparison], judge: Judge) -> Vec<String> {
    let mut out = vec![format!(
        "95 % intervals of the change (Welch's t on cycles or samples); `no change`: the interval lies within ±{} %, or the change is significant but within the ±{} % noise threshold",
        judge.margin_pct, judge.noise_pct
    )];
    if cs
        .iter()
        .any(|c| c.interval_from == Some(IntervalFrom::Uncertainty))
    {
        out.push(
            "† one value on a side: the interval is the measurements' own uncertainty bounds, no p-value".into(),
        );
    }
    if cs.iter().any(|c| c.ci_pct.is_none()) {
        out.push("-: one value on a side and no bound for it: no interval, inconclusive".into());
    }
    out
}

fn table(cs: &[Comparison], judge: Judge) -> Vec<String> {
    let mut out = vec![format!(
        "{:<24} {:<40} {:>12} {:>12} {:>9} {:<26} {:>7}  verdict",
        "name", "metric", "base", "new", "change", "95 % CI", "p"
    )];
    for c in cs {
        out.push(format!(
            "{:<24} {:<40} {:>12} {:>12} {:>+8.1}% {:<26} {:>7}  {}",
            c.name,
            c.metric,
            num(c.base),
            num(c.new),
            c.change_pct,
            ci(c),
            p(c),
            c.verdict.as_str()
        ));
    }
    out.extend(notes(cs, judge));
    out
}

fn markdown(cs: &[Comparison], judge: Judge) -> Vec<String> {
    let mut out = vec![
        "| name | metric | base | new | change | 95 % CI | p | verdict |".to_string(),
        "| --- | --- | ---: | ---: | ---: | --- | ---: | --- |".to_string(),
    ];
    for c in cs {
        let verdict = match c.verdict {
            Verdict::Regressed => "**regressed**".to_string(),
            v => v.as_str().to_string(),
        };
        out.push(format!(
            "| {} | `{}` | {} | {} | {:+.1} % | {} | {} | {verdict} |",
            c.name,
            c.metric,
            num(c.base),
            num(c.new),
            c.change_pct,
            ci(c),
            p(c)
        ));
    }
    out.push(String::new());
    out.extend(notes(cs, judge).into_iter().map(|n| format!("_{n}_")));
    out
}
