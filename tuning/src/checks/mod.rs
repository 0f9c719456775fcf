//! The host checks: what the broker needs from the kernel, the CPUs, the
//! data disk and the network stack, each reported as one [`Check`] line.
//!
//! Every check is split in two. An `observe` function reads the live host
//! (files under `/proc` and `/sys`, `getrlimit`, `statfs`, a real io_uring
//! and a real O_DIRECT write) into a plain observation struct; a pure
//! `check_*` function turns the observation into a verdict. Parsers take
//! `&str`, so unit tests feed captured text from real hosts, including
//! broken ones. [`HostObservation`] gathers all observations once; both
//! [`run_all`] and [`crate::apply::plan`] work from it.
//!
//! A check FAILs only when the broker cannot run correctly (io_uring
//! unavailable, memlock below need, data on tmpfs, no O_DIRECT); tuning
//! advice is a WARN. [`startup_checks`] is the gate the broker calls at
//! start: FAIL stops it with the check's line, WARN is logged once.

pub mod block;
pub mod cpu;
pub mod io_uring;
pub mod irq;
pub mod kernel;
pub mod memlock;
pub mod memory;
pub mod network;
pub mod storage;

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How a check came out, in increasing order of gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// The broker runs, but slower or less predictably than it could.
    Warn,
    /// The broker cannot run correctly on this host as it is.
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One finding about the host: what was checked, how it came out, what was
/// found and, unless it is OK, the one-line fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// A stable identifier (`memlock`, `io_uring`, `net.core.somaxconn`).
    pub name: String,
    pub status: Status,
    /// What the host has, in words and numbers.
    pub found: String,
    /// How to fix it; `None` when there is nothing to fix.
    pub remedy: Option<String>,
}

impl Check {
    pub fn ok(name: &str, found: impl Into<String>) -> Self {
        Self { name: name.to_string(), status: Status::Ok, found: found.into(), remedy: None }
    }

    pub fn warn(name: &str, found: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self { name: name.to_string(), status: Status::Warn, found: found.into(), remedy: Some(remedy.into()) }
    }

    pub fn fail(name: &str, found: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self { name: name.to_string(), status: Status::Fail, found: found.into(), remedy: Some(remedy.into()) }
    }

    /// The one line the broker prints: `FAIL memlock: soft 64 KiB, ...;
    /// fix: raise it: ...`.
    pub fn line(&self) -> String {
        match &self.remedy {
            Some(remedy) => format!("{} {}: {}; fix: {}", self.status, self.name, self.found, remedy),
            None => format!("{} {}: {}", self.status, self.name, self.found),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// The `io_memory` each glommio executor registers with its rings, unless
/// the broker is configured otherwise. Small because the locked-memory
/// limit is small on many hosts (8 MiB here).
pub const DEFAULT_IO_MEMORY_BYTES_PER_SHARD: usize = 512 * 1024;

/// What the broker will be asked to do: where its data lives, how many
/// shards (one glommio executor each) it runs, and how much io_memory each
/// executor registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckConfig {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub io_memory_bytes_per_shard: usize,
}

impl CheckConfig {
    /// The broker's defaults: one shard per CPU this process may use, and
    /// [`DEFAULT_IO_MEMORY_BYTES_PER_SHARD`].
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            shards: cpu::usable_cpu_count(),
            io_memory_bytes_per_shard: DEFAULT_IO_MEMORY_BYTES_PER_SHARD,
        }
    }
}

/// Everything the checks and the apply plan look at, read from the host
/// once.
#[derive(Debug, Clone)]
pub struct HostObservation {
    pub kernel_release: Option<String>,
    pub io_uring: io_uring::IoUringObservation,
    pub memlock: memlock::MemlockObservation,
    pub cpu: cpu::CpuObservation,
    pub memory: memory::MemoryObservation,
    pub data_dir: storage::DataDirObservation,
    pub block: block::BlockObservation,
    pub network: network::NetworkObservation,
    pub irq: irq::IrqObservation,
}

impl HostObservation {
    /// Reads the live host. Creates a ring and writes (then removes) one
    /// 4 KiB file in the data directory; changes nothing else.
    pub fn capture(config: &CheckConfig) -> Self {
        let data_dir = storage::observe(&config.data_dir);
        let block = block::observe(&data_dir);
        let irq = irq::observe(&block);
        Self {
            kernel_release: kernel::observe(),
            io_uring: io_uring::observe(),
            memlock: memlock::observe(),
            cpu: cpu::observe(),
            memory: memory::observe(),
            data_dir,
            block,
            network: network::observe(),
            irq,
        }
    }

