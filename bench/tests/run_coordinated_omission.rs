//! `pinion-bench run` against a broker double that stalls its produce
//! answers once for a known time: the publish percentiles must include the
//! stall for every message that was due during it (latency measured from
//! each message's intended send time), not only for the few requests that
//! happened to be in flight when it began. A run against the same double
//! without the stall must not show it.

mod broker_double;

// `results.rs` (compiled into `broker_double`) names these through `crate::`.
#[allow(unused_imports)]
use broker_double::{latency, machine, Error};

use std::time::Duration;

use broker_double::results::RunResult;
use broker_double::{decode_histogram, run_bench, strings, BrokerDouble, Script};

const RATE: u64 = 1_000;
const STALL: Duration = Duration::from_millis(500);
const STALL_AFTER: Duration = Duration::from_secs(1);

fn run_at_fixed_rate(double: &BrokerDouble) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let mut args = strings(&["run", "--workload", "latency", "--duration", "3", "--warmup", "0", "--consumers", "0"]);
    args.extend(strings(&["--partitions", "4", "--linger-ms", "1", "--rate", &RATE.to_string()]));
    args.extend(["--bootstrap".into(), double.bootstrap(), "--json".into(), json.display().to_string()]);
    let outcome = run_bench(&args, Duration::from_secs(30));
    assert!(outcome.status.success(), "{}", outcome.describe());
    RunResult::read(&json).unwrap()
}

#[test]
fn a_stall_shows_in_publish_latency_for_every_message_due_during_it() {
    let double = BrokerDouble::start(Script { stall_after: Some(STALL_AFTER), stall: STALL, ..Script::default() });
    let result = run_at_fixed_rate(&double);
    assert!(double.seen.stall_window.lock().unwrap().is_some(), "the double never stalled");

    let stall_us = STALL.as_micros() as u64;
    let publish = result.publish_latency_us;
    // Recorded with 3 significant digits: allow for the rounding.
    assert!(publish.max >= stall_us * 99 / 100, "max {} us < stall {stall_us} us: {publish}", publish.max);
    assert!(publish.p99 >= stall_us / 2, "p99 {} us does not show a {stall_us} us stall: {publish}", publish.p99);
    // Messages due in the stall's first half waited at least half of it:
    // about RATE * STALL / 2 of them. A tool timing from the actual send
    // would see only the requests in flight when the stall began.
    let histogram = decode_histogram(&result.histograms.publish_latency_us);
    let slow = histogram.count_between(stall_us / 2, u64::MAX);
    let due_in_first_half = RATE as f64 * STALL.as_secs_f64() / 2.0;
    assert!(
        slow as f64 >= 0.8 * due_in_first_half,
        "only {slow} samples >= {} us; about {due_in_first_half} messages were due in the stall's first half",
        stall_us / 2
    );
    assert_eq!(result.throughput.acked_messages, result.throughput.sent_messages);
    assert!(result.throughput.acked_messages >= 3 * RATE * 9 / 10, "{:?}", result.throughput);
}

#[test]
fn without_a_stall_the_percentiles_stay_low() {
    let double = BrokerDouble::start(Script::default());
    let result = run_at_fixed_rate(&double);
    let stall_us = STALL.as_micros() as u64;
    let publish = result.publish_latency_us;
    assert!(publish.p99 < stall_us / 5, "p99 {} us without a stall: {publish}", publish.p99);
    let histogram = decode_histogram(&result.histograms.publish_latency_us);
    let slow = histogram.count_between(stall_us / 2, u64::MAX);
    assert!(slow < (RATE as f64 * STALL.as_secs_f64() / 8.0) as u64, "{slow} samples >= {} us", stall_us / 2);
    assert!(result.throughput.acked_messages >= 3 * RATE * 9 / 10, "{:?}", result.throughput);
}
