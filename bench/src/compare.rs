//! `pinion-bench compare`: the latency-regression gate for CI.
//!
//! Each side (BASELINE, CURRENT) is a *run set*: a comma-separated list of
//! paths, each a run file or a directory whose `*.json` files are all run
//! files. One file is the one-element case; a directory is the usual CI
//! case (`baseline/` holds three runs, checked in). With several runs per
//! side every metric is the median of the runs, and the spread (min..max)
//! is printed beside it: single runs on shared machines are noisy, and a
//! median of three is not moved by one outlier.
//!
//! Metrics and the direction that counts as a regression:
//! - `throughput`: acknowledged messages per second; a decrease.
//! - `p50 p90 p99 p99.9 p99.99 max`: end-to-end latency when every run on
//!   both sides has it, otherwise publish latency; an increase.
//! - `publish.P` and `e2e.P` for P above: that latency explicitly.
//!
//! Exit codes, so CI can tell a slow build from a broken invocation:
//! - 0: no threshold crossed (a change exactly at the threshold passes);
//! - 1: at least one threshold crossed, each one named on stdout;
//! - 2: usage error: bad arguments, unknown metric, unreadable or non-run
//!   file, empty directory, an `e2e.*` threshold without end-to-end data,
//!   or workloads that differ (unless `--allow-different-workloads`).
//!
//! Differing workloads are an error by default: a gate that quietly compares
//! a 1 KiB run with a 100 B run passes or fails for the wrong reason. Only
//! the workload *settings* are compared; the `name` (a name or a file path)
//! may differ with a warning.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use crate::html::group_thousands;
use crate::latency::LatencySummary;
use crate::results::RunResult;

/// Exit code when a threshold is crossed.
const EXIT_REGRESSION: u8 = 1;
/// Exit code for usage errors (the same as clap's own).
const EXIT_USAGE: u8 = 2;

/// `kind` of the `--json` document.
pub const COMPARISON_KIND: &str = "pinion-bench-comparison";
/// Changes closer than this to a threshold (in percentage points) count as
/// equal to it: "exactly 10%" must not fail on floating-point rounding.
const THRESHOLD_EPSILON_PCT: f64 = 1e-9;

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Baseline runs: a run file, a directory of run files (every *.json in
    /// it), or a comma-separated list of either.
    #[arg(value_name = "BASELINE")]
    pub baseline: String,
    /// Current runs, in the same form as BASELINE.
    #[arg(value_name = "CURRENT")]
    pub current: String,
    /// Largest allowed regression, e.g. `p99=10%` or `throughput=5%` (the
    /// `%` is optional). Repeat for several metrics. Metrics: throughput,
    /// p50, p90, p99, p99.9, p99.99, max, and publish.P or e2e.P for each
    /// percentile P.
    #[arg(long = "max-regression", value_name = "METRIC=PCT", value_parser = parse_threshold)]
    pub max_regression: Vec<Threshold>,
    /// Also write the comparison as JSON to this file.
    #[arg(long, value_name = "OUT")]
    pub json: Option<PathBuf>,
    /// Compare runs whose workload settings differ (a warning instead of exit 2).
    #[arg(long)]
    pub allow_different_workloads: bool,
}

/// The statistic of a latency summary a metric reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statistic {
    P50,
    P90,
    P99,
    P999,
    P9999,
    Max,
}

impl Statistic {
    const ALL: [Statistic; 6] = [Self::P50, Self::P90, Self::P99, Self::P999, Self::P9999, Self::Max];

    fn name(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P99 => "p99",
            Self::P999 => "p99.9",
            Self::P9999 => "p99.99",
            Self::Max => "max",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "p50" => Self::P50,
            "p90" => Self::P90,
            "p99" => Self::P99,
            "p99.9" | "p999" => Self::P999,
            "p99.99" | "p9999" => Self::P9999,
            "max" => Self::Max,
            _ => return None,
        })
    }

    fn of(self, summary: &LatencySummary) -> u64 {
        match self {
            Self::P50 => summary.p50,
            Self::P90 => summary.p90,
            Self::P99 => summary.p99,
            Self::P999 => summary.p999,
            Self::P9999 => summary.p9999,
            Self::Max => summary.max,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latency {
    Publish,
    EndToEnd,
}

impl Latency {
    fn prefix(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::EndToEnd => "e2e",
        }
    }
}

/// A metric as the user names it; [`Wanted::Auto`] is resolved once the runs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Throughput,
    Auto(Statistic),
    Explicit(Latency, Statistic),
}

