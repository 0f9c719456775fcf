//! The HTML report of one run: a single self-contained file (inline SVG and
//! CSS, no scripts, fonts or links) that opens offline in any browser and
//! survives being attached to a CI job as an artifact.
//!
//! Contents, top to bottom: the workload, broker and machine; a summary
//! table (throughput and the publish and end-to-end percentiles, exactly the
//! numbers of the run file); the latency-by-percentile curve, drawn from the
//! decoded HDR histograms rather than from the summary; throughput and p99
//! over time, with the warm-up shaded; errors; every workload setting.
//!
//! Every string that comes from the run file goes through [`escape`]: a run
//! file is input, and a workload or broker name must never become markup.
//! The document is also well-formed XML (void elements self-closed), so tests
//! and other tools can parse it with an XML parser.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use crate::chart::{Axis, Band, LineChart, Series, BLUE, GREEN, ORANGE, VERMILLION};
use crate::histogram_codec;
use crate::latency::LatencySummary;
use crate::results::RunResult;

/// The percentile curve runs from 0% to 99.999%: five nines.
const NINES_MAX: f64 = 5.0;
/// Points per nine on the percentile curve: smooth at 820 px, small in the file.
const CURVE_POINTS_PER_NINE: usize = 40;

/// `pinion-bench report RUN.json --html OUT.html`: renders an existing run file.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A run file written by `pinion-bench run --json`.
    #[arg(value_name = "RUN.json")]
    pub run: PathBuf,
    /// Where to write the HTML report.
    #[arg(long, value_name = "OUT.html")]
    pub html: PathBuf,
}

pub fn run(args: ReportArgs) -> Result<(), crate::Error> {
    let result = RunResult::read(&args.run)?;
    write_report(&result, &args.html)?;
    println!("wrote {}", args.html.display());
    Ok(())
}

/// Writes the report of `result` to `path`.
pub fn write_report(result: &RunResult, path: &Path) -> Result<(), crate::Error> {
    let html = render(result)?;
    std::fs::write(path, html).map_err(|e| format!("cannot write the report {}: {e}", path.display()))?;
    Ok(())
}

/// Escapes text for HTML and XML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 and are never meaningful here.
            c if c.is_control() && c != '\n' && c != '\t' => escaped.push('\u{fffd}'),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The report as one HTML document.