    /// The CPUs the broker's shards will run on (see [`cpu::shard_cpus`]).
    pub fn broker_cpus(&self, config: &CheckConfig) -> Vec<usize> {
        cpu::shard_cpus(&self.cpu, config.shards)
    }

    /// Every check, in a fixed order: kernel and io_uring first, then
    /// memory limits, CPUs, memory management, storage, network and
    /// interrupts.
    pub fn evaluate(&self, config: &CheckConfig) -> Vec<Check> {
        let broker_cpus = self.broker_cpus(config);
        vec![
            kernel::check_kernel(self.kernel_release.as_deref()),
            io_uring::check_io_uring(&self.io_uring),
            io_uring::check_io_uring_opcodes(&self.io_uring),
            memlock::check_memlock(&self.memlock, config.shards, config.io_memory_bytes_per_shard),
            cpu::check_cpus(&self.cpu, config.shards),
            cpu::check_smt(&self.cpu, &broker_cpus),
            cpu::check_numa(&self.cpu, &broker_cpus),
            cpu::check_isolated(&self.cpu, &broker_cpus),
            cpu::check_governor(&self.cpu),
            memory::check_transparent_hugepages(&self.memory),
            memory::check_swappiness(&self.memory),
            storage::check_filesystem(&self.data_dir),
            storage::check_direct_io(&self.data_dir),
            storage::check_discard(&self.data_dir),
            block::check_scheduler(&self.block),
            block::check_queue_depth(&self.block),
            block::check_write_cache(&self.block),
            network::check_somaxconn(&self.network),
            network::check_tcp_rmem(&self.network),
            network::check_tcp_wmem(&self.network),
            network::check_busy_poll(&self.network),
            irq::check_irq_affinity(&self.irq, &self.cpu.online, &broker_cpus),
        ]
    }
}

/// Runs every check against the live host.
pub fn run_all(config: &CheckConfig) -> Vec<Check> {
    HostObservation::capture(config).evaluate(config)
}

/// The checks that stop the broker at start, each with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupFailure {
    pub failures: Vec<Check>,
    /// The warnings found alongside, for the log.
    pub warnings: Vec<Check>,
}

impl fmt::Display for StartupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.failures.iter().map(Check::line).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for StartupFailure {}

/// Splits finished checks into the start-up verdict: `Err` with every FAIL
/// (the broker prints them and stops), or `Ok` with the WARNs (logged once).
pub fn startup_verdict(checks: Vec<Check>) -> Result<Vec<Check>, StartupFailure> {
    let (failures, rest): (Vec<Check>, Vec<Check>) = checks.into_iter().partition(|c| c.status == Status::Fail);
    let warnings: Vec<Check> = rest.into_iter().filter(|c| c.status == Status::Warn).collect();
    if failures.is_empty() {
        Ok(warnings)
    } else {
        Err(StartupFailure { failures, warnings })
    }
}

/// The broker's start-up gate: runs every check against the live host and
/// returns the warnings to log once, or the failures to stop with.
///
/// ```no_run
/// let config = pinion_tune::CheckConfig::new("./data");
/// match pinion_tune::startup_checks(&config) {
///     Ok(warnings) => warnings.iter().for_each(|w| eprintln!("{w}")),
///     Err(failure) => {
///         eprintln!("{failure}");
///         std::process::exit(1);
///     }
/// }
/// ```
pub fn startup_checks(config: &CheckConfig) -> Result<Vec<Check>, StartupFailure> {
    startup_verdict(run_all(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_carries_status_finding_and_fix() {
        let check = Check::fail("memlock", "soft 64 KiB", "raise it");
        assert_eq!(check.line(), "FAIL memlock: soft 64 KiB; fix: raise it");
        assert_eq!(Check::ok("kernel", "6.1.0").line(), "OK kernel: 6.1.0");
    }

    #[test]
    fn startup_stops_on_fail_and_logs_warn() {
        let ok = Check::ok("a", "fine");
        let warn = Check::warn("b", "slow", "tune");
        let fail = Check::fail("c", "broken", "fix");
        assert_eq!(startup_verdict(vec![ok.clone(), warn.clone()]), Ok(vec![warn.clone()]));
        let failure = startup_verdict(vec![ok, warn.clone(), fail.clone()]).unwrap_err();
        assert_eq!(failure.failures, vec![fail]);
        assert_eq!(failure.warnings, vec![warn]);
        assert_eq!(failure.to_string(), "FAIL c: broken; fix: fix");
    }

    #[test]
    fn status_serialises_lowercase_and_orders_by_gravity() {
        assert_eq!(serde_json::to_string(&Status::Warn).unwrap(), "\"warn\"");
        assert!(Status::Ok < Status::Warn && Status::Warn < Status::Fail);
        assert_eq!(format!("{:<5}|", Status::Ok), "OK   |");
    }
}
