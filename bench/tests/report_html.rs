//! `pinion-bench report RUN.json --html OUT.html`: the report is one
//! well-formed, self-contained document whose numbers are the run's, whose
//! curves come from the histograms, and in which no string from the run
//! file becomes markup.

mod support;

// `results.rs` (compiled into `support`) names these through `crate::`.
#[allow(unused_imports)]
use support::{latency, machine, Error};

use quick_xml::events::Event;
use support::{bench, latencies, run_result, shown, write};

/// Parses `html` as XML (the report is XHTML-compatible by design) and
/// returns every element with its attributes; fails on any malformation.
fn elements(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut reader = quick_xml::Reader::from_str(html);
    reader.config_mut().check_end_names = true;
    let mut open: Vec<String> = Vec::new();
    let mut found = Vec::new();
    loop {
        let event =
            reader.read_event().unwrap_or_else(|e| panic!("not well-formed at {}: {e}", reader.buffer_position()));
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
                let attributes = start
                    .attributes()
                    .map(|a| {
                        let a = a.expect("well-formed attribute");
                        (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), a.unescape_value().unwrap().into_owned())
                    })
                    .collect();
                if matches!(event, Event::Start(_)) {
                    open.push(name.clone());
                }
                found.push((name, attributes));
            }
            Event::End(end) => {
                let name = String::from_utf8(end.name().as_ref().to_vec()).unwrap();
                assert_eq!(open.pop().as_deref(), Some(name.as_str()), "mismatched </{name}>");
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(open.is_empty(), "unclosed elements at the end: {open:?}");
    found
}

fn attribute<'a>(element: &'a (String, Vec<(String, String)>), name: &str) -> Option<&'a str> {
    element.1.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
}