/// A metric a row of the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Throughput,
    Latency(Latency, Statistic),
}

impl Metric {
    fn name(self) -> String {
        match self {
            Self::Throughput => "throughput".into(),
            Self::Latency(latency, statistic) => format!("{}.{}", latency.prefix(), statistic.name()),
        }
    }

    fn higher_is_better(self) -> bool {
        matches!(self, Self::Throughput)
    }

    fn unit(self) -> &'static str {
        match self {
            Self::Throughput => "msgs/s",
            Self::Latency(..) => "us",
        }
    }

    /// The value in one run; `None` when the run lacks it (no end-to-end latency).
    fn of(self, run: &RunResult) -> Option<f64> {
        match self {
            Self::Throughput => Some(run.throughput.messages_per_sec),
            Self::Latency(Latency::Publish, statistic) => Some(statistic.of(&run.publish_latency_us) as f64),
            Self::Latency(Latency::EndToEnd, statistic) => {
                run.end_to_end_latency_us.as_ref().map(|summary| statistic.of(summary) as f64)
            }
        }
    }
}

/// One `--max-regression METRIC=PCT`.
#[derive(Debug, Clone)]
pub struct Threshold {
    /// As given on the command line, for messages.
    given: String,
    wanted: Wanted,
    percent: f64,
}

fn parse_threshold(text: &str) -> Result<Threshold, String> {
    let (metric, percent) =
        text.split_once('=').ok_or_else(|| format!("expected METRIC=PCT (e.g. p99=10%), got {text:?}"))?;
    let metric = metric.trim().to_ascii_lowercase();
    let wanted = if metric == "throughput" {
        Wanted::Throughput
    } else if let Some(statistic) = Statistic::parse(&metric) {
        Wanted::Auto(statistic)
    } else if let Some((prefix, statistic)) = metric.split_once('.').and_then(|(prefix, rest)| {
        let latency = match prefix {
            "publish" => Latency::Publish,
            "e2e" => Latency::EndToEnd,
            _ => return None,
        };
        Some((latency, Statistic::parse(rest)?))
    }) {
        Wanted::Explicit(prefix, statistic)
    } else {
        return Err(format!(
            "unknown metric {metric:?}; known: throughput, p50, p90, p99, p99.9, p99.99, max, \
             and publish.P or e2e.P for each percentile P (e.g. e2e.p99)"
        ));
    };
    let number = percent.trim().strip_suffix('%').unwrap_or(percent.trim()).trim();
    let percent: f64 = number
        .parse()
        .ok()
        .filter(|p: &f64| p.is_finite() && *p >= 0.0)
        .ok_or_else(|| format!("{text:?}: the threshold must be a percentage of at least 0, like 10% or 2.5"))?;
    Ok(Threshold { given: text.trim().to_string(), wanted, percent })
}

/// The runs of one side.
#[derive(Debug)]
struct RunSet {
    files: Vec<PathBuf>,
    runs: Vec<RunResult>,
}

impl RunSet {
    fn load(spec: &str, side: &str) -> Result<Self, crate::Error> {
        let mut files = Vec::new();
        for part in spec.split(',') {
            let part = part.trim();
            if part.is_empty() {
                return Err(format!("{side} {spec:?}: empty path in the comma-separated list").into());
            }
            let path = Path::new(part);
            let metadata = std::fs::metadata(path).map_err(|e| format!("{side}: cannot read {part}: {e}"))?;
            if metadata.is_dir() {
                let mut in_dir: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| format!("{side}: cannot list {part}: {e}"))?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|ext| ext == "json") && p.is_file())
                    .collect();
                if in_dir.is_empty() {
                    return Err(format!("{side}: directory {part} has no *.json run files").into());
                }
                in_dir.sort();
                files.extend(in_dir);
            } else {
                files.push(path.to_path_buf());
            }
        }
        let runs = files
            .iter()
            .map(|file| RunResult::read(file).map_err(|e| format!("{side}: {e}").into()))
            .collect::<Result<Vec<_>, crate::Error>>()?;
        Ok(Self { files, runs })
    }

    fn all_have_end_to_end(&self) -> bool {
        self.runs.iter().all(|run| run.end_to_end_latency_us.as_ref().is_some_and(|s| s.count > 0))
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        let count = self.runs.len();
        format!("{count} run{} ({})", if count == 1 { "" } else { "s" }, names.join(", "))
    }
}

