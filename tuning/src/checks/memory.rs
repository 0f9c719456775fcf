//! Memory management settings that cost a broker latency: transparent huge
//! pages and swappiness.
//!
//! THP `always` makes every large anonymous mapping a huge-page candidate:
//! page faults stall on compaction and khugepaged rewrites memory behind
//! the shards' backs. `madvise` keeps huge pages for memory that asks for
//! them (allocators and caches that opt in), which is what a broker wants;
//! `never` is fine too. Swappiness matters only when swap exists: a high
//! value lets the kernel push shard memory out to keep page cache, which
//! the broker does not use for its O_DIRECT data anyway.

use super::Check;
use crate::sysfs::{self, parse_choice, Choice};

/// The swappiness above which the check warns, and `apply` sets.
pub const SWAPPINESS_MAX: u32 = 10;
pub const SWAPPINESS_TARGET: u32 = 1;

pub const THP_ENABLED_PATH: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
pub const THP_DEFRAG_PATH: &str = "/sys/kernel/mm/transparent_hugepage/defrag";
pub const SWAPPINESS_PATH: &str = "/proc/sys/vm/swappiness";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryObservation {
    /// `transparent_hugepage/enabled`; `None` without THP in the kernel.
    pub thp_enabled: Option<Choice>,
    /// `transparent_hugepage/defrag`.
    pub thp_defrag: Option<Choice>,
    /// `vm.swappiness`.
    pub swappiness: Option<u32>,
    /// `SwapTotal` from `/proc/meminfo`, in KiB.
    pub swap_total_kib: Option<u64>,
}

/// `SwapTotal:` in KiB from `/proc/meminfo` text.
pub fn parse_swap_total_kib(meminfo: &str) -> Option<u64> {
    let value = sysfs::status_field(meminfo, "SwapTotal")?;
    value.trim_end_matches("kB").trim().parse().ok()
}

pub fn observe() -> MemoryObservation {
    MemoryObservation {
        thp_enabled: sysfs::read_optional(THP_ENABLED_PATH).and_then(|t| parse_choice(&t)),
        thp_defrag: sysfs::read_optional(THP_DEFRAG_PATH).and_then(|t| parse_choice(&t)),
        swappiness: sysfs::read_number(SWAPPINESS_PATH),
        swap_total_kib: sysfs::read_optional("/proc/meminfo").and_then(|text| parse_swap_total_kib(&text)),
    }
}

pub fn check_transparent_hugepages(observation: &MemoryObservation) -> Check {
    const NAME: &str = "transparent_hugepages";
    let Some(enabled) = &observation.thp_enabled else {
        return Check::ok(NAME, "not built into this kernel");
    };
    let defrag = observation.thp_defrag.as_ref().map_or("unknown", |d| d.selected.as_str());
    let found = format!("enabled={}, defrag={defrag}", enabled.selected);
    let mut problems = Vec::new();
    if enabled.selected == "always" {
        problems.push(
            "every large mapping becomes a huge page: khugepaged and compaction stall page faults and inflate memory",
        );
    }
    if enabled.selected == "never" {
        problems.push(
            "pinion's O_DIRECT buffers cannot use huge pages: reads from disk are slower and writes cost more CPU \
             (docs/TUNING.md)",
        );
    }
    if defrag == "always" {
        problems.push("defrag=always compacts memory synchronously inside page faults");
    }
    if problems.is_empty() {
        Check::ok(NAME, found)
    } else {
        Check::warn(
            NAME,
            format!("{found}: {}", problems.join("; ")),
            "pinion-tune apply (sets madvise), or `echo madvise > /sys/kernel/mm/transparent_hugepage/enabled`",
        )
    }
}

pub fn check_swappiness(observation: &MemoryObservation) -> Check {
    const NAME: &str = "swappiness";
    let Some(swappiness) = observation.swappiness else {
        return Check::ok(NAME, "vm.swappiness not readable");
    };
    match observation.swap_total_kib {
        Some(0) => Check::ok(NAME, format!("{swappiness}, no swap configured")),
        _ if swappiness <= SWAPPINESS_MAX => Check::ok(NAME, swappiness.to_string()),
        swap => {
            let swap = swap
                .map_or("swap".to_string(), |kib| format!("{} of swap", crate::units::format_bytes_exact(kib * 1024)));
            Check::warn(
                NAME,
                format!("{swappiness} with {swap}: the kernel swaps shard memory out to keep page cache"),
                format!("pinion-tune apply (sets vm.swappiness={SWAPPINESS_TARGET}), or `sysctl -w vm.swappiness={SWAPPINESS_TARGET}`"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    const MEMINFO_NO_SWAP: &str = include_str!("../../tests/fixtures/meminfo_no_swap");

    fn thp(enabled: &str, defrag: &str) -> MemoryObservation {
        MemoryObservation {
            thp_enabled: parse_choice(enabled),
            thp_defrag: parse_choice(defrag),
            swappiness: Some(60),
            swap_total_kib: parse_swap_total_kib(MEMINFO_NO_SWAP),
        }
    }

    #[test]
    fn thp_madvise_is_ok_and_always_or_never_warns() {
        let here = thp("always [madvise] never\n", "always defer defer+madvise [madvise] never\n");
        let check = check_transparent_hugepages(&here);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.found, "enabled=madvise, defrag=madvise");
        let always = thp("[always] madvise never", "[always] defer defer+madvise madvise never");
        let check = check_transparent_hugepages(&always);
        assert_eq!(check.status, Status::Warn);
        assert!(check.remedy.unwrap().contains("madvise"));
        let never = thp("always madvise [never]", "always defer defer+madvise madvise [never]");
        let check = check_transparent_hugepages(&never);
        assert_eq!(check.status, Status::Warn);
        assert!(check.found.contains("O_DIRECT buffers"), "{}", check.found);
        let none = MemoryObservation::default();
        assert_eq!(check_transparent_hugepages(&none).found, "not built into this kernel");
    }

    #[test]
    fn swappiness_matters_only_with_swap() {
        let here = thp("[never]", "[never]");
        assert_eq!(here.swap_total_kib, Some(0));
        let check = check_swappiness(&here);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.found, "60, no swap configured");
        let swapping = MemoryObservation { swap_total_kib: Some(8 * 1024 * 1024), ..here.clone() };
        let check = check_swappiness(&swapping);
        assert_eq!(check.status, Status::Warn);
        assert!(check.found.starts_with("60 with 8 GiB of swap"), "{}", check.found);
        let low = MemoryObservation { swappiness: Some(1), ..swapping };
        assert_eq!(check_swappiness(&low).status, Status::Ok);
    }
}
