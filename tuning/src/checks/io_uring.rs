//! Whether this process can use io_uring, and whether the kernel has every
//! opcode the broker issues.
//!
//! The sysctl `kernel.io_uring_disabled` (Linux 6.6+) explains *why* rings
//! may be refused, but only a real ring says whether *this* process gets
//! one: seccomp profiles (recent Docker defaults among them), gVisor and
//! LSM policies refuse `io_uring_setup` without any sysctl. So the live
//! layer sets up a small ring, completes a NOP through it, and asks the
//! kernel's probe which opcodes it supports.

use io_uring::{opcode, IoUring, Probe};

use super::Check;
use crate::sysfs::{self, describe_errno};

/// The opcodes the broker (through glommio) issues, by name.
pub const REQUIRED_OPCODES: [(&str, u8); 15] = [
    ("READ", opcode::Read::CODE),
    ("WRITE", opcode::Write::CODE),
    ("READV", opcode::Readv::CODE),
    ("WRITEV", opcode::Writev::CODE),
    ("FSYNC", opcode::Fsync::CODE),
    ("FALLOCATE", opcode::Fallocate::CODE),
    ("OPENAT", opcode::OpenAt::CODE),
    ("CLOSE", opcode::Close::CODE),
    ("STATX", opcode::Statx::CODE),
    ("ACCEPT", opcode::Accept::CODE),
    ("SEND", opcode::Send::CODE),
    ("RECV", opcode::Recv::CODE),
    ("TIMEOUT", opcode::Timeout::CODE),
    ("POLL_ADD", opcode::PollAdd::CODE),
    ("ASYNC_CANCEL", opcode::AsyncCancel::CODE),
];

/// What happened when this process tried to use a ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RingProbe {
    /// A ring was set up, a NOP completed, and the probe answered; lists the
    /// required opcodes the kernel lacks.
    Ready { missing_opcodes: Vec<String> },
    /// `io_uring_setup` failed with this errno.
    SetupFailed { errno: i32 },
    /// The ring was set up but submitting or completing a NOP failed.
    NopFailed { errno: i32 },
    /// The ring works but `IORING_REGISTER_PROBE` failed (kernels before
    /// 5.6 answer EINVAL): the supported opcodes are unknown.
    ProbeFailed { errno: i32 },
}

/// The io_uring policy sysctls and what a real ring did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoUringObservation {
    /// `kernel.io_uring_disabled`: 0 allowed, 1 only for
    /// `kernel.io_uring_group` and CAP_SYS_ADMIN, 2 off. `None` before 6.6.
    pub disabled: Option<u8>,
    /// `kernel.io_uring_group` (-1 means no group).
    pub group: Option<i64>,
    /// The `Seccomp:` mode from `/proc/self/status` (2 means a filter).
    pub seccomp_mode: Option<u8>,
    pub probe: RingProbe,
}

pub fn parse_io_uring_disabled(text: &str) -> Option<u8> {
    text.trim().parse().ok()
}

/// The seccomp mode from `/proc/self/status` text.
pub fn parse_seccomp_mode(status: &str) -> Option<u8> {
    sysfs::status_field(status, "Seccomp")?.parse().ok()
}

/// Reads the sysctls and tries a real ring.
pub fn observe() -> IoUringObservation {
    IoUringObservation {
        disabled: sysfs::read_optional("/proc/sys/kernel/io_uring_disabled")
            .and_then(|text| parse_io_uring_disabled(&text)),
        group: sysfs::read_number("/proc/sys/kernel/io_uring_group"),
        seccomp_mode: sysfs::read_optional("/proc/self/status").and_then(|status| parse_seccomp_mode(&status)),
        probe: probe_ring(),
    }
}

/// Sets up an 8-entry ring, completes a NOP and reads the opcode probe.
pub fn probe_ring() -> RingProbe {
    let mut ring = match IoUring::new(8) {
        Ok(ring) => ring,
        Err(error) => return RingProbe::SetupFailed { errno: error.raw_os_error().unwrap_or(libc::EIO) },
    };
    let nop = opcode::Nop::new().build().user_data(1);
    // SAFETY: a NOP references no memory, so nothing must outlive it.
    if unsafe { ring.submission().push(&nop) }.is_err() {
        return RingProbe::NopFailed { errno: libc::EBUSY };
    }
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => break,
            Err(error) if error.raw_os_error() == Some(libc::EINTR) => continue,
            Err(error) => return RingProbe::NopFailed { errno: error.raw_os_error().unwrap_or(libc::EIO) },
        }
    }
    match ring.completion().next() {
        Some(completion) if completion.result() >= 0 => {}
        Some(completion) => return RingProbe::NopFailed { errno: -completion.result() },
        None => return RingProbe::NopFailed { errno: libc::EIO },
    }
    let mut probe = Probe::new();
    if let Err(error) = ring.submitter().register_probe(&mut probe) {
        return RingProbe::ProbeFailed { errno: error.raw_os_error().unwrap_or(libc::EIO) };
    }
    RingProbe::Ready {
        missing_opcodes: REQUIRED_OPCODES
            .iter()
            .filter(|(_, code)| !probe.is_supported(*code))
            .map(|(name, _)| name.to_string())
            .collect(),
    }
}