pub fn render(result: &RunResult) -> Result<String, crate::Error> {
    let publish = histogram_codec::decode(&result.histograms.publish_latency_us, "publish_latency_us")?;
    // A workload with consumers that consumed nothing has an empty end-to-end
    // histogram: drawn as absent, and said so in the table, never as zeros.
    let end_to_end = match &result.histograms.end_to_end_latency_us {
        Some(text) => Some(histogram_codec::decode(text, "end_to_end_latency_us")?).filter(|h| !h.is_empty()),
        None => None,
    };
    let workload = &result.workload;
    let title = format!("pinion-bench: {} against {}", workload.name, result.broker.bootstrap);

    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n");
    let _ = writeln!(html, "<title>{}</title>", escape(&title));
    html.push_str(STYLE);
    html.push_str("</head>\n<body>\n");
    let _ = writeln!(html, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        html,
        "<p class=\"facts\">Broker <b>{}</b> ({}). Measured for {} s after a {} s warm-up, starting {}, on {} cores ({}), kernel {}; pinion-bench {}.</p>",
        escape(&result.broker.bootstrap),
        escape(&result.broker.version),
        format_decimal(result.measured_secs),
        format_decimal(result.warmup_secs),
        escape(&result.machine.date),
        result.machine.cores,
        escape(&result.machine.cpu_model),
        escape(&result.machine.kernel),
        escape(&result.tool_version),
    );

    html.push_str("<h2>Summary</h2>\n");
    write_throughput_table(&mut html, result);
    write_latency_table(&mut html, result);

    html.push_str("<h2>Latency by percentile</h2>\n");
    html.push_str(
        "<p class=\"note\">From the full HDR histograms of the measured window, coordinated-omission corrected \
         (latency counts from each message's intended send time). Hover a dot for its value.</p>\n",
    );
    html.push_str(&percentile_chart(&publish, end_to_end.as_ref()).to_svg());
    html.push('\n');

    html.push_str("<h2>Throughput over time</h2>\n");
    html.push_str(&throughput_chart(result).to_svg());
    html.push('\n');
    html.push_str("<h2>p99 latency over time</h2>\n");
    html.push_str(&p99_chart(result).to_svg());
    html.push('\n');

    write_errors(&mut html, result);
    write_settings(&mut html, result);
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

const STYLE: &str = "<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 880px; color: #222; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.facts, .note { color: #555; }
svg { display: block; margin: 0.5em 0; max-width: 100%; height: auto; }
</style>
";

fn write_throughput_table(html: &mut String, result: &RunResult) {
    let throughput = &result.throughput;
    html.push_str("<table id=\"throughput\">\n");
    let mut row = |id: &str, name: &str, value: String| {
        let _ = writeln!(html, "<tr><th>{name}</th><td class=\"num\" id=\"{id}\">{}</td></tr>", escape(&value));
    };
    row("acked-per-sec", "acknowledged msgs/s", format_rate(throughput.messages_per_sec));
    row("bytes-per-sec", "acknowledged MB/s", format!("{:.2}", throughput.bytes_per_sec / 1e6));
    row("consumed-per-sec", "consumed msgs/s", format_rate(throughput.consumed_messages_per_sec));
    row("sent", "messages sent", group_thousands(throughput.sent_messages));
    row("acked", "messages acknowledged", group_thousands(throughput.acked_messages));
    row("consumed", "messages consumed", group_thousands(throughput.consumed_messages));
    row("backlog", "backlog at the end (not sent in time)", group_thousands(throughput.backlog_messages));
    html.push_str("</table>\n");
}

fn write_latency_table(html: &mut String, result: &RunResult) {
    html.push_str("<table id=\"latency\">\n<tr><th>latency (µs)</th>");
    for column in ["p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "samples"] {
        let _ = write!(html, "<th class=\"num\">{column}</th>");
    }
    html.push_str("</tr>\n");
    let mut row = |id: &str, name: &str, summary: &LatencySummary| {
        let _ = write!(html, "<tr><th>{name}</th>");
        let cells = [
            ("p50", group_thousands(summary.p50)),
            ("p90", group_thousands(summary.p90)),
            ("p99", group_thousands(summary.p99)),
            ("p999", group_thousands(summary.p999)),
            ("p9999", group_thousands(summary.p9999)),
            ("max", group_thousands(summary.max)),
            ("mean", group_thousands(summary.mean.round() as u64)),
            ("count", group_thousands(summary.count)),
        ];
        for (cell, value) in cells {
            let _ = write!(html, "<td class=\"num\" id=\"{id}-{cell}\">{value}</td>");
        }
        html.push_str("</tr>\n");
    };
    row("publish", "publish (send to ack)", &result.publish_latency_us);
    match &result.end_to_end_latency_us {
        Some(end_to_end) if end_to_end.count > 0 => row("e2e", "end-to-end (send to consume)", end_to_end),
        Some(_) => html.push_str(
            "<tr><th>end-to-end (send to consume)</th><td colspan=\"8\" id=\"e2e-none\">no samples: \
             no consumer received a message</td></tr>\n",
        ),
        None => {}
    }
    html.push_str("</table>\n");
}

/// Latency against "nines": x = log10(1 / (1 - q)), so 90% sits at 1, 99% at 2.
fn percentile_chart(publish: &Histogram<u64>, end_to_end: Option<&Histogram<u64>>) -> LineChart {
    let mut series = vec![percentile_series("curve-publish", "publish", BLUE, publish)];
    if let Some(end_to_end) = end_to_end {
        series.push(percentile_series("curve-e2e", "end-to-end", ORANGE, end_to_end));
    }
    let present = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let low = present().fold(f64::INFINITY, f64::min);
    let high = present().fold(0.0, f64::max);
    let x_ticks = [(0.0, "0%"), (2f64.log10(), "50%"), (1.0, "90%"), (2.0, "99%"), (3.0, "99.9%")]
        .into_iter()
        .chain([(4.0, "99.99%"), (5.0, "99.999%")])
        .map(|(x, label)| (x, label.to_string()))
        .collect();
    LineChart {
        id: "percentiles".into(),
        title: "Latency by percentile".into(),
        x: Axis {
            label: "percentile".into(),
            scale: crate::chart::Scale::Linear,
            min: 0.0,
            max: NINES_MAX,
            ticks: x_ticks,
        },
        y: Axis::log10("latency (log scale)", low, high, format_us),
        series,
        bands: Vec::new(),
    }
}

fn percentile_series(id: &str, name: &str, colour: &'static str, histogram: &Histogram<u64>) -> Series {
    let mut points = Vec::new();
    let mut markers = Vec::new();
    if !histogram.is_empty() {
        let steps = CURVE_POINTS_PER_NINE * NINES_MAX as usize;
        for i in 0..=steps {
            let nines = NINES_MAX * i as f64 / steps as f64;
            let quantile = 1.0 - 10f64.powf(-nines);
            points.push((nines, histogram.value_at_quantile(quantile) as f64));
        }
        for (label, quantile) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("p99.99", 0.9999)] {
            let value = histogram.value_at_quantile(quantile);
            let nines = -(1.0f64 - quantile).log10();
            markers.push((nines, value as f64, format!("{name} {label}: {} µs", group_thousands(value))));
        }
    }
    Series { id: id.into(), name: name.into(), colour, points, markers }
}

