//! `pinion-tune apply`: the safe fixes, planned from a [`HostObservation`]
//! and carried out by writing `/proc/sys` and `/sys` files.
//!
//! Planning is a pure function, so tests check it against recorded hosts
//! without touching this one; carrying out goes through a writer function
//! so tests can fake a read-only `/proc/sys`. Every fix is idempotent: a
//! setting already at its target is reported unchanged, so running apply
//! twice changes nothing the second time. Fixes last until reboot; apply
//! prints the sysctl.d lines that make its sysctls permanent.
//!
//! What apply changes, and why each is safe at runtime:
//! - `vm.swappiness` to 1 when swap exists and it is above 10;
//! - `net.core.somaxconn` to 4096 when lower;
//! - the ceiling of `net.ipv4.tcp_rmem`/`tcp_wmem` to 16 MiB when lower;
//! - transparent huge pages `enabled` and `defrag` from `always` to
//!   `madvise` (not `never`: memory that asks for huge pages still gets
//!   them, nothing else pays for compaction);
//! - the CPU frequency governor to `performance`;
//! - the data disk's scheduler to `none`;
//! - NIC and data-disk interrupts off the shards' CPUs, onto the spare
//!   ones, when there are spare CPUs.
//!
//! What it never changes: resource limits (memlock is set by whoever
//! starts the broker), security policy (`kernel.io_uring_disabled`,
//! seccomp), the kernel, or where the data lives; each FAIL check is
//! listed as something apply cannot change, with its fix.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::checks::block::BlockObservation;
use crate::checks::cpu::housekeeping_cpus;
use crate::checks::irq::reaches_shards;
use crate::checks::{memory, network, CheckConfig, HostObservation, Status};
use crate::cpulist::format_cpu_list;
use crate::units::format_bytes_exact;

/// One file write that brings a setting to its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What is changed: `vm.swappiness`, `irq 36 (vda virtio1-req.0)`.
    pub setting: String,
    pub path: PathBuf,
    pub from: String,
    pub to: String,
    pub why: String,
    /// The sysctl name, for the persistence hint, when this is one.
    pub sysctl: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Change(Change),
    /// Already right (or nothing to do): the setting and its value.
    Unchanged {
        setting: String,
        value: String,
    },
    /// Needs something apply does not do: the setting and why.
    CannotChange {
        setting: String,
        reason: String,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Change(change) => {
                write!(f, "set {}: {} -> {} ({})", change.setting, change.from, change.to, change.why)
            }
            Step::Unchanged { setting, value } => write!(f, "unchanged {setting}: {value}"),
            Step::CannotChange { setting, reason } => {
                write!(f, "cannot change {setting}: {reason}")
            }
        }
    }
}

/// The ordered steps apply takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.steps.iter().filter_map(|step| match step {
            Step::Change(change) => Some(change),
            _ => None,
        })
    }
}

fn unchanged(setting: &str, value: impl Into<String>) -> Step {
    Step::Unchanged { setting: setting.to_string(), value: value.into() }
}

fn sysctl_change(sysctl: &str, path: &str, from: String, to: String, why: &str) -> Step {
    Step::Change(Change {
        setting: sysctl.to_string(),
        path: PathBuf::from(path),
        from,
        to,
        why: why.to_string(),
        sysctl: Some(sysctl.to_string()),
    })
}

/// Plans the fixes for an observed host. Pure: reads nothing, writes
/// nothing.
pub fn plan(host: &HostObservation, config: &CheckConfig) -> Plan {
    let mut steps = Vec::new();
    plan_memory(host, &mut steps);
    plan_network(host, &mut steps);
    plan_governors(host, &mut steps);
    plan_scheduler(host, &mut steps);
    plan_interrupts(host, config, &mut steps);
    for check in host.evaluate(config) {
        if check.status == Status::Fail {
            let reason = match &check.remedy {
                Some(remedy) => format!("{}; {remedy}", check.found),
                None => check.found.clone(),
            };
            steps.push(Step::CannotChange { setting: check.name, reason });
        }
    }
    Plan { steps }
}