fn describe_policy(observation: &IoUringObservation) -> String {
    match (observation.disabled, observation.group) {
        (None, _) => "no kernel.io_uring_disabled sysctl (kernel before 6.6)".to_string(),
        (Some(1), Some(group)) if group >= 0 => {
            format!("kernel.io_uring_disabled=1 (only group {group} and CAP_SYS_ADMIN)")
        }
        (Some(value), _) => format!("kernel.io_uring_disabled={value}"),
    }
}

pub fn check_io_uring(observation: &IoUringObservation) -> Check {
    const NAME: &str = "io_uring";
    let policy = describe_policy(observation);
    match &observation.probe {
        RingProbe::Ready { .. } | RingProbe::ProbeFailed { .. } => {
            Check::ok(NAME, format!("a ring was set up and completed a NOP; {policy}"))
        }
        RingProbe::NopFailed { errno } => Check::fail(
            NAME,
            format!("a ring was set up but io_uring_enter failed: {}; {policy}", describe_errno(*errno)),
            "allow io_uring_enter in the seccomp or LSM policy that confines the broker",
        ),
        RingProbe::SetupFailed { errno } => setup_failure(observation, *errno, &policy),
    }
}

fn setup_failure(observation: &IoUringObservation, errno: i32, policy: &str) -> Check {
    const NAME: &str = "io_uring";
    let error = describe_errno(errno);
    let seccomp = observation.seccomp_mode == Some(2);
    match (errno, observation.disabled) {
        (libc::EPERM, Some(2)) => Check::fail(
            NAME,
            format!("io_uring_setup: {error}: {policy}, io_uring is switched off for every process"),
            "if your security policy allows io_uring: `sysctl -w kernel.io_uring_disabled=0` (and in /etc/sysctl.d)",
        ),
        (libc::EPERM, Some(1)) => Check::fail(
            NAME,
            format!("io_uring_setup: {error}: {policy}, and this process is not in that group"),
            "add the broker's user to kernel.io_uring_group, or `sysctl -w kernel.io_uring_disabled=0`",
        ),
        (libc::EPERM, _) if seccomp => Check::fail(
            NAME,
            format!("io_uring_setup: {error}: blocked by this process's seccomp filter; {policy}"),
            "allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile (docker: --security-opt seccomp=<profile that allows them>)",
        ),
        (libc::EPERM, _) => Check::fail(
            NAME,
            format!("io_uring_setup: {error}: refused by a seccomp filter or LSM policy; {policy}"),
            "allow io_uring_setup, io_uring_enter and io_uring_register for the broker",
        ),
        (libc::ENOSYS, _) => Check::fail(
            NAME,
            format!(
                "io_uring_setup: {error}: the kernel has no io_uring (older than 5.1 or built without CONFIG_IO_URING){}",
                if seccomp { ", or a seccomp filter answers ENOSYS" } else { "" }
            ),
            "run on a 5.8+ kernel built with io_uring, outside sandboxes (gVisor) that lack it",
        ),
        (libc::ENOMEM, _) => Check::fail(
            NAME,
            format!("io_uring_setup: {error}: ring memory could not be allocated (before 5.12 rings count against RLIMIT_MEMLOCK)"),
            "raise the locked-memory limit: `ulimit -l unlimited` or LimitMEMLOCK=infinity in the systemd unit or `--ulimit memlock=-1` for docker",
        ),
        _ => Check::fail(
            NAME,
            format!("io_uring_setup: {error}; {policy}"),
            "run on a 5.8+ kernel with io_uring allowed for the broker",
        ),
    }
}

