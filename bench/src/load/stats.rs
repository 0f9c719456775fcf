//! What the producer, reader and consumer threads of one run share: the
//! clock, counters, latency histograms and the first fatal error.
//!
//! Threads record into mutex-guarded histograms once per response (never
//! per message), and the progress thread takes the interval histogram
//! once per second, so the locks are nearly never contended.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::latency;

/// The process-wide epoch every timestamp in a message is relative to:
/// the consumer runs in the same process, so no clock sync is needed.
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process-wide epoch.
pub fn now_ns() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Latencies of one kind: the current one-second interval (warm-up
/// included) and the measured window (warm-up excluded).
#[derive(Debug)]
pub struct LatencyRecorder {
    pub interval: Histogram<u64>,
    pub measured: Histogram<u64>,
}

impl LatencyRecorder {
    fn new() -> Self {
        Self { interval: latency::histogram(), measured: latency::histogram() }
    }

    /// Records `now_ns - intended_ns` for every intended time.
    pub fn record_all(&mut self, intended_ns: &[u64], now_ns: u64, warmup_end_ns: u64) {
        for &intended in intended_ns {
            self.record(intended, now_ns, warmup_end_ns);
        }
    }

    pub fn record(&mut self, intended_ns: u64, now_ns: u64, warmup_end_ns: u64) {
        let elapsed = std::time::Duration::from_nanos(now_ns.saturating_sub(intended_ns));
        latency::record(&mut self.interval, elapsed);
        if intended_ns >= warmup_end_ns {
            latency::record(&mut self.measured, elapsed);
        }
    }

    /// The interval histogram so far, leaving an empty one.
    pub fn take_interval(&mut self) -> Histogram<u64> {
        let taken = self.interval.clone();
        self.interval.reset();
        taken
    }
}

/// Counters and histograms of one run.
#[derive(Debug)]
pub struct RunStats {
    /// Random per run: the consumer counts only messages carrying it.
    pub run_id: u64,
    pub start_ns: u64,
    pub warmup_end_ns: u64,
    /// When producers stop creating messages.
    pub end_ns: u64,
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    /// Key + value bytes of every acknowledged message, warm-up included.
    pub acked_bytes: AtomicU64,
    /// Acknowledged messages (and their key + value bytes) intended after the warm-up.
    pub measured_acked: AtomicU64,
    pub measured_acked_bytes: AtomicU64,
    /// Consumed messages per consumer group.
    pub consumed: Vec<AtomicU64>,
    pub measured_consumed: AtomicU64,
    /// Open-loop backlog reported by producers as they finish.
    pub backlog: AtomicU64,
    pub produce_error_total: AtomicU64,
    pub produce_errors: Mutex<BTreeMap<String, u64>>,
    pub fetch_errors: Mutex<BTreeMap<String, u64>>,
    pub connection_errors: AtomicU64,
    pub publish: Mutex<LatencyRecorder>,
    pub end_to_end: Mutex<LatencyRecorder>,
    /// Set when producers must stop early (a fatal error elsewhere).
    pub stop_producers: AtomicBool,
    /// Set when consumers have drained (or must give up).
    pub stop_consumers: AtomicBool,
    /// With a consumer backlog: when the consumers were let go, and what
    /// was acknowledged then.
    pub consumer_release: OnceLock<ConsumerRelease>,
    /// With a consumer backlog: when every group had read it.
    pub caught_up_ns: OnceLock<u64>,
    fatal: Mutex<Option<String>>,
}

/// The moment a run with a consumer backlog starts its consumers.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerRelease {
    pub at_ns: u64,
    pub acked_messages: u64,
    pub acked_bytes: u64,
}

impl RunStats {
    pub fn new(run_id: u64, start_ns: u64, warmup_end_ns: u64, end_ns: u64, consumer_groups: usize) -> Self {
        Self {
            run_id,
            start_ns,
            warmup_end_ns,
            end_ns,
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            acked_bytes: AtomicU64::new(0),
            measured_acked: AtomicU64::new(0),
            measured_acked_bytes: AtomicU64::new(0),
            consumed: (0..consumer_groups).map(|_| AtomicU64::new(0)).collect(),
            measured_consumed: AtomicU64::new(0),
            backlog: AtomicU64::new(0),
            produce_error_total: AtomicU64::new(0),
            produce_errors: Mutex::new(BTreeMap::new()),
            fetch_errors: Mutex::new(BTreeMap::new()),
            connection_errors: AtomicU64::new(0),
            publish: Mutex::new(LatencyRecorder::new()),
            end_to_end: Mutex::new(LatencyRecorder::new()),
            stop_producers: AtomicBool::new(false),
            stop_consumers: AtomicBool::new(false),
            consumer_release: OnceLock::new(),
            caught_up_ns: OnceLock::new(),
            fatal: Mutex::new(None),
        }
    }

    /// Records the first fatal error and stops every thread.
    pub fn fail(&self, error: impl std::fmt::Display) {
        let mut fatal = self.fatal.lock().expect("fatal lock");
        if fatal.is_none() {
            *fatal = Some(error.to_string());
        }
        self.stop_producers.store(true, Ordering::SeqCst);
        self.stop_consumers.store(true, Ordering::SeqCst);
    }

    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().expect("fatal lock").clone()
    }

    pub fn count_error(map: &Mutex<BTreeMap<String, u64>>, name: String) {
        *map.lock().expect("error map lock").entry(name).or_insert(0) += 1;
    }

    /// Whether consumers held back for `backlog_bytes` may start: once that
    /// much is acknowledged, or the producers' time is over. The first
    /// caller that finds so records the moment for everyone.
    pub fn consumers_released(&self, backlog_bytes: u64) -> bool {
        if self.consumer_release.get().is_some() {
            return true;
        }
        let acked_bytes = Self::load(&self.acked_bytes);
        let now = now_ns();
        if acked_bytes < backlog_bytes && now < self.end_ns {
            return false;
        }
        self.consumer_release.get_or_init(|| ConsumerRelease {
            at_ns: now,
            acked_messages: Self::load(&self.acked),
            acked_bytes,
        });
        true
    }

    /// Notes the catch-up once every group has consumed the backlog.
    pub fn note_consumed(&self) {
        let Some(release) = self.consumer_release.get() else { return };
        if self.caught_up_ns.get().is_none() && self.consumed.iter().all(|c| Self::load(c) >= release.acked_messages) {
            let _ = self.caught_up_ns.set(now_ns());
        }
    }

    pub fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