fn plan_memory(host: &HostObservation, steps: &mut Vec<Step>) {
    let memory = &host.memory;
    if let Some(swappiness) = memory.swappiness {
        let has_swap = memory.swap_total_kib != Some(0);
        if has_swap && swappiness > memory::SWAPPINESS_MAX {
            steps.push(sysctl_change(
                "vm.swappiness",
                memory::SWAPPINESS_PATH,
                swappiness.to_string(),
                memory::SWAPPINESS_TARGET.to_string(),
                "keep shard memory out of swap",
            ));
        } else if has_swap {
            steps.push(unchanged("vm.swappiness", swappiness.to_string()));
        } else {
            steps.push(unchanged("vm.swappiness", format!("{swappiness} (no swap, so it does not matter)")));
        }
    }
    for (setting, path, choice) in [
        ("transparent_hugepage/enabled", memory::THP_ENABLED_PATH, &memory.thp_enabled),
        ("transparent_hugepage/defrag", memory::THP_DEFRAG_PATH, &memory.thp_defrag),
    ] {
        let Some(choice) = choice else { continue };
        // `never` for defrag keeps faults from compacting at all: left alone.
        let never_enabled = path == memory::THP_ENABLED_PATH && choice.selected == "never";
        if (choice.selected == "always" || never_enabled) && choice.offers("madvise") {
            let why = if never_enabled {
                "huge pages for what asks for them: pinion's O_DIRECT buffers"
            } else {
                "huge pages only where asked for: no compaction stalls in page faults"
            };
            steps.push(Step::Change(Change {
                setting: setting.to_string(),
                path: PathBuf::from(path),
                from: choice.selected.clone(),
                to: "madvise".to_string(),
                why: why.to_string(),
                sysctl: None,
            }));
        } else {
            steps.push(unchanged(setting, choice.selected.clone()));
        }
    }
}

fn plan_network(host: &HostObservation, steps: &mut Vec<Step>) {
    let net = &host.network;
    if let Some(somaxconn) = net.somaxconn {
        if somaxconn < network::SOMAXCONN_MIN {
            steps.push(sysctl_change(
                "net.core.somaxconn",
                network::SOMAXCONN_PATH,
                somaxconn.to_string(),
                network::SOMAXCONN_MIN.to_string(),
                "room in the accept queue for reconnect storms",
            ));
        } else {
            steps.push(unchanged("net.core.somaxconn", somaxconn.to_string()));
        }
    }
    for (sysctl, path, buffer) in [
        ("net.ipv4.tcp_rmem", network::TCP_RMEM_PATH, net.tcp_rmem),
        ("net.ipv4.tcp_wmem", network::TCP_WMEM_PATH, net.tcp_wmem),
    ] {
        let Some(buffer) = buffer else { continue };
        let show = |b: network::TcpBuffer| format!("{} {} {}", b.min, b.default, b.max);
        if buffer.max < network::TCP_BUFFER_MAX_BYTES {
            let raised = network::raised_tcp_buffer(buffer);
            steps.push(Step::Change(Change {
                setting: sysctl.to_string(),
                path: PathBuf::from(path),
                from: show(buffer),
                to: raised.to_sysctl().replace('\t', " "),
                why: format!("let one connection's window grow to {}", format_bytes_exact(raised.max)),
                sysctl: Some(sysctl.to_string()),
            }));
        } else {
            steps.push(unchanged(sysctl, show(buffer)));
        }
    }
}

