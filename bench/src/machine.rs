//! Facts about the machine a run was measured on, and CPU time counters
//! that tell how busy the shard's core was.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineFacts {
    pub cores: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory_bytes: u64,
    /// File system of the data directory (`ext4`, `xfs`, `tmpfs`, or the magic number).
    pub filesystem: String,
    /// UTC time the run started, RFC 3339.
    pub date: String,
    /// Load average (1, 5, 15 minutes) when the run started: other work on
    /// the machine competes with the shard for its two cores.
    pub load_average: [f64; 3],
    /// Whether the kernel may back any of this process's memory with
    /// transparent huge pages (`THP_enabled` in /proc/self/status; still
    /// true when only the O_DIRECT buffers may, `write.heap_huge_page_bytes`
    /// says where they went). Absent where the kernel does not say, and in
    /// files written before it was recorded.
    #[serde(default)]
    pub process_thp_enabled: Option<bool>,
}

fn uname_release() -> String {
    // SAFETY: utsname is plain data; uname fills it and we read it only on success.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates `release` within the array.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

fn filesystem_of(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: statfs is plain data, filled by the call below.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` writable.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return "unknown".into();
    }
    match stat.f_type as u64 {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x9123_683E => "btrfs".into(),
        0x794C_7630 => "overlayfs".into(),
        other => format!("{other:#x}"),
    }
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().unwrap_or(0.0));
    [fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0)]
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC time.
pub fn rfc3339(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let rem = unix_seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

impl MachineFacts {
    pub fn collect(data_dir: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Self {
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            kernel: uname_release(),
            memory_bytes,
            filesystem: filesystem_of(data_dir),
            date: rfc3339(now.as_secs()),
            load_average: load_average(),
            process_thp_enabled: pinion_engine::huge_pages::transparent_hugepages_enabled(),
        }
    }
}

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    fn of(who: libc::c_int) -> Self {
        // SAFETY: rusage is plain data, filled by getrusage.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is writable; `who` is RUSAGE_SELF or RUSAGE_THREAD.
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return Self::default();
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Self { user: tv(usage.ru_utime), system: tv(usage.ru_stime) }
    }

    /// CPU time of the calling thread (the shard).
    pub fn thread() -> Self {
        Self::of(libc::RUSAGE_THREAD)
    }

    /// CPU time of the whole process, including io_uring worker threads.
    pub fn process() -> Self {
        Self::of(libc::RUSAGE_SELF)
    }

    pub fn since(self, earlier: Self) -> Self {
        Self { user: self.user.saturating_sub(earlier.user), system: self.system.saturating_sub(earlier.system) }
    }
}

/// Scheduler counters of the calling thread (`/proc/thread-self/schedstat`):
/// time spent on a CPU and time spent runnable but waiting for one.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedStat {
    pub on_cpu: Duration,
    pub waiting: Duration,
}

impl SchedStat {
    pub fn thread() -> Self {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
        Self {
            on_cpu: Duration::from_nanos(fields.next().unwrap_or(0)),
            waiting: Duration::from_nanos(fields.next().unwrap_or(0)),
        }
    }

    pub fn since(self, earlier: Self) -> Self {
        Self {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
            waiting: self.waiting.saturating_sub(earlier.waiting),
        }
    }
}

/// Whole-machine CPU counters from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemCpu {
    busy_ticks: u64,
    steal_ticks: u64,
}

impl SystemCpu {
    pub fn read() -> Self {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = text.lines().next() else { return Self::default() };
        let ticks: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal ...
        let get = |i: usize| ticks.get(i).copied().unwrap_or(0);
        let busy_ticks = get(0) + get(1) + get(2) + get(5) + get(6);
        Self { busy_ticks, steal_ticks: get(7) }
    }

    /// (busy cores, stolen cores) over `wall` since `earlier`.
    pub fn cores_since(self, earlier: Self, wall: Duration) -> (f64, f64) {
        // SAFETY: sysconf only reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let wall = wall.as_secs_f64().max(1e-9);
        (
            self.busy_ticks.saturating_sub(earlier.busy_ticks) as f64 / hz / wall,
            self.steal_ticks.saturating_sub(earlier.steal_ticks) as f64 / hz / wall,
        )
    }
}

/// Bytes this process made the block layer read and write
/// (`/proc/self/io` `read_bytes`, `write_bytes`; O_DIRECT I/O is counted
/// when it is submitted, so these are device bytes, padding included).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl DeviceIo {
    pub fn read() -> Self {
        let text = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let field = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0)
        };
        Self { read_bytes: field("read_bytes:"), write_bytes: field("write_bytes:") }
    }

    pub fn since(self, earlier: Self) -> Self {
        Self {
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
        }
    }
}

/// How busy a thread or process was over a wall-clock interval, in cores.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUse {
    pub user_cores: f64,
    pub system_cores: f64,
}

impl CpuUse {
    pub fn of(cpu: CpuTime, wall: Duration) -> Self {
        let wall = wall.as_secs_f64().max(1e-9);
        Self { user_cores: cpu.user.as_secs_f64() / wall, system_cores: cpu.system.as_secs_f64() / wall }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
