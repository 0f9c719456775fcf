//! Starting a shard's glommio executor the way this project needs it.
//!
//! glommio registers `io_memory` bytes of locked memory per executor for
//! fixed-buffer I/O. Hosts here have an 8 MiB memlock limit that cannot be
//! raised, so pinion asks for [`IO_MEMORY_BYTES`] per executor and checks
//! the limit first: a too-low limit becomes one clear line instead of a
//! panic deep inside the runtime. Executors created right after others were
//! torn down can fail spuriously (glommio reports "kernel too old" while
//! the old rings are being released), so creation is retried briefly.

use std::fmt;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Registered io_uring buffer memory per executor. Buffers beyond it come
/// from the heap, so this bounds only the fixed-buffer fast path.
pub const IO_MEMORY_BYTES: usize = 512 << 10;

/// Locked memory one executor needs: its registered buffers plus slack for
/// the rings on kernels that still charge them to RLIMIT_MEMLOCK.
pub const MEMLOCK_BYTES_PER_EXECUTOR: u64 = (IO_MEMORY_BYTES as u64) + (512 << 10);

/// Why an executor could not start.
#[derive(Debug)]
pub enum StartError {
    /// RLIMIT_MEMLOCK is below what the executors need.
    MemlockTooLow { have_bytes: u64, need_bytes: u64 },
    /// glommio refused to build the executor.
    Executor(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MemlockTooLow { have_bytes, need_bytes } => write!(
                f,
                "locked-memory limit (RLIMIT_MEMLOCK) is {} KiB but pinion needs {} KiB: \
                 raise it with `ulimit -l {}` (or LimitMEMLOCK= in a systemd unit, --ulimit memlock= for docker)",
                have_bytes / 1024,
                need_bytes / 1024,
                need_bytes.div_ceil(1024)
            ),
            Self::Executor(reason) => write!(f, "cannot start an io_uring executor: {reason}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The current soft RLIMIT_MEMLOCK in bytes (`u64::MAX` when unlimited).
pub fn memlock_limit_bytes() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// Checks that `executors` executors fit in the memlock limit.
pub fn check_memlock(executors: usize) -> Result<(), StartError> {
    let need_bytes = MEMLOCK_BYTES_PER_EXECUTOR * executors as u64;
    let have_bytes = memlock_limit_bytes();
    if have_bytes < need_bytes {
        return Err(StartError::MemlockTooLow { have_bytes, need_bytes });
    }
    Ok(())
}

/// Runs `make()`'s future to completion on a new executor thread placed at
/// `placement`, with this project's `io_memory`, and returns its output.
pub fn run_executor<F, Fut, T>(name: &str, placement: Placement, make: F) -> Result<T, StartError>
where
    F: FnOnce() -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    check_memlock(1)?;
    let mut last_error = String::new();
    for attempt in 0..20u64 {
        let builder = LocalExecutorBuilder::new(placement.clone()).name(name).io_memory(IO_MEMORY_BYTES);
        match builder.spawn(make.clone()) {
            Ok(handle) => {
                return handle.join().map_err(|e| StartError::Executor(format!("executor thread failed: {e:?}")));
            }
            Err(e) => {
                last_error = e.to_string();
                std::thread::sleep(Duration::from_millis(25 * (attempt + 1)));
            }
        }
    }
    Err(StartError::Executor(last_error))
}