fn plan_governors(host: &HostObservation, steps: &mut Vec<Step>) {
    let governors = &host.cpu.governors;
    if governors.is_empty() {
        steps.push(unchanged("cpu governor", "no cpufreq driver"));
        return;
    }
    let mut already = Vec::new();
    for (cpu, governor) in governors {
        let fixable = governor.current != "performance" && governor.available.iter().any(|g| g == "performance");
        if fixable {
            steps.push(Step::Change(Change {
                setting: format!("cpu{cpu} governor"),
                path: PathBuf::from(format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")),
                from: governor.current.clone(),
                to: "performance".to_string(),
                why: "full clock from the first request of a burst".to_string(),
                sysctl: None,
            }));
        } else {
            already.push(*cpu);
        }
    }
    if !already.is_empty() {
        steps.push(unchanged(
            "cpu governor",
            format!("as it should be (or no performance governor offered) on CPUs {}", format_cpu_list(&already)),
        ));
    }
}

fn plan_scheduler(host: &HostObservation, steps: &mut Vec<Step>) {
    let BlockObservation::Found(device) = &host.block else {
        return;
    };
    let setting = format!("{} scheduler", device.name);
    match &device.scheduler {
        Some(scheduler) if scheduler.selected != "none" && scheduler.offers("none") => {
            steps.push(Step::Change(Change {
                setting,
                path: device.queue_path("scheduler"),
                from: scheduler.selected.clone(),
                to: "none".to_string(),
                why: "shards order their own I/O; an elevator only delays it".to_string(),
                sysctl: None,
            }));
        }
        Some(scheduler) => steps.push(unchanged(&setting, scheduler.selected.clone())),
        None => {}
    }
}

fn plan_interrupts(host: &HostObservation, config: &CheckConfig, steps: &mut Vec<Step>) {
    if host.irq.routes.is_empty() {
        return;
    }
    let shard_cpus = host.broker_cpus(config);
    let spare = housekeeping_cpus(&host.cpu.online, &shard_cpus);
    if spare.is_empty() {
        steps.push(unchanged(
            "irq affinity",
            format!("{} NIC and disk interrupts stay put: every CPU runs a shard", host.irq.routes.len()),
        ));
        return;
    }
    let target = format_cpu_list(&spare);
    for route in &host.irq.routes {
        let setting = format!("irq {} ({} {})", route.irq, route.device, route.name);
        match &route.affinity {
            None => steps.push(Step::CannotChange {
                setting,
                reason: format!("{} is not readable", route.affinity_path().display()),
            }),
            Some(_) if reaches_shards(route, &shard_cpus) => steps.push(Step::Change(Change {
                path: route.affinity_path(),
                from: format_cpu_list(route.affinity.as_deref().unwrap_or_default()),
                to: target.clone(),
                why: format!("keep {} interrupts off shard CPUs {}", route.kind, format_cpu_list(&shard_cpus)),
                setting,
                sysctl: None,
            })),
            Some(affinity) => steps.push(unchanged(&setting, format_cpu_list(affinity))),
        }
    }
    if host.irq.irqbalance_running {
        steps.push(Step::CannotChange {
            setting: "irqbalance".to_string(),
            reason: "irqbalance is running and will move interrupts back; stop it (`systemctl disable --now irqbalance`) or ban these IRQs in its configuration".to_string(),
        });
    }
}

/// Why a write to a kernel setting failed, in words an operator can act on.
pub fn explain_write_error(path: &Path, error: &io::Error) -> String {
    let is_irq = path.starts_with("/proc/irq");
    match error.raw_os_error() {
        Some(libc::EROFS) => format!(
            "{} is read-only (a container mounts /proc/sys and /sys read-only): set it on the host, or for net.* with `docker run --sysctl`",
            path.display()
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => "permission denied: run apply as root".to_string(),
        Some(libc::EIO) if is_irq => {
            "the kernel manages this interrupt's affinity (managed IRQs of NVMe and virtio queues): it cannot be moved".to_string()
        }
        Some(libc::EINVAL) => "the kernel rejected the value".to_string(),
        Some(libc::ENOENT) => format!("{} does not exist on this kernel", path.display()),
        _ => error.to_string(),
    }
}

/// What carrying out a plan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub changed: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub cannot_change: usize,
}

/// Writes a value into a kernel file, as `echo value > path` does.
pub fn write_setting(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, format!("{value}\n"))
}

