//! `memlock_needed_bytes` against the kernel: a process without
//! CAP_IPC_LOCK whose soft limit is exactly the computed need can set up
//! what one glommio executor sets up (three 128-entry rings, the io_memory
//! buffer registered with each), and has no room for a fourth.
//!
//! The test re-runs its own binary as the child, with CAP_IPC_LOCK dropped
//! from the bounding set (so the exec does not grant it back to root) and
//! the soft limit lowered before the exec.

use std::os::unix::process::CommandExt;
use std::process::Command;

use io_uring::IoUring;
use pinion_tune::checks::memlock::{memlock_needed_bytes, parse_cap_ipc_lock};

const CHILD_ENV: &str = "PINION_TUNE_MEMLOCK_CHILD";
const TEST_NAME: &str = "one_executor_fits_in_the_computed_need";
const IO_MEMORY_BYTES: usize = 512 * 1024;
const CAP_IPC_LOCK: libc::c_ulong = 14;

/// In the child: what one executor does, then one registration too many.
fn child() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    if parse_cap_ipc_lock(&status) {
        println!("SKIP: could not drop CAP_IPC_LOCK");
        return;
    }
    let layout = std::alloc::Layout::from_size_align(IO_MEMORY_BYTES, 4096).unwrap();
    // SAFETY: a non-zero layout; the memory is leaked with the process.
    let buffer = unsafe { std::alloc::alloc_zeroed(layout) };
    assert!(!buffer.is_null());
    let iovec = libc::iovec { iov_base: buffer.cast(), iov_len: IO_MEMORY_BYTES };
    let mut rings = Vec::new();
    for ring_index in 0..3 {
        let ring = IoUring::new(128).unwrap_or_else(|e| panic!("ring {ring_index}: {e}"));
        // SAFETY: the buffer stays allocated for the life of the process.
        unsafe { ring.submitter().register_buffers(&[iovec]) }
            .unwrap_or_else(|e| panic!("registration {ring_index}: {e}"));
        rings.push(ring);
    }
    // Nothing of a fourth ring fits: the need has no slack either.
    let fourth = IoUring::new(128).and_then(|ring| {
        // SAFETY: as above.
        unsafe { ring.submitter().register_buffers(&[iovec]) }
    });
    let error = fourth.expect_err("a fourth ring and registration exceed the need");
    assert_eq!(error.raw_os_error(), Some(libc::ENOMEM));
    println!("FITS");
}

#[test]
fn one_executor_fits_in_the_computed_need() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let need = memlock_needed_bytes(1, IO_MEMORY_BYTES);
    let mut hard = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut hard) };
    assert_eq!(result, 0);
    if hard.rlim_max < need {
        eprintln!("skipped: the hard limit is below one executor's need");
        return;
    }
    // The memory of a previous child's rings is released asynchronously
    // and counts against the same user meanwhile: allow a few tries.
    let mut last = String::new();
    for _ in 0..3 {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"]).env(CHILD_ENV, "1");
        let limit = libc::rlimit { rlim_cur: need, rlim_max: hard.rlim_max };
        // SAFETY: between fork and exec the closure only makes two
        // async-signal-safe system calls.
        unsafe {
            command.pre_exec(move || {
                // Without CAP_SETPCAP (not root) this fails and the child
                // lacks CAP_IPC_LOCK anyway.
                libc::prctl(libc::PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0);
                if libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let output = command.output().unwrap();
        last = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        // SAFETY: geteuid has no arguments and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if output.status.success() && last.contains("SKIP") {
            assert!(!root, "root can always drop CAP_IPC_LOCK:\n{last}");
            return;
        }
        if output.status.success() && last.contains("FITS") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    panic!("the child never fit in {need} bytes:\n{last}");
}
