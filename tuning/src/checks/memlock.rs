//! RLIMIT_MEMLOCK against what the broker's executors lock.
//!
//! Each shard is one glommio executor. glommio refuses to start an
//! executor when the soft limit is below 512 KiB, then sets up three rings
//! (main, latency, poll; 128 entries each) and registers its `io_memory`
//! buffer (rounded up to 4 KiB, at least 64 KiB) with each of them. For a
//! process without CAP_IPC_LOCK the kernel charges both the ring memory and
//! every registration, per ring, to the user's locked-memory count, so one
//! shard locks three times (io_memory + one ring). Measured on Linux 6.18
//! with the capability dropped: a 2 MiB limit holds three 8-entry rings
//! with a 512 KiB buffer registered in each, not four; a 128-entry ring
//! costs 16 KiB.
//!
//! The count is per user, not per process: two brokers (or a broker and
//! its tests) under one uid share the limit, and the memory of closed
//! rings is released asynchronously, so a broker restarted at once may
//! briefly find less room. A process with CAP_IPC_LOCK is not charged at
//! all, but glommio's own 512 KiB floor still applies to it.

use super::Check;
use crate::sysfs;
use crate::units::{format_bytes_exact, format_limit, KIB};

/// glommio's floor: below this soft limit an executor does not start.
pub const GLOMMIO_MEMLOCK_FLOOR_BYTES: u64 = 512 * KIB;
/// Rings per glommio executor, each registering the io_memory buffer.
pub const RINGS_PER_EXECUTOR: u64 = 3;
/// glommio rounds io_memory up to a page and to at least this much.
pub const GLOMMIO_IO_MEMORY_MIN_BYTES: u64 = 64 * KIB;
/// What the kernel charges for one of glommio's 128-entry rings: two pages
/// of SQ/CQ rings and two of SQEs.
pub const RING_MEMLOCK_BYTES: u64 = 16 * KIB;
/// The capability that exempts a process from io_uring's charges.
const CAP_IPC_LOCK: u32 = 14;

/// The locked memory a broker of `shards` executors, each registering
/// `io_memory_bytes_per_shard`, needs under RLIMIT_MEMLOCK: per shard,
/// three rings and three registrations of its io_memory, and never less
/// than glommio's 512 KiB floor.
pub fn memlock_needed_bytes(shards: usize, io_memory_bytes_per_shard: usize) -> u64 {
    let io_memory = (io_memory_bytes_per_shard as u64).max(GLOMMIO_IO_MEMORY_MIN_BYTES).div_ceil(4 * KIB) * (4 * KIB);
    let per_shard = RINGS_PER_EXECUTOR * (io_memory + RING_MEMLOCK_BYTES);
    (shards as u64).saturating_mul(per_shard).max(GLOMMIO_MEMLOCK_FLOOR_BYTES)
}

/// The limits this process runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemlockObservation {
    /// Soft limit in bytes; `u64::MAX` is unlimited.
    pub soft: u64,
    /// Hard limit in bytes; `u64::MAX` is unlimited.
    pub hard: u64,
    /// Whether the process holds CAP_IPC_LOCK (root usually does).
    pub cap_ipc_lock: bool,
}

/// Whether the `CapEff:` mask in `/proc/self/status` text has CAP_IPC_LOCK.
pub fn parse_cap_ipc_lock(status: &str) -> bool {
    sysfs::status_field(status, "CapEff")
        .and_then(|mask| u64::from_str_radix(mask, 16).ok())
        .is_some_and(|mask| mask & (1 << CAP_IPC_LOCK) != 0)
}

/// Parses the `Max locked memory` line of `/proc/<pid>/limits` text into
/// (soft, hard), for hosts captured from outside the process.
pub fn parse_proc_limits(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    let mut values = line["Max locked memory".len()..].split_whitespace();
    let parse = |word: &str| match word {
        "unlimited" => Some(u64::MAX),
        number => number.parse().ok(),
    };
    let soft = parse(values.next()?)?;
    let hard = parse(values.next()?)?;
    Some((soft, hard))
}

/// The live limits from getrlimit and the capability from /proc.
pub fn observe() -> MemlockObservation {
    let (soft, hard) = current_limits();
    MemlockObservation {
        soft,
        hard,
        cap_ipc_lock: sysfs::read_optional("/proc/self/status").is_some_and(|status| parse_cap_ipc_lock(&status)),
    }
}

/// RLIMIT_MEMLOCK (soft, hard) of this process, `u64::MAX` for unlimited.
pub fn current_limits() -> (u64, u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    assert_eq!(result, 0, "getrlimit(RLIMIT_MEMLOCK) cannot fail");
    (to_bytes(limit.rlim_cur), to_bytes(limit.rlim_max))
}

fn to_bytes(value: libc::rlim_t) -> u64 {
    if value == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        value
    }
}

/// Raises this process's soft limit towards `needed_bytes`, as far as the
/// hard limit allows (no privilege needed). The broker calls this before
/// starting executors; returns the soft limit now in force.
pub fn raise_soft_limit(needed_bytes: u64) -> std::io::Result<u64> {
    let (soft, hard) = current_limits();
    if soft >= needed_bytes {
        return Ok(soft);
    }
    let target = needed_bytes.min(hard);
    let limit = libc::rlimit {
        rlim_cur: if target == u64::MAX { libc::RLIM_INFINITY } else { target },
        rlim_max: if hard == u64::MAX { libc::RLIM_INFINITY } else { hard },
    };
    // SAFETY: setrlimit reads one rlimit from the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(target)
}

