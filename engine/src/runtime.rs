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

/// Locked memory one executor needs, measured here (pinion-tune's
/// `memlock_model` test checks it against the kernel): glommio creates three
/// rings per executor and registers the `io_memory` buffer with each, and
/// each ring costs about 16 KiB.
pub const MEMLOCK_BYTES_PER_EXECUTOR: u64 = 3 * (IO_MEMORY_BYTES as u64 + (16 << 10));

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

/// Whether this process may lock memory beyond RLIMIT_MEMLOCK (CAP_IPC_LOCK,
/// as root usually has): then the limit is not charged at all.
pub fn has_ipc_lock_capability() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Checks that `executors` executors fit in the memlock limit.
pub fn check_memlock(executors: usize) -> Result<(), StartError> {
    let need_bytes = MEMLOCK_BYTES_PER_EXECUTOR * executors as u64;
    let have_bytes = memlock_limit_bytes();
    // glommio refuses to start below 512 KiB even with CAP_IPC_LOCK.
    let floor = IO_MEMORY_BYTES as u64;
    if have_bytes < floor || (have_bytes < need_bytes && !has_ipc_lock_capability()) {
        return Err(StartError::MemlockTooLow { have_bytes, need_bytes });
    }
    Ok(())
}

/// Resumes once the executor has run its other ready tasks and polled its
/// io_uring, submitting the I/O they queued (a timer fires only there):
/// glommio submits queued I/O only between its passes over the ready tasks.
pub async fn reactor_turn() {
    glommio::timer::sleep(Duration::from_micros(1)).await;
}

/// Runs `make()`'s future to completion on a new executor thread placed at
/// `placement`, with this project's `io_memory`, and returns its output.
pub fn run_executor<F, Fut, T>(name: &str, placement: Placement, make: F) -> Result<T, StartError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    spawn_executor(name, placement, make)?.join()
}

/// How an executor behaves when it runs out of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutorOptions {
    /// Keep polling this long before parking the thread: lower wake-up
    /// latency for a busier core (`None`: park at once).
    pub spin_before_park: Option<Duration>,
}

/// An executor's thread (see [`spawn_executor_with`]).
#[derive(Debug)]
pub struct ExecutorThread<T>(std::thread::JoinHandle<Result<T, StartError>>);

impl<T> ExecutorThread<T> {
    /// Waits for the executor's future; an error if the executor could not
    /// be built or its thread panicked.
    pub fn join(self) -> Result<T, StartError> {
        self.0.join().map_err(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            StartError::Executor(format!("executor thread panicked: {message}"))
        })?
    }

    /// Whether the thread has ended (its future finished, or the executor
    /// could not be built).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

/// Starts `make()`'s future on a new executor thread placed at `placement`
/// and returns its handle without waiting.
pub fn spawn_executor<F, Fut, T>(name: &str, placement: Placement, make: F) -> Result<ExecutorThread<T>, StartError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    spawn_executor_with(name, placement, ExecutorOptions::default(), make)
}

/// [`spawn_executor`] with explicit [`ExecutorOptions`].
///
/// The executor is built on its own thread, and building it is retried
/// there for a while: right after other executors were torn down, glommio
/// can fail to build one (a misleading "kernel too old" error, see
/// DESIGN.md). A thread whose executor cannot be built ends with the error.
pub fn spawn_executor_with<F, Fut, T>(
    name: &str,
    placement: Placement,
    options: ExecutorOptions,
    make: F,
) -> Result<ExecutorThread<T>, StartError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    spawn_executor_attempts(name, placement, options, 20, make)
}

/// [`spawn_executor_with`], trying to build the executor `attempts` times.
fn spawn_executor_attempts<F, Fut, T>(
    name: &str,
    placement: Placement,
    options: ExecutorOptions,
    attempts: u64,
    make: F,
) -> Result<ExecutorThread<T>, StartError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    check_memlock(1)?;
    let executor_name = name.to_string();
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let mut last_error = String::new();
            for attempt in 0..attempts {
                let mut builder =
                    LocalExecutorBuilder::new(placement.clone()).name(&executor_name).io_memory(IO_MEMORY_BYTES);
                if let Some(spin) = options.spin_before_park {
                    builder = builder.spin_before_park(spin);
                }
                match builder.make() {
                    Ok(executor) => return Ok(executor.run(async move { make().await })),
                    Err(e) => {
                        last_error = e.to_string();
                        std::thread::sleep(Duration::from_millis(25 * (attempt + 1)));
                    }
                }
            }
            Err(StartError::Executor(format!(
                "cannot build executor {executor_name} ({attempts} attempts): {last_error}"
            )))
        })
        .map_err(|e| StartError::Executor(format!("cannot start a thread for executor {name}: {e}")))?;
    Ok(ExecutorThread(thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_executor_that_cannot_be_built_ends_its_thread_with_the_error() {
        // No such CPU: building the executor fails every time.
        let placement = Placement::Fixed(1 << 20);
        let thread = spawn_executor_attempts("nowhere", placement, ExecutorOptions::default(), 2, || async {})
            .expect("the thread starts");
        let error: StartError = thread.join().expect_err("no such CPU");
        assert!(error.to_string().contains("cannot build executor nowhere (2 attempts)"), "{error}");
    }

    #[test]
    fn an_executor_runs_its_future_and_returns_the_output() {
        let thread = spawn_executor("adder", Placement::Unbound, || async { 20 + 22 }).expect("the thread starts");
        assert_eq!(thread.join().expect("it ran"), 42);
    }

    #[test]
    fn too_low_memlock_is_one_line_with_the_remedy() {
        let err = StartError::MemlockTooLow { have_bytes: 64 << 10, need_bytes: 2 << 20 };
        let line = err.to_string();
        assert!(!line.contains('\n'));
        assert!(line.contains("64 KiB"), "{line}");
        assert!(line.contains("2048 KiB"), "{line}");
        assert!(line.contains("ulimit -l 2048"), "{line}");
    }

    #[test]
    fn memlock_check_matches_the_limit() {
        let limit = memlock_limit_bytes();
        let fits = (limit / MEMLOCK_BYTES_PER_EXECUTOR) as usize;
        assert!(check_memlock(fits.min(1 << 20)).is_ok());
        if limit != u64::MAX && !has_ipc_lock_capability() {
            assert!(matches!(check_memlock(fits + 1), Err(StartError::MemlockTooLow { .. })));
        }
    }
}
