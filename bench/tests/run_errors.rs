//! `pinion-bench run` fails with one clear message and a non-zero exit,
//! within a bounded time, when the broker cannot be reached, cannot create
//! the topic, rejects every produce request, or stops answering.

mod broker_double;

// `results.rs` (compiled into `broker_double`) names these through `crate::`.
#[allow(unused_imports)]
use broker_double::{latency, machine, Error};

use std::time::Duration;

use broker_double::{run_bench, strings, BrokerDouble, Outcome, Script};

fn run(bootstrap: &str, duration_secs: u32, extra: &[&str]) -> (Outcome, bool) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let duration = duration_secs.to_string();
    let mut args =
        strings(&["run", "--workload", "latency", "--duration", &duration, "--warmup", "0", "--consumers", "0"]);
    args.extend(strings(&["--partitions", "2", "--rate", "500"]));
    args.extend(strings(extra));
    args.extend(["--bootstrap".into(), bootstrap.into(), "--json".into(), json.display().to_string()]);
    let outcome = run_bench(&args, Duration::from_secs(30));
    (outcome, json.exists())
}

/// The last stderr line is the one error message.
fn error_line(outcome: &Outcome) -> String {
    outcome.stderr.lines().last().unwrap_or_default().to_string()
}

#[test]
fn unreachable_broker_fails_fast_with_the_address() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bootstrap = format!("127.0.0.1:{port}");
    let (outcome, wrote_json) = run(&bootstrap, 3, &[]);
    assert!(!outcome.status.success(), "{}", outcome.describe());
    let line = error_line(&outcome);
    assert!(line.contains("cannot connect") && line.contains(&bootstrap), "{}", outcome.describe());
    assert!(outcome.elapsed < Duration::from_secs(10), "{}", outcome.describe());
    assert!(!wrote_json);
}

#[test]
fn a_topic_that_cannot_be_created_is_named() {
    let double = BrokerDouble::start(Script {
        create_topics_error: Some((44, "no topics for benchmarks here".into())),
        ..Script::default()
    });
    let (outcome, wrote_json) = run(&double.bootstrap(), 3, &["--topic-prefix", "refused"]);
    assert!(!outcome.status.success(), "{}", outcome.describe());
    let line = error_line(&outcome);
    assert!(line.contains("cannot create topic refused-0"), "{}", outcome.describe());
    assert!(line.contains("POLICY_VIOLATION") && line.contains("no topics for benchmarks here"), "{line}");
    assert!(!wrote_json);
}

#[test]
fn a_produce_error_the_client_may_not_retry_ends_the_run_at_once() {
    // 87 INVALID_RECORD: retrying the same batch cannot help.
    let double = BrokerDouble::start(Script { produce_error: Some(87), ..Script::default() });
    let (outcome, wrote_json) = run(&double.bootstrap(), 3, &[]);
    assert!(!outcome.status.success(), "{}", outcome.describe());
    let line = error_line(&outcome);
    assert!(line.contains("rejected a produce") && line.contains("INVALID_RECORD"), "{}", outcome.describe());
    assert!(outcome.elapsed < Duration::from_secs(3), "{}", outcome.describe());
    assert!(!wrote_json);
}

#[test]
fn a_broker_rejecting_every_produce_with_retriable_errors_ends_the_run() {
    // 19 NOT_ENOUGH_REPLICAS is retriable, but a broker answering nothing
    // else for seconds is not going to accept the load.
    let double = BrokerDouble::start(Script { produce_error: Some(19), ..Script::default() });
    let (outcome, wrote_json) = run(&double.bootstrap(), 20, &[]);
    assert!(!outcome.status.success(), "{}", outcome.describe());
    let line = error_line(&outcome);
    assert!(
        line.contains("rejected every produce request") && line.contains("NOT_ENOUGH_REPLICAS"),
        "{}",
        outcome.describe()
    );
    assert!(outcome.elapsed < Duration::from_secs(10), "{}", outcome.describe());
    assert!(double.seen.produce_requests.load(std::sync::atomic::Ordering::Relaxed) > 0);
    assert!(!wrote_json);
}

#[test]
fn a_broker_that_stops_answering_ends_the_run_at_the_request_timeout() {
    let double = BrokerDouble::start(Script { produce_silent: true, ..Script::default() });
    let (outcome, wrote_json) = run(&double.bootstrap(), 20, &["--request-timeout", "1.5"]);
    assert!(!outcome.status.success(), "{}", outcome.describe());
    let line = error_line(&outcome);
    assert!(line.contains("no answer within 1.5 s"), "{}", outcome.describe());
    assert!(outcome.elapsed < Duration::from_secs(8), "{}", outcome.describe());
    assert!(!wrote_json);
}