/// Whether this process could write `path`, without writing it.
fn check_writable(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a NUL-terminated path; access only reads it.
    if unsafe { libc::access(cpath.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Carries out a plan on the live host, printing each step before it is
/// taken. With `dry_run` nothing is written; each change is printed with a
/// prediction of whether it would be allowed.
pub fn execute(plan: &Plan, dry_run: bool, out: &mut dyn Write) -> io::Result<Outcome> {
    execute_with(plan, dry_run, out, &mut write_setting, &mut check_writable)
}

/// [`execute`] with the file writes and the permission probe supplied, so
/// tests can stand in for the kernel.
pub fn execute_with(
    plan: &Plan,
    dry_run: bool,
    out: &mut dyn Write,
    write: &mut dyn FnMut(&Path, &str) -> io::Result<()>,
    writable: &mut dyn FnMut(&Path) -> io::Result<()>,
) -> io::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut persistent = Vec::new();
    for step in &plan.steps {
        match step {
            Step::Change(change) => {
                if dry_run {
                    writeln!(out, "would {step}")?;
                    if let Err(error) = writable(&change.path) {
                        writeln!(out, "  would fail: {}", explain_write_error(&change.path, &error))?;
                    }
                    outcome.changed += 1;
                } else {
                    writeln!(out, "{step}")?;
                    match write(&change.path, &change.to) {
                        Ok(()) => outcome.changed += 1,
                        Err(error) => {
                            writeln!(out, "  could not: {}", explain_write_error(&change.path, &error))?;
                            outcome.failed += 1;
                            continue;
                        }
                    }
                }
                if let Some(sysctl) = &change.sysctl {
                    persistent.push(format!("{sysctl} = {}", change.to));
                }
            }
            Step::Unchanged { .. } => {
                writeln!(out, "{step}")?;
                outcome.unchanged += 1;
            }
            Step::CannotChange { .. } => {
                writeln!(out, "{step}")?;
                outcome.cannot_change += 1;
            }
        }
    }
    if !persistent.is_empty() {
        writeln!(out, "\nthese settings last until reboot; to keep the sysctls, put in /etc/sysctl.d/90-pinion.conf:")?;
        for line in persistent {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::block::{read_block_device, BlockDevice};
    use crate::checks::cpu::{CpuObservation, Governor};
    use crate::checks::io_uring::{IoUringObservation, RingProbe};
    use crate::checks::irq::{DeviceKind, IrqObservation, IrqRoute};
    use crate::checks::memlock::MemlockObservation;
    use crate::checks::memory::MemoryObservation;
    use crate::checks::network::{parse_tcp_buffer, NetworkObservation};
    use crate::checks::storage::{magic, DataDirObservation, DirectIoProbe};
    use crate::cpulist::parse_cpu_list;
    use crate::sysfs::parse_choice;
    use crate::units::MIB;

    const SYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sys");

    /// A 4-CPU host with swap, THP always, powersave, a small wmem ceiling,
    /// mq-deadline on its disk and every interrupt on every CPU.
    fn untuned_host() -> HostObservation {
        let route = |irq, device: &str, kind, name: &str| IrqRoute {
            irq,
            device: device.to_string(),
            kind,
            name: name.to_string(),
            affinity: Some(parse_cpu_list("0-3").unwrap()),
        };
        HostObservation {
            kernel_release: Some("6.1.0-18-amd64".into()),
            io_uring: IoUringObservation {
                disabled: Some(0),
                group: Some(-1),
                seccomp_mode: Some(0),
                probe: RingProbe::Ready { missing_opcodes: vec![] },
            },
            memlock: MemlockObservation { soft: 8 * MIB, hard: 8 * MIB, cap_ipc_lock: false },
            cpu: CpuObservation {
                online: vec![0, 1, 2, 3],
                usable: vec![0, 1, 2, 3],
                thread_siblings: (0..4).map(|cpu| (cpu, vec![cpu])).collect(),
                numa_nodes: [(0, vec![0, 1, 2, 3])].into(),
                isolated: vec![],
                governors: (0..4)
                    .map(|cpu| {
                        let governor = Governor {
                            current: "powersave".into(),
                            available: vec!["performance".into(), "powersave".into()],
                        };
                        (cpu, governor)
                    })
                    .collect(),
            },
            memory: MemoryObservation {
                thp_enabled: parse_choice("[always] madvise never"),
                thp_defrag: parse_choice("[always] defer defer+madvise madvise never"),
                swappiness: Some(60),
                swap_total_kib: Some(4 * 1024 * 1024),
            },
            data_dir: DataDirObservation {
                requested: PathBuf::from("/var/lib/pinion"),
                probed: PathBuf::from("/var/lib/pinion"),
                fs_magic: Ok(magic::EXT4),
                device: Some((254, 0)),
                mount: None,
                direct_io: DirectIoProbe::Written { dio_mem_align: Some(512), dio_offset_align: Some(512) },
            },
            block: BlockObservation::Found(read_block_device(Path::new(SYS), "vda")),
            network: NetworkObservation {
                somaxconn: Some(4096),
                tcp_rmem: parse_tcp_buffer("4096\t131072\t33554432"),
                tcp_wmem: parse_tcp_buffer("4096\t16384\t4194304"),
                busy_poll: Some(0),
                busy_read: Some(0),
            },
            irq: IrqObservation {
                routes: vec![
                    route(36, "vda", DeviceKind::Disk, "virtio1-req.0"),
                    route(38, "eth0", DeviceKind::Nic, "virtio2-input.0"),
                ],
                irqbalance_running: false,
            },
        }
    }

    fn config(shards: usize) -> CheckConfig {
        CheckConfig { data_dir: PathBuf::from("/var/lib/pinion"), shards, io_memory_bytes_per_shard: 512 * 1024 }
    }

    /// The host as it would read after the plan's writes.
    fn after(host: &HostObservation, plan: &Plan) -> HostObservation {
        let mut host = host.clone();
        for change in plan.changes() {
            let path = change.path.to_str().unwrap();
            match path {
                memory::SWAPPINESS_PATH => host.memory.swappiness = change.to.parse().ok(),
                memory::THP_ENABLED_PATH => host.memory.thp_enabled = parse_choice("always [madvise] never"),
                memory::THP_DEFRAG_PATH => {
                    host.memory.thp_defrag = parse_choice("always defer defer+madvise [madvise] never")
                }
                network::SOMAXCONN_PATH => host.network.somaxconn = change.to.parse().ok(),
                network::TCP_RMEM_PATH => host.network.tcp_rmem = parse_tcp_buffer(&change.to),
                network::TCP_WMEM_PATH => host.network.tcp_wmem = parse_tcp_buffer(&change.to),
                _ if path.ends_with("scaling_governor") => {
                    for governor in host.cpu.governors.values_mut() {
                        governor.current = change.to.clone();
                    }
                }
                _ if path.ends_with("queue/scheduler") => {
                    if let BlockObservation::Found(BlockDevice { scheduler, .. }) = &mut host.block {
                        *scheduler = parse_choice("[none] mq-deadline kyber bfq");
                    }
                }
                _ if path.starts_with("/proc/irq/") => {
                    for route in &mut host.irq.routes {
                        if route.affinity_path() == change.path {
                            route.affinity = parse_cpu_list(&change.to).ok();
                        }
                    }
                }
                other => panic!("unexpected change to {other}"),
            }
        }
        host
    }

    #[test]
    fn an_untuned_host_gets_every_fix() {
        let host = untuned_host();
        let plan = plan(&host, &config(2));
        let changed: Vec<&str> = plan.changes().map(|c| c.setting.as_str()).collect();
        assert_eq!(
            changed,
            [
                "vm.swappiness",
                "transparent_hugepage/enabled",
                "transparent_hugepage/defrag",
                "net.ipv4.tcp_wmem",
                "cpu0 governor",
                "cpu1 governor",
                "cpu2 governor",
                "cpu3 governor",
                "vda scheduler",
                "irq 36 (vda virtio1-req.0)",
                "irq 38 (eth0 virtio2-input.0)",
            ]
        );
        let wmem = plan.changes().find(|c| c.setting == "net.ipv4.tcp_wmem").unwrap();
        assert_eq!(wmem.to, "4096 16384 16777216");
        let irq = plan.changes().find(|c| c.setting.starts_with("irq 36")).unwrap();
        // Two shards take CPUs 2-3; interrupts go to the spare 0-1.
        assert_eq!((irq.from.as_str(), irq.to.as_str()), ("0-3", "0-1"));
        assert!(!plan.steps.iter().any(|s| matches!(s, Step::CannotChange { .. })));
    }

    #[test]
    fn applying_twice_changes_nothing_the_second_time() {
        let host = untuned_host();
        let first = plan(&host, &config(2));
        let second = plan(&after(&host, &first), &config(2));
        assert_eq!(second.changes().count(), 0, "{:#?}", second.steps);
        assert!(second.steps.iter().all(|s| matches!(s, Step::Unchanged { .. })));
    }

    #[test]
    fn with_a_shard_on_every_cpu_interrupts_stay() {
        let plan = plan(&untuned_host(), &config(4));
        assert!(plan.changes().all(|c| !c.setting.starts_with("irq")));
        assert!(plan.steps.iter().any(|s| matches!(s,
            Step::Unchanged { setting, .. } if setting == "irq affinity")));
    }

    #[test]
    fn failures_apply_cannot_fix_are_listed_with_their_fix() {
        let mut host = untuned_host();
        host.memlock.soft = 64 * 1024;
        host.memlock.hard = 64 * 1024;
        host.io_uring.disabled = Some(2);
        host.io_uring.probe = RingProbe::SetupFailed { errno: libc::EPERM };
        let plan = plan(&host, &config(2));
        let cannot: Vec<(&str, &str)> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::CannotChange { setting, reason } => Some((setting.as_str(), reason.as_str())),
                _ => None,
            })
            .collect();
        let names: Vec<&str> = cannot.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["io_uring", "io_uring_opcodes", "memlock"]);
        assert!(cannot[2].1.contains("administrator"), "{}", cannot[2].1);
    }

    #[test]
    fn dry_run_writes_nothing_and_predicts_read_only() {
        let plan = plan(&untuned_host(), &config(2));
        let mut out = Vec::new();
        let mut write = |path: &Path, _: &str| -> io::Result<()> { panic!("dry run wrote {}", path.display()) };
        let mut writable = |path: &Path| -> io::Result<()> {
            if path.starts_with("/proc/sys") {
                Err(io::Error::from_raw_os_error(libc::EROFS))
            } else {
                Ok(())
            }
        };
        let outcome = execute_with(&plan, true, &mut out, &mut write, &mut writable).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(outcome.changed, 11);
        assert!(text.contains("would set vm.swappiness: 60 -> 1"), "{text}");
        assert!(text.contains("would fail: /proc/sys/vm/swappiness is read-only"), "{text}");
        assert!(text.contains("unchanged net.core.somaxconn: 4096"), "{text}");
        assert!(text.contains("  vm.swappiness = 1\n"), "{text}");
    }

    #[test]
    fn failed_writes_say_why_and_are_counted() {
        let plan = plan(&untuned_host(), &config(2));
        let mut written = Vec::new();
        let mut write = |path: &Path, value: &str| -> io::Result<()> {
            if path.starts_with("/proc/irq") {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            written.push((path.to_path_buf(), value.to_string()));
            Ok(())
        };
        let mut out = Vec::new();
        let outcome = execute_with(&plan, false, &mut out, &mut write, &mut |_| Ok(())).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!((outcome.changed, outcome.failed), (9, 2));
        assert!(text.contains("could not: the kernel manages this interrupt's affinity"), "{text}");
        assert!(written.contains(&(PathBuf::from(memory::THP_ENABLED_PATH), "madvise".to_string())));
    }

    #[test]
    fn huge_pages_never_becomes_madvise_for_the_io_buffers_but_defrag_never_stays() {
        let mut host = untuned_host();
        host.memory.thp_enabled = parse_choice("always madvise [never]");
        host.memory.thp_defrag = parse_choice("always defer defer+madvise madvise [never]");
        let plan = plan(&host, &config(2));
        let thp: Vec<_> = plan.changes().filter(|c| c.setting.starts_with("transparent_hugepage")).collect();
        assert_eq!(thp.len(), 1, "{thp:?}");
        assert_eq!(
            (thp[0].path.as_path(), thp[0].from.as_str(), thp[0].to.as_str()),
            (Path::new(memory::THP_ENABLED_PATH), "never", "madvise")
        );
        assert!(thp[0].why.contains("O_DIRECT"), "{}", thp[0].why);
    }
}
