//! Network sysctls that limit a broker: the accept backlog, the TCP
//! buffer ceilings, and busy polling.
//!
//! `net.core.somaxconn` caps every listen backlog: a reconnect storm of
//! clients overflows a small one and connections are dropped. The third
//! number of `tcp_rmem`/`tcp_wmem` caps how far autotuning grows a
//! connection's buffers; below a link's bandwidth-delay product a single
//! producer or consumer cannot fill the link. Busy polling is reported,
//! not changed: it trades CPU for latency, and on small hosts the CPU
//! belongs to the shards.

use super::Check;
use crate::sysfs;
use crate::units::{format_bytes_exact, MIB};

pub const SOMAXCONN_MIN: u32 = 4096;
/// The buffer ceiling below which the check warns, and what `apply` sets.
pub const TCP_BUFFER_MAX_BYTES: u64 = 16 * MIB;

pub const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";
pub const TCP_RMEM_PATH: &str = "/proc/sys/net/ipv4/tcp_rmem";
pub const TCP_WMEM_PATH: &str = "/proc/sys/net/ipv4/tcp_wmem";

/// The three numbers of `tcp_rmem`/`tcp_wmem`: min, default and max bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpBuffer {
    pub min: u64,
    pub default: u64,
    pub max: u64,
}

impl TcpBuffer {
    /// The sysctl's text form, tab separated as the kernel prints it.
    pub fn to_sysctl(self) -> String {
        format!("{}\t{}\t{}", self.min, self.default, self.max)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkObservation {
    pub somaxconn: Option<u32>,
    pub tcp_rmem: Option<TcpBuffer>,
    pub tcp_wmem: Option<TcpBuffer>,
    pub busy_poll: Option<u32>,
    pub busy_read: Option<u32>,
}

/// Parses `4096\t131072\t6291456`.
pub fn parse_tcp_buffer(text: &str) -> Option<TcpBuffer> {
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>());
    let buffer = TcpBuffer { min: numbers.next()?.ok()?, default: numbers.next()?.ok()?, max: numbers.next()?.ok()? };
    numbers.next().is_none().then_some(buffer)
}

pub fn observe() -> NetworkObservation {
    NetworkObservation {
        somaxconn: sysfs::read_number(SOMAXCONN_PATH),
        tcp_rmem: sysfs::read_optional(TCP_RMEM_PATH).and_then(|t| parse_tcp_buffer(&t)),
        tcp_wmem: sysfs::read_optional(TCP_WMEM_PATH).and_then(|t| parse_tcp_buffer(&t)),
        busy_poll: sysfs::read_number("/proc/sys/net/core/busy_poll"),
        busy_read: sysfs::read_number("/proc/sys/net/core/busy_read"),
    }
}

/// The value `apply` writes for a TCP buffer sysctl: the same min and
/// default, the ceiling raised to [`TCP_BUFFER_MAX_BYTES`].
pub fn raised_tcp_buffer(current: TcpBuffer) -> TcpBuffer {
    TcpBuffer { max: current.max.max(TCP_BUFFER_MAX_BYTES), ..current }
}

pub fn check_somaxconn(observation: &NetworkObservation) -> Check {
    const NAME: &str = "net.core.somaxconn";
    match observation.somaxconn {
        None => Check::ok(NAME, "not readable (network namespace without /proc/sys/net?)"),
        Some(value) if value >= SOMAXCONN_MIN => Check::ok(NAME, value.to_string()),
        Some(value) => Check::warn(
            NAME,
            format!("{value}: a burst of reconnecting clients overflows the accept queue"),
            format!("pinion-tune apply (sets {SOMAXCONN_MIN}), or `sysctl -w net.core.somaxconn={SOMAXCONN_MIN}`"),
        ),
    }
}

fn check_tcp_buffer(name: &str, buffer: Option<TcpBuffer>) -> Check {
    let Some(buffer) = buffer else {
        return Check::ok(name, "not readable");
    };
    let found = format!("{} {} {} (max {})", buffer.min, buffer.default, buffer.max, format_bytes_exact(buffer.max));
    if buffer.max >= TCP_BUFFER_MAX_BYTES {
        return Check::ok(name, found);
    }
    let raised = raised_tcp_buffer(buffer);
    Check::warn(
        name,
        format!("{found}: caps one connection's window below a fast link's bandwidth-delay product"),
        format!(
            "pinion-tune apply (sets max {}), or `sysctl -w {name}=\"{} {} {}\"`",
            format_bytes_exact(TCP_BUFFER_MAX_BYTES),
            raised.min,
            raised.default,
            raised.max
        ),
    )
}

pub fn check_tcp_rmem(observation: &NetworkObservation) -> Check {
    check_tcp_buffer("net.ipv4.tcp_rmem", observation.tcp_rmem)
}

pub fn check_tcp_wmem(observation: &NetworkObservation) -> Check {
    check_tcp_buffer("net.ipv4.tcp_wmem", observation.tcp_wmem)
}

pub fn check_busy_poll(observation: &NetworkObservation) -> Check {
    const NAME: &str = "net.core.busy_poll";
    let show = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
    let found = format!("busy_poll={} busy_read={}", show(observation.busy_poll), show(observation.busy_read));
    let spinning = observation.busy_poll.unwrap_or(0) > 0 || observation.busy_read.unwrap_or(0) > 0;
    if spinning {
        Check::ok(NAME, format!("{found} (µs): socket waits spin on the CPU, lower latency for CPU taken from shards"))
    } else {
        Check::ok(NAME, format!("{found}: off, socket waits sleep and io_uring does the waiting"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    /// The values read on this machine.
    fn here() -> NetworkObservation {
        NetworkObservation {
            somaxconn: Some(4096),
            tcp_rmem: parse_tcp_buffer("4096\t131072\t33554432\n"),
            tcp_wmem: parse_tcp_buffer("4096\t16384\t4194304\n"),
            busy_poll: Some(0),
            busy_read: Some(0),
        }
    }

    #[test]
    fn parses_tcp_buffers() {
        let buffer = parse_tcp_buffer("4096\t16384\t4194304\n").unwrap();
        assert_eq!((buffer.min, buffer.default, buffer.max), (4096, 16384, 4194304));
        assert_eq!(parse_tcp_buffer("1 2"), None);
        assert_eq!(parse_tcp_buffer("1 2 3 4"), None);
        assert_eq!(buffer.to_sysctl(), "4096\t16384\t4194304");
    }

    #[test]
    fn small_write_buffer_ceiling_warns() {
        let host = here();
        assert_eq!(check_somaxconn(&host).status, Status::Ok);
        assert_eq!(check_tcp_rmem(&host).status, Status::Ok);
        let wmem = check_tcp_wmem(&host);
        assert_eq!(wmem.status, Status::Warn);
        assert!(wmem.found.starts_with("4096 16384 4194304 (max 4 MiB)"), "{}", wmem.found);
        assert!(wmem.remedy.unwrap().contains("\"4096 16384 16777216\""));
        assert_eq!(check_busy_poll(&host).status, Status::Ok);
    }

    #[test]
    fn old_default_backlog_warns() {
        let host = NetworkObservation { somaxconn: Some(128), ..here() };
        let check = check_somaxconn(&host);
        assert_eq!(check.status, Status::Warn);
        assert!(check.found.starts_with("128"));
    }
}
