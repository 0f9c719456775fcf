//! Latency histograms in microseconds and their summaries.
//!
//! Values are recorded with 3 significant digits up to one hour, so a
//! stall never saturates the histogram and hides itself.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram holds: one hour in microseconds.
const LATENCY_US_MAX: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// Records `elapsed`, rounded up to whole microseconds (never 0, never past the maximum).
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let us = (elapsed.as_nanos().div_ceil(1000) as u64).clamp(1, LATENCY_US_MAX);
    histogram.record(us).expect("value within the histogram bounds");
}

/// A value per interval of a timed phase (a sum or a maximum).
#[derive(Debug, Clone)]
pub struct Intervals {
    started: Instant,
    interval: Duration,
    values: Vec<u64>,
}

impl Intervals {
    pub fn new(started: Instant, interval: Duration) -> Self {
        Self { started, interval, values: Vec::new() }
    }

    /// The value of the interval `at` falls in (0 until first touched).
    pub fn at(&mut self, at: Instant) -> &mut u64 {
        let slot = (at.saturating_duration_since(self.started).as_nanos() / self.interval.as_nanos().max(1)) as usize;
        if self.values.len() <= slot {
            self.values.resize(slot + 1, 0);
        }
        &mut self.values[slot]
    }

    pub fn values(&self) -> &[u64] {
        &self.values
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// The largest latency (µs) in each interval of a phase: where the stalls were.
#[derive(Debug, Clone)]
pub struct MaxTimeline(Intervals);

impl MaxTimeline {
    pub fn new(started: Instant, interval: Duration) -> Self {
        Self(Intervals::new(started, interval))
    }

    /// Counts `latency`, observed at `at`, in its interval.
    pub fn note(&mut self, at: Instant, latency: Duration) {
        let max = self.0.at(at);
        *max = (*max).max(latency.as_micros() as u64);
    }

    pub fn maxima_us(&self) -> Vec<u64> {
        self.0.values().to_vec()
    }
}

/// Percentiles of one histogram, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    /// p99.99; absent from files written before it was added.
    #[serde(default)]
    pub p9999: u64,
    pub max: u64,
    pub mean: f64,
}

impl LatencySummary {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            p9999: histogram.value_at_quantile(0.9999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

impl std::fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, p99.99 {} us, max {} us ({} samples)",
            self.p50, self.p90, self.p99, self.p999, self.p9999, self.max, self.count
        )
    }
}