/// Median and spread of one metric over the runs of a side.
#[derive(Debug, Clone, Serialize)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
    values: Vec<f64>,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        assert!(!values.is_empty(), "a run set holds at least one run");
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
        Self { median, min: values[0], max: values[n - 1], values }
    }
}

/// One row of the comparison (also the `--json` element).
#[derive(Debug, Serialize)]
struct Row {
    metric: String,
    unit: &'static str,
    higher_is_better: bool,
    baseline: Spread,
    current: Spread,
    /// (current - baseline) / baseline in percent; `None` when the baseline is 0 and the current is not.
    change_pct: Option<f64>,
    threshold_pct: Option<f64>,
    /// The `--max-regression` argument the threshold came from.
    threshold_given_as: Option<String>,
    regression: bool,
}

#[derive(Debug, Serialize)]
struct SideEcho {
    files: Vec<String>,
    workload: String,
    broker: String,
}

#[derive(Debug, Serialize)]
struct Comparison {
    kind: &'static str,
    baseline: SideEcho,
    current: SideEcho,
    /// What the bare percentiles (`p99`) measured: `e2e` or `publish`.
    latency_for_bare_percentiles: &'static str,
    rows: Vec<Row>,
    warnings: Vec<String>,
    passed: bool,
}

/// Runs `compare` and returns its exit code; errors are printed here.
pub fn main(args: CompareArgs) -> ExitCode {
    match run(&args) {
        Ok(comparison) if comparison.passed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(EXIT_REGRESSION),
        Err(e) => {
            eprintln!("pinion-bench compare: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(args: &CompareArgs) -> Result<Comparison, crate::Error> {
    let baseline = RunSet::load(&args.baseline, "baseline")?;
    let current = RunSet::load(&args.current, "current")?;
    let mut warnings = check_workloads(&baseline, &current, args.allow_different_workloads)?;
    warnings.extend(check_machines(&baseline, &current));

    let end_to_end = baseline.all_have_end_to_end() && current.all_have_end_to_end();
    let auto = if end_to_end { Latency::EndToEnd } else { Latency::Publish };
    let mut metrics = vec![Metric::Throughput];
    for latency in if end_to_end { &[Latency::EndToEnd, Latency::Publish][..] } else { &[Latency::Publish][..] } {
        metrics.extend(Statistic::ALL.map(|statistic| Metric::Latency(*latency, statistic)));
    }

    let mut thresholds: Vec<(Metric, &Threshold)> = Vec::new();
    for threshold in &args.max_regression {
        let metric = match threshold.wanted {
            Wanted::Throughput => Metric::Throughput,
            Wanted::Auto(statistic) => Metric::Latency(auto, statistic),
            Wanted::Explicit(Latency::EndToEnd, _) if !end_to_end => {
                return Err(format!(
                    "{}: not every run has end-to-end latency (runs without consumers); \
                     use publish.* or a bare percentile",
                    threshold.given
                )
                .into())
            }
            Wanted::Explicit(latency, statistic) => Metric::Latency(latency, statistic),
        };
        if let Some((_, earlier)) = thresholds.iter().find(|(m, _)| *m == metric) {
            return Err(format!(
                "two thresholds for {}: {} and {}; give one",
                metric.name(),
                earlier.given,
                threshold.given
            )
            .into());
        }
        thresholds.push((metric, threshold));
    }

    let rows: Vec<Row> = metrics
        .iter()
        .map(|metric| {
            let values = |side: &RunSet| {
                Spread::of(side.runs.iter().map(|run| metric.of(run).expect("metric present in every run")).collect())
            };
            let (baseline_spread, current_spread) = (values(&baseline), values(&current));
            let change_pct = change_pct(baseline_spread.median, current_spread.median);
            let threshold = thresholds.iter().find(|(m, _)| m == metric).map(|(_, t)| *t);
            // How much worse, in percent: a throughput decrease or a latency increase.
            let worse_pct = match change_pct {
                Some(change) if metric.higher_is_better() => -change,
                Some(change) => change,
                None if metric.higher_is_better() => f64::NEG_INFINITY,
                None => f64::INFINITY,
            };
            let regression = threshold.is_some_and(|t| worse_pct > t.percent + THRESHOLD_EPSILON_PCT);
            Row {
                metric: metric.name(),
                unit: metric.unit(),
                higher_is_better: metric.higher_is_better(),
                baseline: baseline_spread,
                current: current_spread,
                change_pct,
                threshold_pct: threshold.map(|t| t.percent),
                threshold_given_as: threshold.map(|t| t.given.clone()),
                regression,
            }
        })
        .collect();

    let echo = |side: &RunSet| SideEcho {
        files: side.files.iter().map(|f| f.display().to_string()).collect(),
        workload: side.runs[0].workload.name.clone(),
        broker: format!("{} ({})", side.runs[0].broker.bootstrap, side.runs[0].broker.version),
    };
    let passed = rows.iter().all(|row| !row.regression);
    let comparison = Comparison {
        kind: COMPARISON_KIND,
        baseline: echo(&baseline),
        current: echo(&current),
        latency_for_bare_percentiles: auto.prefix(),
        rows,
        warnings,
        passed,
    };
    for warning in &comparison.warnings {
        eprintln!("pinion-bench compare: warning: {warning}");
    }
    print!("{}", render_text(&comparison, &baseline, &current, thresholds.len()));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&comparison)?;
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(comparison)
}

fn change_pct(baseline: f64, current: f64) -> Option<f64> {
    if baseline == 0.0 {
        (current == 0.0).then_some(0.0)
    } else {
        Some((current - baseline) / baseline * 100.0)
    }
}

/// Workload settings must match (except `name`); returns warnings.
fn check_workloads(baseline: &RunSet, current: &RunSet, allow: bool) -> Result<Vec<String>, crate::Error> {
    let settings = |run: &RunResult| {
        let mut value = serde_json::to_value(&run.workload).expect("a workload serializes");
        if let Some(object) = value.as_object_mut() {
            object.remove("name");
        }
        value
    };
    let reference_file = &baseline.files[0];
    let reference = settings(&baseline.runs[0]);
    let reference_name = &baseline.runs[0].workload.name;
    let mut differences = Vec::new();
    let mut warnings = Vec::new();
    for (file, run) in baseline.files.iter().zip(&baseline.runs).chain(current.files.iter().zip(&current.runs)) {
        let other = settings(run);
        if let (Some(expected), Some(found)) = (reference.as_object(), other.as_object()) {
            for (field, value) in expected {
                let found_value = found.get(field).unwrap_or(&serde_json::Value::Null);
                if found_value != value {
                    differences.push(format!(
                        "{field} is {value} in {} but {found_value} in {}",
                        reference_file.display(),
                        file.display()
                    ));
                }
            }
        }
        if &run.workload.name != reference_name {
            warnings.push(format!(
                "workload name {:?} in {} differs from {:?} in {} (the settings are the same)",
                run.workload.name,
                file.display(),
                reference_name,
                reference_file.display()
            ));
        }
    }
    if differences.is_empty() {
        return Ok(warnings);
    }
    let listed = differences.join("; ");
    if allow {
        warnings.push(format!("workloads differ: {listed}"));
        Ok(warnings)
    } else {
        Err(format!(
            "workloads differ, so the runs do not measure the same thing: {listed} \
             (pass --allow-different-workloads to compare anyway)"
        )
        .into())
    }
}

/// Runs from different machines compare poorly; say so, do not refuse.
fn check_machines(baseline: &RunSet, current: &RunSet) -> Vec<String> {
    let describe = |run: &RunResult| format!("{} cores, {}", run.machine.cores, run.machine.cpu_model);
    let reference = describe(&baseline.runs[0]);
    let mut others: Vec<String> =
        baseline.runs.iter().chain(&current.runs).map(describe).filter(|d| *d != reference).collect();
    others.sort();
    others.dedup();
    others
        .into_iter()
        .map(|other| {
            format!("runs come from different machines ({reference} and {other}): differences may be the machine's")
        })
        .collect()
}

fn format_value(value: f64, unit: &str) -> String {
    let text = if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
        group_thousands(value as u64)
    } else if value.is_finite() && value >= 0.0 && unit == "us" {
        // A median of two latencies can end in .5.
        format!("{}.{}", group_thousands(value.trunc() as u64), ((value.fract() * 10.0).round() as u64).min(9))
    } else if value.is_finite() && value >= 0.0 {
        group_thousands(value.round() as u64)
    } else {
        format!("{value}")
    };
    format!("{text} {unit}")
}

fn format_side(spread: &Spread, unit: &str) -> String {
    if spread.values.len() == 1 {
        format_value(spread.median, unit)
    } else {
        format!(
            "{} [{}..{}]",
            format_value(spread.median, unit),
            format_value(spread.min, "").trim_end(),
            format_value(spread.max, "").trim_end()
        )
    }
}

fn format_change(change: Option<f64>) -> String {
    match change {
        Some(change) => format!("{change:+.1}%"),
        None => "+inf%".into(),
    }
}

fn render_text(comparison: &Comparison, baseline: &RunSet, current: &RunSet, threshold_count: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "baseline: {}", baseline.describe());
    let _ = writeln!(out, "          workload {}, broker {}", comparison.baseline.workload, comparison.baseline.broker);
    let _ = writeln!(out, "current:  {}", current.describe());
    let _ = writeln!(out, "          workload {}, broker {}", comparison.current.workload, comparison.current.broker);
    let several = baseline.runs.len() > 1 || current.runs.len() > 1;
    if several {
        let _ = writeln!(out, "values are medians over the runs of each side, [min..max] beside them");
    }
    let _ = writeln!(
        out,
        "bare percentiles (p99, ...) compare {} latency",
        if comparison.latency_for_bare_percentiles == "e2e" { "end-to-end" } else { "publish" }
    );
    out.push('\n');

    let header = ["metric", "baseline", "current", "change", "threshold", "verdict"].map(String::from);
    let mut table = vec![header];
    for row in &comparison.rows {
        table.push([
            row.metric.clone(),
            format_side(&row.baseline, row.unit),
            format_side(&row.current, row.unit),
            format_change(row.change_pct),
            row.threshold_pct
                .map(|t| format!("{}{t}%", if row.higher_is_better { "-" } else { "+" }))
                .unwrap_or_default(),
            match (row.threshold_pct, row.regression) {
                (None, _) => "-".into(),
                (Some(_), false) => "ok".into(),
                (Some(_), true) => "REGRESSION".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..6).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &table {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // The metric column is left-aligned, numbers right-aligned.
            if c == 0 || c == 5 {
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(line, "{}{cell}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out.push('\n');

    let regressions: Vec<&Row> = comparison.rows.iter().filter(|row| row.regression).collect();
    if regressions.is_empty() {
        let _ = writeln!(out, "PASSED: no threshold crossed ({threshold_count} checked)");
    } else {
        let _ = writeln!(
            out,
            "FAILED: {} threshold{} crossed:",
            regressions.len(),
            if regressions.len() == 1 { "" } else { "s" }
        );
        for row in regressions {
            let given = row.threshold_given_as.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "  {} ({given}): {} -> {} ({}), allowed {}{}%",
                row.metric,
                format_value(row.baseline.median, row.unit),
                format_value(row.current.median, row.unit),
                format_change(row.change_pct),
                if row.higher_is_better { "-" } else { "+" },
                row.threshold_pct.unwrap_or_default()
            );
        }
    }
    if !several {
        let _ = writeln!(
            out,
            "note: single runs are noisy; give several runs per side (a directory or a comma list) to compare medians"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_with_or_without_percent_sign() {
        let t = parse_threshold("p99=10%").unwrap();
        assert_eq!((t.wanted, t.percent), (Wanted::Auto(Statistic::P99), 10.0));
        let t = parse_threshold("throughput=2.5").unwrap();
        assert_eq!((t.wanted, t.percent), (Wanted::Throughput, 2.5));
        let t = parse_threshold("e2e.p99.9=0%").unwrap();
        assert_eq!(t.wanted, Wanted::Explicit(Latency::EndToEnd, Statistic::P999));
        let t = parse_threshold("publish.p9999=1").unwrap();
        assert_eq!(t.wanted, Wanted::Explicit(Latency::Publish, Statistic::P9999));
    }

    #[test]
    fn malformed_thresholds_are_refused() {
        for bad in ["p99", "p99=abc", "p99=-5%", "p98=10%", "kafka.p99=1", "p99=inf", "=10"] {
            assert!(parse_threshold(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(Spread::of(vec![3.0, 1.0, 100.0]).median, 3.0);
        assert_eq!(Spread::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        let spread = Spread::of(vec![5.0]);
        assert_eq!((spread.min, spread.median, spread.max), (5.0, 5.0, 5.0));
    }

    #[test]
    fn change_from_zero() {
        assert_eq!(change_pct(0.0, 0.0), Some(0.0));
        assert_eq!(change_pct(0.0, 1.0), None);
        assert_eq!(change_pct(200.0, 300.0), Some(50.0));
    }
}
