//! pinion-tune: host checks, safe tuning and disk measurement for pinion.
//!
//! io_uring brokers fail in the field for host reasons: a locked-memory
//! limit too low for the rings' registered buffers, io_uring switched off by
//! a sysctl or a seccomp profile, an old kernel, a filesystem without
//! O_DIRECT, interrupts landing on the cores that serve requests. This crate
//! turns each into one line that says what was found and how to fix it.
//!
//! - [`checks`] owns the checks. Each one is a pure function over captured
//!   `/proc` and `/sys` text (so tests feed recorded hosts), under a thin
//!   layer that reads the live host. [`checks::run_all`] runs them all and
//!   [`checks::startup_checks`] is the gate the broker calls at start.
//! - [`apply`] turns the same observations into a plan of safe, idempotent
//!   runtime fixes (sysctls, IRQ affinity, governor, THP, disk scheduler)
//!   and carries it out.
//! - [`iotune`] measures the data disk with O_DIRECT through io_uring on a
//!   plain thread and writes `io-properties.toml`; the benchmark crate calls
//!   [`iotune::sequential_write`] and [`iotune::sequential_read`] to hold
//!   the engine against the physical limit.
//!
//! Nothing here runs on a glommio executor: everything is synchronous and
//! runs on the calling thread.

mod aligned;
pub mod apply;
pub mod checks;
pub mod cpulist;
pub mod iotune;
pub mod sysfs;
pub mod units;

pub use checks::{run_all, startup_checks, Check, CheckConfig, StartupFailure, Status};