fn warmup_band(result: &RunResult) -> Vec<Band> {
    let warmup_end = result.series.iter().filter(|p| p.warmup).map(|p| p.t_secs).fold(0.0, f64::max);
    if warmup_end > 0.0 {
        vec![Band { from: 0.0, to: warmup_end, label: "warm-up".into() }]
    } else {
        Vec::new()
    }
}

fn time_axis(result: &RunResult) -> Axis {
    let end = result.series.iter().map(|p| p.t_secs).fold(0.0, f64::max);
    Axis::linear_from_zero("seconds since start", end, format_plain)
}

fn throughput_chart(result: &RunResult) -> LineChart {
    let points = |value: fn(&crate::results::SeriesPoint) -> f64| -> Vec<(f64, f64)> {
        result.series.iter().map(|p| (p.t_secs, value(p))).collect()
    };
    let mut series = vec![
        Series {
            id: "rate-sent".into(),
            name: "sent".into(),
            colour: BLUE,
            points: points(|p| p.sent_per_sec),
            markers: vec![],
        },
        Series {
            id: "rate-acked".into(),
            name: "acknowledged".into(),
            colour: GREEN,
            points: points(|p| p.acked_per_sec),
            markers: vec![],
        },
    ];
    if result.workload.consumers > 0 || result.series.iter().any(|p| p.consumed_per_sec > 0.0) {
        series.push(Series {
            id: "rate-consumed".into(),
            name: "consumed".into(),
            colour: ORANGE,
            points: points(|p| p.consumed_per_sec),
            markers: vec![],
        });
    }
    let high = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    LineChart {
        id: "throughput-over-time".into(),
        title: "Messages per second".into(),
        x: time_axis(result),
        y: Axis::linear_from_zero("messages / s", high, format_rate_short),
        series,
        bands: warmup_band(result),
    }
}

fn p99_chart(result: &RunResult) -> LineChart {
    let mut series = vec![Series {
        id: "p99-publish".into(),
        name: "publish p99".into(),
        colour: BLUE,
        // A second without acknowledgements has no p99 (not a p99 of 0): skipped.
        points: result
            .series
            .iter()
            .filter(|p| p.acked_per_sec > 0.0)
            .map(|p| (p.t_secs, p.publish_p99_us as f64))
            .collect(),
        markers: vec![],
    }];
    if result.end_to_end_latency_us.is_some_and(|s| s.count > 0) {
        series.push(Series {
            id: "p99-e2e".into(),
            name: "end-to-end p99".into(),
            colour: VERMILLION,
            points: result
                .series
                .iter()
                .filter(|p| p.consumed_per_sec > 0.0)
                .map(|p| (p.t_secs, p.end_to_end_p99_us as f64))
                .collect(),
            markers: vec![],
        });
    }
    let high = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    LineChart {
        id: "p99-over-time".into(),
        title: "p99 latency per second".into(),
        x: time_axis(result),
        y: Axis::linear_from_zero("latency", high, format_us),
        series,
        bands: warmup_band(result),
    }
}

