//! Where the NIC's and the data disk's interrupts are delivered.
//!
//! An interrupt handled on a shard's CPU steals that shard's time at an
//! unpredictable moment: tail latency. When there are more CPUs than shards
//! the NIC and disk interrupts belong on the CPUs left over
//! ([`super::cpu::housekeeping_cpus`]); when every CPU runs a shard there
//! is nowhere better and the check says so.
//!
//! Devices are found through sysfs (`/sys/class/net/*/device`,
//! `/sys/block/<disk>/device`, walking up to the PCI function's
//! `msi_irqs/`), named from `/proc/interrupts`, and their routing read
//! from `/proc/irq/N/smp_affinity_list`.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::block::{disk_from_sysfs_path, BlockObservation};
use super::cpu::housekeeping_cpus;
use super::Check;
use crate::cpulist::{format_cpu_list, parse_cpu_list};
use crate::sysfs;

/// One numbered line of `/proc/interrupts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptLine {
    pub irq: u32,
    /// Interrupts handled so far on each CPU column.
    pub counts: Vec<u64>,
    /// The chip, hardware IRQ and handler names (`PCI-MSIX-0000:00:02.0
    /// 1-edge virtio1-req.0`).
    pub description: String,
}

impl InterruptLine {
    /// The handler name: the last word of the description.
    pub fn name(&self) -> &str {
        self.description.split_whitespace().last().unwrap_or("")
    }
}

/// Parses `/proc/interrupts`, keeping the numbered lines (not NMI, LOC...).
pub fn parse_interrupts(text: &str) -> Vec<InterruptLine> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cpu_columns = header.split_whitespace().filter(|w| w.starts_with("CPU")).count();
    lines
        .filter_map(|line| {
            let (label, rest) = line.split_once(':')?;
            let irq = label.trim().parse().ok()?;
            let mut words = rest.split_whitespace().peekable();
            let mut counts = Vec::with_capacity(cpu_columns);
            while counts.len() < cpu_columns {
                match words.peek().and_then(|w| w.parse::<u64>().ok()) {
                    Some(count) => {
                        counts.push(count);
                        words.next();
                    }
                    None => break,
                }
            }
            Some(InterruptLine { irq, counts, description: words.collect::<Vec<_>>().join(" ") })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceKind {
    Nic,
    Disk,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Nic => "nic",
            DeviceKind::Disk => "disk",
        })
    }
}

/// One device interrupt and the CPUs it may be delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqRoute {
    pub irq: u32,
    /// The device it serves: `eth0`, `vda`.
    pub device: String,
    pub kind: DeviceKind,
    /// The handler name from `/proc/interrupts`.
    pub name: String,
    /// `smp_affinity_list`; `None` when unreadable.
    pub affinity: Option<Vec<usize>>,
}

impl IrqRoute {
    pub fn affinity_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/irq/{}/smp_affinity_list", self.irq))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IrqObservation {
    pub routes: Vec<IrqRoute>,
    /// irqbalance rewrites affinities behind any fix.
    pub irqbalance_running: bool,
}

/// The IRQ numbers listed in a device directory's `msi_irqs/`, or its
/// legacy `irq` file, searching the directory and up to three parents
/// (a virtio or NVMe device sits below the PCI function that owns them).
fn device_irqs(device_dir: &Path) -> Vec<u32> {
    for dir in device_dir.ancestors().take(4) {
        if let Ok(entries) = fs::read_dir(dir.join("msi_irqs")) {
            let mut irqs: Vec<u32> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
            irqs.sort_unstable();
            return irqs;
        }
        if let Some(irq) = sysfs::read_number::<u32>(dir.join("irq")).filter(|&irq| irq > 0) {
            return vec![irq];
        }
    }
    Vec::new()
}

/// The device directories of a disk: its own, or for a stacked device
/// (device-mapper, md) those of the disks under it.
fn disk_device_dirs(name: &str) -> Vec<PathBuf> {
    let block = Path::new("/sys/block").join(name);
    if let Ok(device) = block.join("device").canonicalize() {
        return vec![device];
    }
    let Ok(slaves) = fs::read_dir(block.join("slaves")) else {
        return Vec::new();
    };
    slaves
        .filter_map(|slave| {
            let canonical = slave.ok()?.path().canonicalize().ok()?;
            let disk = disk_from_sysfs_path(&canonical, canonical.join("partition").exists())?;
            Path::new("/sys/block").join(disk).join("device").canonicalize().ok()
        })
        .collect()
}