/// (x, y) pixel points of an SVG path written as `M x,y L x,y ...`.
fn path_points(d: &str) -> Vec<(f64, f64)> {
    d.split(['M', 'L'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap_or_else(|| panic!("point {p:?}"));
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

fn render(run: &support::results::RunResult) -> String {
    let dir = tempfile::tempdir().unwrap();
    let json = write(dir.path(), "run.json", run);
    let html = dir.path().join("report.html");
    let output = bench(["report".as_ref(), json.as_os_str(), "--html".as_ref(), html.as_os_str()]);
    assert_eq!(output.status.code(), Some(0), "{}", shown(&output));
    std::fs::read_to_string(&html).unwrap()
}

#[test]
fn report_is_well_formed_with_percentile_curves_from_the_histograms() {
    let publish = latencies(1, 1);
    let end_to_end = latencies(2, 1);
    let html = render(&run_result("latency", 10_000.0, &publish, Some(&end_to_end)));
    assert!(html.starts_with("<!DOCTYPE html>"));
    let elements = elements(&html);
    for (id, histogram) in [("curve-publish", &publish), ("curve-e2e", &end_to_end)] {
        let path = elements
            .iter()
            .find(|e| e.0 == "path" && attribute(e, "id") == Some(id))
            .unwrap_or_else(|| panic!("no <path id={id:?}>"));
        let points = path_points(attribute(path, "d").expect("a d attribute"));
        assert!(points.len() > 100, "{id}: a curve, not a few points: {}", points.len());
        // Left to right in percentile, and latency never falls (SVG y grows downwards).
        assert!(points.windows(2).all(|w| w[1].0 > w[0].0 && w[1].1 <= w[0].1), "{id}: not monotonic: {points:?}");
        assert!(points.first().unwrap().1 > points.last().unwrap().1, "{id}: flat curve");
        // The dots at the percentiles carry the histogram's values.
        let p99 = histogram.value_at_quantile(0.99);
        let name = if id == "curve-publish" { "publish" } else { "end-to-end" };
        let p99 = if p99 >= 1000 { format!("{},{:03}", p99 / 1000, p99 % 1000) } else { p99.to_string() };
        assert!(html.contains(&format!("<title>{name} p99: {p99} µs</title>")), "{id}: no p99 marker of {p99}");
    }
    // End-to-end latency is twice publish, everywhere: its curve lies above.
    let curve = |id: &str| {
        let path = elements.iter().find(|e| e.0 == "path" && attribute(e, "id") == Some(id)).unwrap();
        path_points(attribute(path, "d").unwrap())
    };
    let (publish_points, e2e_points) = (curve("curve-publish"), curve("curve-e2e"));
    assert!(publish_points.iter().zip(&e2e_points).all(|(p, e)| e.1 < p.1), "e2e curve must lie above publish");
    for id in ["percentiles", "throughput-over-time", "p99-over-time"] {
        assert!(elements.iter().any(|e| e.0 == "svg" && attribute(e, "id") == Some(id)), "no <svg id={id:?}>");
    }
    for id in ["rate-sent", "rate-acked", "rate-consumed", "p99-publish", "p99-e2e"] {
        assert!(elements.iter().any(|e| e.0 == "path" && attribute(e, "id") == Some(id)), "no <path id={id:?}>");
    }
    // The warm-up (the first two seconds) is shaded.
    assert!(elements.iter().any(|e| e.0 == "rect" && attribute(e, "class") == Some("band")), "no warm-up band");
}

#[test]
fn summary_table_shows_the_numbers_of_the_run() {
    let run = run_result("latency", 12_345.0, &latencies(1, 1), Some(&latencies(2, 1)));
    let html = render(&run);
    elements(&html);
    let cells = [
        ("acked-per-sec", "12,345"),
        ("bytes-per-sec", "12.64"),
        ("acked", "123,450"),
        ("publish-p50", "500"),
        ("publish-p90", "900"),
        ("publish-p99", "990"),
        ("publish-p999", "999"),
        ("publish-p9999", "1,000"),
        ("publish-max", "1,000"),
        ("publish-count", "1,000"),
        ("e2e-p50", "1,000"),
        ("e2e-p99", "1,980"),
        ("e2e-max", "2,000"),
    ];
    for (id, value) in cells {
        assert!(html.contains(&format!("id=\"{id}\">{value}</td>")), "cell {id} should read {value}");
    }
    assert!(html.contains("127.0.0.1:9092") && html.contains("ApiVersions v3, 42 apis"));
    assert!(html.contains("Test CPU @ 3.0GHz") && html.contains("6.1.0-test"));
}

#[test]
fn strings_from_the_run_file_are_escaped_and_nothing_is_fetched() {
    let mut run = run_result("<script>alert(1)</script>", 10_000.0, &latencies(1, 1), None);
    run.broker.version = "\"><img src=x onerror=alert(2)>".into();
    run.machine.cpu_model = "A & B <cpu>".into();
    run.errors.produce.insert("<i>NOT_LEADER</i>".into(), 3);
    let html = render(&run);
    let elements = elements(&html);
    assert!(!html.contains("<script"), "a workload name became a script element");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!elements.iter().any(|e| e.0 == "img" || e.0 == "script" || e.0 == "i"), "markup injected");
    assert!(html.contains("A &amp; B &lt;cpu&gt;"));
    assert!(html.contains("&lt;i&gt;NOT_LEADER&lt;/i&gt;"));
    // Self-contained: the only URL is the SVG namespace name, which is never fetched.
    let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for external in ["http:", "https:", "//cdn", "url(", "@import", "<link"] {
        assert!(!without_namespace.contains(external), "external reference {external:?} in the report");
    }
    assert!(!elements.iter().any(|e| e.1.iter().any(|(key, _)| key == "src" || key == "href")), "src/href attribute");
    // Publish-only run: no end-to-end curve, and no row for it.
    assert!(!html.contains("curve-e2e") && !html.contains("e2e-p99"));
}

#[test]
fn consumers_that_received_nothing_show_as_no_samples_not_as_zero_latency() {
    let mut run = run_result("latency", 10_000.0, &latencies(1, 1), Some(&support::latency::histogram()));
    // The last second had no acknowledgements: it has no p99 to draw.
    run.series.last_mut().unwrap().acked_per_sec = 0.0;
    run.series.last_mut().unwrap().publish_p99_us = 0;
    let html = render(&run);
    let elements = elements(&html);
    assert!(html.contains("id=\"e2e-none\">no samples"), "the table says there were no end-to-end samples");
    assert!(!html.contains("id=\"e2e-p99\""), "no zero row");
    for id in ["curve-e2e", "p99-e2e"] {
        assert!(!elements.iter().any(|e| attribute(e, "id") == Some(id)), "{id} drawn from no samples");
    }
    let p99 = elements.iter().find(|e| attribute(e, "id") == Some("p99-publish")).expect("publish p99 over time");
    let points = path_points(attribute(p99, "d").unwrap());
    assert_eq!(points.len(), run.series.len() - 1, "the second without acknowledgements is skipped");
}

#[test]
fn report_of_a_broken_run_file_fails_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = run_result("latency", 10_000.0, &latencies(1, 1), None);
    run.histograms.publish_latency_us = "not a histogram".into();
    let json = write(dir.path(), "run.json", &run);
    let html = dir.path().join("report.html");
    let output = bench(["report".as_ref(), json.as_os_str(), "--html".as_ref(), html.as_os_str()]);
    assert_ne!(output.status.code(), Some(0), "{}", shown(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("publish_latency_us"), "{}", shown(&output));
    assert!(!html.exists(), "no report is written from a broken run file");

    let missing = dir.path().join("missing.json");
    let output = bench(["report".as_ref(), missing.as_os_str(), "--html".as_ref(), html.as_os_str()]);
    assert_ne!(output.status.code(), Some(0), "{}", shown(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"), "{}", shown(&output));
}