pub fn check_io_uring_opcodes(observation: &IoUringObservation) -> Check {
    const NAME: &str = "io_uring_opcodes";
    match &observation.probe {
        RingProbe::Ready { missing_opcodes } if missing_opcodes.is_empty() => {
            Check::ok(NAME, format!("all {} opcodes the broker uses are supported", REQUIRED_OPCODES.len()))
        }
        RingProbe::Ready { missing_opcodes } => Check::fail(
            NAME,
            format!("the kernel lacks {}", missing_opcodes.join(", ")),
            "upgrade to a 5.8 or newer kernel (every opcode the broker uses exists since 5.6)",
        ),
        RingProbe::ProbeFailed { errno } => Check::fail(
            NAME,
            format!(
                "the kernel cannot list its opcodes (IORING_REGISTER_PROBE: {}): older than 5.6",
                describe_errno(*errno)
            ),
            "upgrade to a 5.8 or newer kernel",
        ),
        RingProbe::SetupFailed { .. } | RingProbe::NopFailed { .. } => Check::fail(
            NAME,
            "not probed: this process cannot use a ring (see io_uring)",
            "fix the io_uring check first",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    fn observation(disabled: &str, seccomp_status: &str, probe: RingProbe) -> IoUringObservation {
        IoUringObservation {
            disabled: parse_io_uring_disabled(disabled),
            group: Some(-1),
            seccomp_mode: parse_seccomp_mode(seccomp_status),
            probe,
        }
    }

    #[test]
    fn a_working_ring_is_ok() {
        let ready = RingProbe::Ready { missing_opcodes: vec![] };
        let obs = observation("0\n", "Seccomp:\t0\n", ready);
        let check = check_io_uring(&obs);
        assert_eq!(check.status, Status::Ok);
        assert!(check.found.contains("kernel.io_uring_disabled=0"), "{}", check.found);
        assert_eq!(check_io_uring_opcodes(&obs).status, Status::Ok);
    }

    #[test]
    fn disabled_by_sysctl_fails_with_the_sysctl_named() {
        let obs = observation("2\n", "Seccomp:\t0\n", RingProbe::SetupFailed { errno: libc::EPERM });
        let check = check_io_uring(&obs);
        assert_eq!(check.status, Status::Fail);
        assert!(check.found.contains("kernel.io_uring_disabled=2"), "{}", check.found);
        assert!(check.found.contains("EPERM"), "{}", check.found);
        assert!(check.remedy.unwrap().contains("io_uring_disabled=0"));
        let opcodes = check_io_uring_opcodes(&obs);
        assert_eq!(opcodes.status, Status::Fail);
        assert!(opcodes.found.starts_with("not probed"));
    }

    #[test]
    fn group_restriction_and_seccomp_are_told_apart() {
        let mut obs = observation("1", "Seccomp:\t0", RingProbe::SetupFailed { errno: libc::EPERM });
        obs.group = Some(1001);
        let check = check_io_uring(&obs);
        assert!(check.found.contains("only group 1001"), "{}", check.found);
        assert!(check.remedy.unwrap().contains("kernel.io_uring_group"));

        let obs = observation("0", "Seccomp:\t2", RingProbe::SetupFailed { errno: libc::EPERM });
        let check = check_io_uring(&obs);
        assert!(check.found.contains("seccomp"), "{}", check.found);
        assert!(check.remedy.unwrap().contains("seccomp"));
    }

    #[test]
    fn enosys_means_no_io_uring_in_the_kernel() {
        let obs = IoUringObservation {
            disabled: None,
            group: None,
            seccomp_mode: Some(0),
            probe: RingProbe::SetupFailed { errno: libc::ENOSYS },
        };
        let check = check_io_uring(&obs);
        assert_eq!(check.status, Status::Fail);
        assert!(check.found.contains("ENOSYS"), "{}", check.found);
        assert!(check.found.contains("CONFIG_IO_URING"), "{}", check.found);
    }

    #[test]
    fn missing_opcodes_are_listed() {
        let obs = observation("0", "", RingProbe::Ready { missing_opcodes: vec!["STATX".into(), "SEND".into()] });
        let check = check_io_uring_opcodes(&obs);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(check.found, "the kernel lacks STATX, SEND");
        let old = observation("0", "", RingProbe::ProbeFailed { errno: libc::EINVAL });
        assert_eq!(check_io_uring(&old).status, Status::Ok);
        assert_eq!(check_io_uring_opcodes(&old).status, Status::Fail);
    }

    #[test]
    fn this_host_can_set_up_a_ring_when_the_sysctl_allows() {
        let obs = observe();
        if obs.disabled == Some(0) && obs.seccomp_mode != Some(2) {
            assert!(matches!(obs.probe, RingProbe::Ready { .. }), "{:?}", obs.probe);
        }
    }
}