const REMEDY_RAISE: &str =
    "raise it: `ulimit -l unlimited` or LimitMEMLOCK=infinity in the systemd unit or `--ulimit memlock=-1` for docker";

pub fn check_memlock(observation: &MemlockObservation, shards: usize, io_memory_bytes_per_shard: usize) -> Check {
    const NAME: &str = "memlock";
    let need = memlock_needed_bytes(shards, io_memory_bytes_per_shard);
    let found = format!(
        "soft {}, hard {}; need {} for {shards} shard{} (each {} rings + {} registrations of {} io_memory)",
        format_limit(observation.soft),
        format_limit(observation.hard),
        format_bytes_exact(need),
        if shards == 1 { "" } else { "s" },
        RINGS_PER_EXECUTOR,
        RINGS_PER_EXECUTOR,
        format_bytes_exact(io_memory_bytes_per_shard as u64),
    );
    if observation.soft < GLOMMIO_MEMLOCK_FLOOR_BYTES {
        return Check::fail(
            NAME,
            format!("{found}; below glommio's 512 KiB floor, no executor can start"),
            remedy(observation.hard, need),
        );
    }
    if observation.soft >= need {
        return Check::ok(NAME, found);
    }
    if observation.cap_ipc_lock {
        return Check::ok(
            NAME,
            format!("{found}; CAP_IPC_LOCK exempts this process's rings and buffers from the limit"),
        );
    }
    Check::fail(NAME, found, remedy(observation.hard, need))
}

fn remedy(hard: u64, need: u64) -> String {
    if hard >= need {
        format!(
            "the hard limit allows it: `ulimit -l {}` before starting the broker, or {REMEDY_RAISE}",
            need.div_ceil(KIB)
        )
    } else {
        format!("the hard limit needs an administrator; {REMEDY_RAISE}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;
    use crate::units::MIB;

    const LIMITS_64K: &str = include_str!("../../tests/fixtures/proc_self_limits_64k");

    #[test]
    fn need_counts_three_rings_per_shard_and_the_floor() {
        // 2 shards x 3 x (512 KiB registered + a 16 KiB ring).
        assert_eq!(memlock_needed_bytes(2, 512 * 1024), 2 * 3 * 528 * KIB);
        // A tiny io_memory is rounded up to glommio's 64 KiB minimum, and
        // the total never drops below glommio's 512 KiB floor.
        assert_eq!(memlock_needed_bytes(1, 1), 512 * KIB);
        assert_eq!(memlock_needed_bytes(4, 1000), 4 * 3 * (64 + 16) * KIB);
        assert_eq!(memlock_needed_bytes(0, 0), 512 * KIB);
    }

    #[test]
    fn a_64k_limit_fails_with_the_raise_remedy() {
        let (soft, hard) = parse_proc_limits(LIMITS_64K).unwrap();
        assert_eq!((soft, hard), (64 * KIB, 64 * KIB));
        let observation = MemlockObservation { soft, hard, cap_ipc_lock: false };
        let check = check_memlock(&observation, 2, 512 * 1024);
        assert_eq!(check.status, Status::Fail);
        assert!(check.found.starts_with("soft 64 KiB, hard 64 KiB; need 3168 KiB for 2 shards"), "{}", check.found);
        let remedy = check.remedy.unwrap();
        assert!(remedy.contains("ulimit -l unlimited"), "{remedy}");
        assert!(remedy.contains("LimitMEMLOCK=infinity"), "{remedy}");
        assert!(remedy.contains("--ulimit memlock=-1"), "{remedy}");
        assert!(remedy.contains("administrator"), "{remedy}");
    }

    #[test]
    fn eight_mib_is_enough_for_two_shards() {
        let observation = MemlockObservation { soft: 8 * MIB, hard: 8 * MIB, cap_ipc_lock: false };
        assert_eq!(check_memlock(&observation, 2, 512 * 1024).status, Status::Ok);
        // Six shards need 9.3 MiB: more than the 8 MiB hard limit.
        let check = check_memlock(&observation, 6, 512 * 1024);
        assert_eq!(check.status, Status::Fail);
        // With CAP_IPC_LOCK the registered buffers are not charged.
        let privileged = MemlockObservation { cap_ipc_lock: true, ..observation };
        assert_eq!(check_memlock(&privileged, 6, 512 * 1024).status, Status::Ok);
    }

    #[test]
    fn a_soft_limit_below_a_higher_hard_limit_says_ulimit() {
        let observation = MemlockObservation { soft: 1024 * KIB, hard: u64::MAX, cap_ipc_lock: false };
        let check = check_memlock(&observation, 2, 512 * 1024);
        assert_eq!(check.status, Status::Fail);
        assert!(check.found.contains("hard unlimited"));
        assert!(check.remedy.unwrap().contains("`ulimit -l 3168`"));
    }

    #[test]
    fn capability_mask_parsing() {
        assert!(parse_cap_ipc_lock("CapEff:\t000001fffeffffff\n"));
        assert!(!parse_cap_ipc_lock("CapEff:\t0000000000000000\n"));
        assert!(!parse_cap_ipc_lock("Name:\tx\n"));
    }

    #[test]
    fn live_limits_match_proc() {
        let (soft, hard) = current_limits();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        assert_eq!(parse_proc_limits(&limits), Some((soft, hard)));
    }
}