/// Whether a process named irqbalance is running.
fn irqbalance_running() -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        entry.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && sysfs::read_optional(entry.path().join("comm")).as_deref() == Some("irqbalance")
    })
}

/// Finds the live NIC and data-disk interrupts and their routing.
pub fn observe(block: &BlockObservation) -> IrqObservation {
    let interrupts = sysfs::read_optional("/proc/interrupts").map(|text| parse_interrupts(&text)).unwrap_or_default();
    let mut devices: Vec<(String, DeviceKind, Vec<PathBuf>)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/sys/class/net") {
        for entry in entries.filter_map(Result::ok) {
            if let Ok(device) = entry.path().join("device").canonicalize() {
                let name = entry.file_name().to_string_lossy().into_owned();
                devices.push((name, DeviceKind::Nic, vec![device]));
            }
        }
    }
    if let BlockObservation::Found(disk) = block {
        devices.push((disk.name.clone(), DeviceKind::Disk, disk_device_dirs(&disk.name)));
    }
    devices.sort();
    let mut seen = BTreeSet::new();
    let mut routes = Vec::new();
    for (device, kind, dirs) in devices {
        for irq in dirs.iter().flat_map(|dir| device_irqs(dir)) {
            let Some(line) = interrupts.iter().find(|line| line.irq == irq) else {
                continue;
            };
            if !seen.insert(irq) {
                continue;
            }
            let affinity = sysfs::read_optional(format!("/proc/irq/{irq}/smp_affinity_list"))
                .and_then(|text| parse_cpu_list(&text).ok());
            routes.push(IrqRoute { irq, device: device.clone(), kind, name: line.name().to_string(), affinity });
        }
    }
    IrqObservation { routes, irqbalance_running: irqbalance_running() }
}

