//! Backlog episodes of a fixed-rate run: where the tail of the append
//! latency came from.
//!
//! An episode is a maximal run of consecutive appends, in send order, each
//! acknowledged more than [`BACKLOG_LATENCY_US`] after its scheduled send
//! time. It has two parts:
//! - the **stall**: from the first of its appends being sent to the first of
//!   them being acknowledged. Nothing of the episode got through.
//! - the **drain**: from that first acknowledgement to the last. The drain
//!   rate is the episode's bytes over the drain time.
//!
//! A drain near the disk's bandwidth means the engine caught up as fast as
//! the disk allowed, and the tail was the stall's. A slow drain means the
//! backlog went out slower than the disk can write: the engine's doing, or
//! a device that was slow rather than stopped.

use serde::Serialize;

/// Appends acknowledged later than this after their send time belong to an
/// episode: twice the engine's p99 target at half rate (1 ms).
pub const BACKLOG_LATENCY_US: u64 = 2_000;

/// Episodes a summary lists, the worst (by largest latency) first.
pub const EPISODES_LISTED: usize = 5;

/// One measured append of a fixed-rate run, µs from the start of the measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendTimes {
    pub sent_us: u64,
    pub acknowledged_us: u64,
    pub bytes: u64,
}

impl AppendTimes {
    fn latency_us(&self) -> u64 {
        self.acknowledged_us.saturating_sub(self.sent_us)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Episode {
    /// Send time of its first append, ms from the start of the measured phase.
    pub start_ms: f64,
    pub appends: u64,
    pub bytes: u64,
    pub stall_us: u64,
    pub drain_us: u64,
    /// `bytes / drain`; absent when every append was acknowledged at once.
    pub drain_bytes_per_sec: Option<f64>,
    pub latency_max_us: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacklogSummary {
    pub threshold_us: u64,
    pub episodes: usize,
    /// Appends inside an episode, and their fraction of all measured appends.
    pub appends: u64,
    pub appends_fraction: f64,
    /// Sum of the episodes' stalls and of their drains.
    pub stall_us_total: u64,
    pub drain_us_total: u64,
    /// The worst episodes (largest latency first), at most `EPISODES_LISTED`.
    pub worst: Vec<Episode>,
}

/// The episodes of `appends` (any order) over `threshold_us`, in time order.
pub fn episodes(appends: &[AppendTimes], threshold_us: u64) -> Vec<Episode> {
    let mut by_send = appends.to_vec();
    by_send.sort_by_key(|a| (a.sent_us, a.acknowledged_us));
    by_send
        .chunk_by(|a, b| (a.latency_us() > threshold_us) == (b.latency_us() > threshold_us))
        .filter(|run| run[0].latency_us() > threshold_us)
        .map(|run| {
            let first_ack = run.iter().map(|a| a.acknowledged_us).min().expect("a run is not empty");
            let last_ack = run.iter().map(|a| a.acknowledged_us).max().expect("a run is not empty");
            let bytes = run.iter().map(|a| a.bytes).sum();
            let drain_us = last_ack - first_ack;
            Episode {
                start_ms: run[0].sent_us as f64 / 1e3,
                appends: run.len() as u64,
                bytes,
                stall_us: first_ack.saturating_sub(run[0].sent_us),
                drain_us,
                drain_bytes_per_sec: (drain_us > 0).then(|| bytes as f64 / (drain_us as f64 / 1e6)),
                latency_max_us: run.iter().map(AppendTimes::latency_us).max().unwrap_or(0),
            }
        })
        .collect()
}

pub fn summarize(appends: &[AppendTimes], threshold_us: u64) -> BacklogSummary {
    let mut all = episodes(appends, threshold_us);
    let in_episodes: u64 = all.iter().map(|e| e.appends).sum();
    let summary = BacklogSummary {
        threshold_us,
        episodes: all.len(),
        appends: in_episodes,
        appends_fraction: in_episodes as f64 / appends.len().max(1) as f64,
        stall_us_total: all.iter().map(|e| e.stall_us).sum(),
        drain_us_total: all.iter().map(|e| e.drain_us).sum(),
        worst: Vec::new(),
    };
    all.sort_by_key(|e| std::cmp::Reverse(e.latency_max_us));
    all.truncate(EPISODES_LISTED);
    BacklogSummary { worst: all, ..summary }
}

impl std::fmt::Display for Episode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "at {:.1} ms: {} appends stalled {:.1} ms, then drained in {:.1} ms",
            self.start_ms,
            self.appends,
            self.stall_us as f64 / 1e3,
            self.drain_us as f64 / 1e3
        )?;
        if let Some(rate) = self.drain_bytes_per_sec {
            write!(f, " at {:.0} MB/s", rate / 1e6)?;
        }
        write!(f, " (max {:.1} ms)", self.latency_max_us as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(sent_us: u64, acknowledged_us: u64) -> AppendTimes {
        AppendTimes { sent_us, acknowledged_us, bytes: 1_000_000 }
    }

    #[test]
    fn a_stall_and_its_drain_are_measured_from_the_first_late_append() {
        // Every 1 ms an append of 1 MB. Those sent at 10..=14 ms wait for a
        // device stall until 20 ms, then go one per 0.5 ms (2 GB/s).
        let mut appends: Vec<AppendTimes> = (0..10).map(|t| append(t * 1000, t * 1000 + 500)).collect();
        appends.extend((10..15).map(|t| append(t * 1000, 20_000 + (t - 10) * 500)));
        appends.extend((15..20).map(|t| append(t * 1000, t * 1000 + 500)));
        // In acknowledgement order, as the bench records them.
        appends.sort_by_key(|a| a.acknowledged_us);
        let found = episodes(&appends, 2_000);
        assert_eq!(found.len(), 1, "{found:?}");
        let e = found[0];
        assert_eq!((e.appends, e.bytes), (5, 5_000_000));
        assert_eq!(e.start_ms, 10.0);
        assert_eq!(e.stall_us, 10_000, "sent at 10 ms, first acknowledged at 20 ms");
        assert_eq!(e.drain_us, 2_000);
        assert_eq!(e.drain_bytes_per_sec, Some(2.5e9));
        assert_eq!(e.latency_max_us, 10_000, "the first: sent at 10 ms, acknowledged at 20 ms");
    }

    #[test]
    fn appends_under_the_threshold_split_episodes_and_the_worst_come_first() {
        let appends = [
            append(0, 3_000),     // episode 1 (3 ms)
            append(1_000, 1_500), // fast: ends it
            append(2_000, 9_000), // episode 2 (7 ms) ...
            append(3_000, 9_000), // ... acknowledged together: no drain time
            append(4_000, 4_100), // fast
            append(5_000, 7_000), // exactly the threshold: not late
        ];
        let summary = summarize(&appends, 2_000);
        assert_eq!(summary.episodes, 2);
        assert_eq!(summary.appends, 3);
        assert_eq!(summary.appends_fraction, 0.5);
        assert_eq!(summary.stall_us_total, 3_000 + 7_000);
        assert_eq!(summary.drain_us_total, 0);
        assert_eq!(summary.worst.iter().map(|e| e.latency_max_us).collect::<Vec<_>>(), [7_000, 3_000]);
        assert_eq!(summary.worst[0].drain_bytes_per_sec, None);
        assert_eq!(
            summary.worst[0].to_string(),
            "at 2.0 ms: 2 appends stalled 7.0 ms, then drained in 0.0 ms (max 7.0 ms)"
        );
    }

    #[test]
    fn a_run_without_late_appends_has_no_episodes() {
        let appends: Vec<AppendTimes> = (0..100).map(|t| append(t * 100, t * 100 + 900)).collect();
        let summary = summarize(&appends, 2_000);
        assert_eq!((summary.episodes, summary.appends, summary.worst.len()), (0, 0, 0));
        assert!(summarize(&[], 2_000).worst.is_empty());
    }
}