fn write_errors(html: &mut String, result: &RunResult) {
    let errors = &result.errors;
    html.push_str("<h2>Errors</h2>\n");
    if errors.produce.is_empty() && errors.fetch.is_empty() && errors.connection == 0 {
        html.push_str("<p id=\"errors\">None.</p>\n");
        return;
    }
    html.push_str("<table id=\"errors\">\n<tr><th>where</th><th>error</th><th class=\"num\">count</th></tr>\n");
    let lists = [("produce", &errors.produce), ("fetch", &errors.fetch)];
    for (place, counts) in lists {
        for (code, count) in counts {
            let _ = writeln!(
                html,
                "<tr><td>{place}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                escape(code),
                group_thousands(*count)
            );
        }
    }
    if errors.connection > 0 {
        let _ = writeln!(
            html,
            "<tr><td>connection</td><td>lost or refused</td><td class=\"num\">{}</td></tr>",
            group_thousands(errors.connection)
        );
    }
    html.push_str("</table>\n");
}

fn write_settings(html: &mut String, result: &RunResult) {
    let w = &result.workload;
    let m = &result.machine;
    let rate = match w.rate_msgs_per_sec {
        Some(rate) => format!("{} msgs/s", group_thousands(rate)),
        None => "max rate".into(),
    };
    let acks = match w.acks {
        -1 => "all".to_string(),
        other => other.to_string(),
    };
    let rows = [
        ("workload", w.name.clone()),
        ("topics × partitions", format!("{} × {}", w.topics, w.partitions_per_topic)),
        ("message size", format!("{} bytes, {} payload (seed {})", w.message_size_bytes, w.payload, w.payload_seed)),
        ("keys", w.keys.clone()),
        ("producers / consumers / groups", format!("{} / {} / {}", w.producers, w.consumers, w.consumer_groups)),
        ("compression", w.compression.clone()),
        ("acks", acks),
        ("linger / batch size", format!("{} ms / {} bytes", w.linger_ms, w.batch_size_bytes)),
        ("target rate", rate),
        ("warm-up / duration", format!("{} s / {} s", w.warmup_secs, w.duration_secs)),
        ("broker", format!("{} ({})", result.broker.bootstrap, result.broker.version)),
        (
            "machine",
            format!(
                "{} cores, {}, {:.1} GiB memory",
                m.cores,
                m.cpu_model,
                m.memory_bytes as f64 / (1u64 << 30) as f64
            ),
        ),
        ("kernel / file system", format!("{} / {}", m.kernel, m.filesystem)),
        (
            "load average at start",
            format!("{:.2} {:.2} {:.2}", m.load_average[0], m.load_average[1], m.load_average[2]),
        ),
        ("run date", m.date.clone()),
        ("pinion-bench", result.tool_version.clone()),
    ];
    html.push_str("<h2>Settings</h2>\n<table id=\"settings\">\n");
    for (name, value) in rows {
        let _ = writeln!(html, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
    }
    html.push_str("</table>\n");
}

/// `1234567` → `1,234,567`.
pub fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A rate rounded to whole units, thousands grouped.
pub fn format_rate(value: f64) -> String {
    if value.is_finite() && value >= 0.0 {
        group_thousands(value.round() as u64)
    } else {
        format!("{value}")
    }
}

fn format_rate_short(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", format_decimal(value / 1e6))
    } else if value >= 1e3 {
        format!("{}k", format_decimal(value / 1e3))
    } else {
        format_decimal(value)
    }
}

/// Microseconds as a short label in the natural unit: `500 µs`, `2 ms`, `1.5 s`.
pub fn format_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", format_decimal(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", format_decimal(us / 1e3))
    } else {
        format!("{} µs", format_decimal(us))
    }
}

fn format_plain(value: f64) -> String {
    format_decimal(value)
}

/// At most three decimals, trailing zeros dropped: `2`, `2.5`, `0.125`.
fn format_decimal(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b"), "a\u{fffd}b");
    }

    #[test]
    fn numbers_are_grouped_and_units_chosen() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(format_us(500.0), "500 µs");
        assert_eq!(format_us(2_000.0), "2 ms");
        assert_eq!(format_us(1_500_000.0), "1.5 s");
        assert_eq!(format_rate(12_345.6), "12,346");
    }
}
