//! The kernel release, from `/proc/sys/kernel/osrelease`.
//!
//! glommio needs 5.8 or newer; the opcodes the broker uses all exist from
//! 5.6 (see [`super::io_uring`]), so 5.8 is the floor.

use std::fmt;

use super::Check;
use crate::sysfs;

/// A kernel version, from the leading `major.minor[.patch]` of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The oldest kernel the broker supports (glommio's own minimum).
pub const KERNEL_MIN: KernelVersion = KernelVersion { major: 5, minor: 8, patch: 0 };

/// Parses `6.18.44-fc-v669`, `5.4.0-150-generic` or `4.19`.
pub fn parse_kernel_release(release: &str) -> Option<KernelVersion> {
    let numeric: String = release.trim().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut parts = numeric.split('.').filter(|p| !p.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some(KernelVersion { major, minor, patch })
}

/// Reads the live kernel release.
pub fn observe() -> Option<String> {
    sysfs::read_optional("/proc/sys/kernel/osrelease")
}

pub fn check_kernel(release: Option<&str>) -> Check {
    const NAME: &str = "kernel";
    let Some(release) = release else {
        return Check::warn(
            NAME,
            "could not read /proc/sys/kernel/osrelease",
            "mount /proc so the broker can see the kernel",
        );
    };
    match parse_kernel_release(release) {
        None => Check::warn(
            NAME,
            format!("unrecognised release {release:?}"),
            format!("run on Linux {KERNEL_MIN} or newer"),
        ),
        Some(version) if version < KERNEL_MIN => Check::fail(
            NAME,
            format!("{release}: older than {KERNEL_MIN}, the oldest kernel glommio's io_uring use supports"),
            "upgrade to a 5.15 or newer LTS kernel",
        ),
        Some(_) => Check::ok(NAME, release),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    #[test]
    fn parses_distribution_releases() {
        let v = |major, minor, patch| KernelVersion { major, minor, patch };
        assert_eq!(parse_kernel_release("6.18.44-fc-v669\n"), Some(v(6, 18, 44)));
        assert_eq!(parse_kernel_release("5.4.0-150-generic"), Some(v(5, 4, 0)));
        assert_eq!(parse_kernel_release("4.19"), Some(v(4, 19, 0)));
        assert_eq!(parse_kernel_release("6.8.0-rc1"), Some(v(6, 8, 0)));
        assert_eq!(parse_kernel_release("linux"), None);
    }

    #[test]
    fn old_kernels_fail() {
        assert_eq!(check_kernel(Some("6.18.44-fc-v669")).status, Status::Ok);
        assert_eq!(check_kernel(Some("5.8.0")).status, Status::Ok);
        let old = check_kernel(Some("5.4.0-150-generic"));
        assert_eq!(old.status, Status::Fail);
        assert!(old.found.contains("older than 5.8.0"), "{}", old.found);
        assert_eq!(check_kernel(None).status, Status::Warn);
    }
}