/// `eth0 irqs 37-39, vda irqs 35-36`.
fn describe_routes(routes: &[&IrqRoute]) -> String {
    let mut devices: Vec<(&str, DeviceKind)> = routes.iter().map(|r| (r.device.as_str(), r.kind)).collect();
    devices.dedup();
    devices
        .iter()
        .map(|(device, kind)| {
            let irqs: Vec<usize> = routes.iter().filter(|r| r.device == *device).map(|r| r.irq as usize).collect();
            format!("{kind} {device} irq {}", format_cpu_list(&irqs))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether an interrupt may land on a shard's CPU.
pub fn reaches_shards(route: &IrqRoute, shard_cpus: &[usize]) -> bool {
    route.affinity.as_ref().is_some_and(|cpus| cpus.iter().any(|cpu| shard_cpus.contains(cpu)))
}

pub fn check_irq_affinity(observation: &IrqObservation, online: &[usize], shard_cpus: &[usize]) -> Check {
    const NAME: &str = "irq_affinity";
    let all: Vec<&IrqRoute> = observation.routes.iter().collect();
    if all.is_empty() {
        return Check::ok(NAME, "no NIC or data-disk interrupts found");
    }
    let described = describe_routes(&all);
    let housekeeping = housekeeping_cpus(online, shard_cpus);
    if housekeeping.is_empty() {
        return Check::ok(
            NAME,
            format!("{described}; every CPU runs a shard, so there is no spare CPU to move them to"),
        );
    }
    let offending: Vec<&IrqRoute> = all.iter().copied().filter(|route| reaches_shards(route, shard_cpus)).collect();
    let spare = format_cpu_list(&housekeeping);
    if offending.is_empty() {
        return Check::ok(NAME, format!("{described}; all on spare CPUs {spare}"));
    }
    let mut remedy = format!("pinion-tune apply (routes them to CPUs {spare})");
    if observation.irqbalance_running {
        remedy.push_str(", and stop irqbalance (or ban these IRQs in it), which moves them back");
    }
    Check::warn(
        NAME,
        format!(
            "{} of {} interrupts may fire on shard CPUs {} ({})",
            offending.len(),
            all.len(),
            format_cpu_list(shard_cpus),
            describe_routes(&offending)
        ),
        remedy,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    const VM_INTERRUPTS: &str = include_str!("../../tests/fixtures/interrupts_vm");
    const NVME_HOST_INTERRUPTS: &str = include_str!("../../tests/fixtures/interrupts_nvme_host");

    fn routes_from(text: &str, devices: &[(&str, DeviceKind, &str)], affinity: &str) -> IrqObservation {
        let lines = parse_interrupts(text);
        let routes = lines
            .iter()
            .filter_map(|line| {
                let (device, kind, _) = devices.iter().find(|(_, _, prefix)| line.name().starts_with(prefix))?;
                Some(IrqRoute {
                    irq: line.irq,
                    device: device.to_string(),
                    kind: *kind,
                    name: line.name().to_string(),
                    affinity: Some(parse_cpu_list(affinity).unwrap()),
                })
            })
            .collect();
        IrqObservation { routes, irqbalance_running: false }
    }

    #[test]
    fn parses_this_vms_interrupts() {
        let lines = parse_interrupts(VM_INTERRUPTS);
        assert_eq!(lines.len(), 19);
        let disk = lines.iter().find(|l| l.irq == 36).unwrap();
        assert_eq!(disk.counts, vec![0, 8120]);
        assert_eq!(disk.name(), "virtio1-req.0");
        assert_eq!(disk.description, "PCI-MSIX-0000:00:02.0 1-edge virtio1-req.0");
        assert!(lines.iter().all(|l| l.counts.len() == 2));
    }

    #[test]
    fn parses_a_many_cpu_host() {
        let lines = parse_interrupts(NVME_HOST_INTERRUPTS);
        let nvme = lines.iter().find(|l| l.name() == "nvme0q1").unwrap();
        assert_eq!(nvme.counts.len(), 8);
        assert_eq!(nvme.counts[0], 48211);
        assert!(lines.iter().any(|l| l.name() == "mlx5_comp0@pci:0000:3b:00.0"));
    }

    #[test]
    fn every_cpu_a_shard_leaves_nothing_to_move() {
        let observation = routes_from(
            VM_INTERRUPTS,
            &[("eth0", DeviceKind::Nic, "virtio2-"), ("vda", DeviceKind::Disk, "virtio1-")],
            "0-1",
        );
        assert_eq!(observation.routes.len(), 5);
        let check = check_irq_affinity(&observation, &[0, 1], &[0, 1]);
        assert_eq!(check.status, Status::Ok);
        assert_eq!(
            check.found,
            "disk vda irq 35-36, nic eth0 irq 37-39; every CPU runs a shard, so there is no spare CPU to move them to"
        );
    }

    #[test]
    fn interrupts_on_shard_cpus_warn_when_a_spare_cpu_exists() {
        let mut observation = routes_from(
            NVME_HOST_INTERRUPTS,
            &[("nvme0n1", DeviceKind::Disk, "nvme0q"), ("ens1f0", DeviceKind::Nic, "mlx5_comp")],
            "0-7",
        );
        observation.irqbalance_running = true;
        let check = check_irq_affinity(&observation, &(0..8).collect::<Vec<_>>(), &[4, 5, 6, 7]);
        assert_eq!(check.status, Status::Warn);
        assert!(check.found.starts_with("6 of 6 interrupts may fire on shard CPUs 4-7"), "{}", check.found);
        let remedy = check.remedy.unwrap();
        assert!(remedy.contains("CPUs 0-3"), "{remedy}");
        assert!(remedy.contains("irqbalance"), "{remedy}");
        for route in &mut observation.routes {
            route.affinity = Some(vec![0, 1, 2, 3]);
        }
        let check = check_irq_affinity(&observation, &(0..8).collect::<Vec<_>>(), &[4, 5, 6, 7]);
        assert_eq!(check.status, Status::Ok);
        assert!(check.found.ends_with("all on spare CPUs 0-3"));
    }

    #[test]
    fn live_observation_reads_without_error() {
        let observation = observe(&BlockObservation::NotFound("none".into()));
        for route in &observation.routes {
            assert_eq!(route.kind, DeviceKind::Nic);
        }
    }
}
