//! The block device under the data directory: its I/O scheduler, request
//! queue depth and write cache, from `/sys/block/<disk>/queue/`.
//!
//! The device is found from the data directory's st_dev through
//! `/sys/dev/block/MAJ:MIN`; a partition (`sda1`, `nvme0n1p2`) resolves to
//! its disk, which owns the queue. Filesystems with anonymous device
//! numbers (btrfs) are resolved through the mount's source device. The
//! broker orders its own I/O per shard, so an elevator (`mq-deadline`,
//! `bfq`, `kyber`) only adds latency; `none` is the right scheduler.

use std::path::{Path, PathBuf};

use super::storage::DataDirObservation;
use super::Check;
use crate::sysfs::{self, parse_choice, Choice};

/// Below this many requests the queue starves the shards' in-flight I/O.
pub const NR_REQUESTS_MIN: u32 = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// The disk's name in /sys/block (`vda`, `nvme0n1`, `dm-0`).
    pub name: String,
    pub scheduler: Option<Choice>,
    pub nr_requests: Option<u32>,
    /// `write back` (volatile cache) or `write through`.
    pub write_cache: Option<String>,
    pub rotational: Option<bool>,
    pub logical_block_size: Option<u32>,
}

impl BlockDevice {
    pub fn queue_path(&self, file: &str) -> PathBuf {
        Path::new("/sys/block").join(&self.name).join("queue").join(file)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockObservation {
    Found(BlockDevice),
    /// No block device could be found: why.
    NotFound(String),
}

/// The disk owning a block device, from the canonical path of its
/// `/sys/dev/block/MAJ:MIN` link: the last component, or for a partition
/// (which has a `partition` file) its parent directory's.
pub fn disk_from_sysfs_path(canonical: &Path, is_partition: bool) -> Option<String> {
    let device = if is_partition { canonical.parent()? } else { canonical };
    Some(device.file_name()?.to_str()?.to_string())
}

/// Reads a disk's queue settings from a sysfs root (`/sys` live).
pub fn read_block_device(sys_root: &Path, name: &str) -> BlockDevice {
    let queue = sys_root.join("block").join(name).join("queue");
    BlockDevice {
        name: name.to_string(),
        scheduler: sysfs::read_optional(queue.join("scheduler")).and_then(|t| parse_choice(&t)),
        nr_requests: sysfs::read_number(queue.join("nr_requests")),
        write_cache: sysfs::read_optional(queue.join("write_cache")),
        rotational: sysfs::read_number::<u8>(queue.join("rotational")).map(|r| r == 1),
        logical_block_size: sysfs::read_number(queue.join("logical_block_size")),
    }
}

fn device_numbers(data_dir: &DataDirObservation) -> Result<(u32, u32), String> {
    match data_dir.device {
        Some((major, minor)) if major != 0 => Ok((major, minor)),
        device => {
            let mount = data_dir.mount.as_ref();
            if let Some(source) = mount.map(|m| m.source.as_str()).filter(|s| s.starts_with("/dev/")) {
                use std::os::unix::fs::MetadataExt;
                if let Ok(metadata) = std::fs::metadata(source) {
                    let rdev = metadata.rdev();
                    return Ok((libc::major(rdev), libc::minor(rdev)));
                }
            }
            let (major, minor) = device.unwrap_or((0, 0));
            Err(match mount {
                Some(m) => format!("{} from {} (device {major}:{minor}) has no block device", m.fs_type, m.source),
                None => format!("device {major}:{minor} is not a block device"),
            })
        }
    }
}

/// Finds and reads the live data disk.
pub fn observe(data_dir: &DataDirObservation) -> BlockObservation {
    let (major, minor) = match device_numbers(data_dir) {
        Ok(numbers) => numbers,
        Err(reason) => return BlockObservation::NotFound(reason),
    };
    let link = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let Ok(canonical) = link.canonicalize() else {
        return BlockObservation::NotFound(format!("no {}", link.display()));
    };
    let is_partition = canonical.join("partition").exists();
    match disk_from_sysfs_path(&canonical, is_partition) {
        Some(name) => BlockObservation::Found(read_block_device(Path::new("/sys"), &name)),
        None => BlockObservation::NotFound(format!("cannot name {}", canonical.display())),
    }
}

fn not_found(name: &str, reason: &str) -> Check {
    Check::warn(
        name,
        format!("no block device under the data directory: {reason}"),
        "put the data directory on a local disk so its queue can be checked and tuned",
    )
}

pub fn check_scheduler(observation: &BlockObservation) -> Check {
    const NAME: &str = "disk_scheduler";
    let device = match observation {
        BlockObservation::Found(device) => device,
        BlockObservation::NotFound(reason) => return not_found(NAME, reason),
    };
    let Some(scheduler) = &device.scheduler else {
        return Check::ok(NAME, format!("{}: no scheduler file", device.name));
    };
    let found = format!("{}: {}", device.name, scheduler.selected);
    if scheduler.selected == "none" || !scheduler.offers("none") {
        return Check::ok(NAME, found);
    }
    Check::warn(
        NAME,
        format!("{found}: an elevator reorders and delays I/O each shard has already ordered"),
        format!("pinion-tune apply (sets none), or `echo none > /sys/block/{}/queue/scheduler`", device.name),
    )
}

pub fn check_queue_depth(observation: &BlockObservation) -> Check {
    const NAME: &str = "disk_queue_depth";
    let device = match observation {
        BlockObservation::Found(device) => device,
        BlockObservation::NotFound(reason) => return not_found(NAME, reason),
    };
    match device.nr_requests {
        None => Check::ok(NAME, format!("{}: nr_requests not readable", device.name)),
        Some(depth) if depth >= NR_REQUESTS_MIN => Check::ok(NAME, format!("{}: nr_requests {depth}", device.name)),
        Some(depth) => Check::warn(
            NAME,
            format!("{}: nr_requests {depth}: fewer requests in flight than the shards issue", device.name),
            format!("`echo 256 > /sys/block/{}/queue/nr_requests` (the device may cap it lower)", device.name),
        ),
    }
}

pub fn check_write_cache(observation: &BlockObservation) -> Check {
    const NAME: &str = "disk_write_cache";
    let device = match observation {
        BlockObservation::Found(device) => device,
        BlockObservation::NotFound(reason) => return not_found(NAME, reason),
    };
    let name = &device.name;
    match device.write_cache.as_deref() {
        Some("write back") => Check::ok(
            NAME,
            format!("{name}: write back: the device has a volatile cache, and fdatasync flushes it (durable, one cache flush per sync)"),
        ),
        Some("write through") => Check::ok(
            NAME,
            format!("{name}: write through: no volatile cache to flush (or one protected against power loss)"),
        ),
        Some(other) => Check::ok(NAME, format!("{name}: {other}")),
        None => Check::ok(NAME, format!("{name}: write cache not reported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    /// A captured /sys tree: a virtio disk as on this machine, and an NVMe
    /// disk with a partition and a too-short queue.
    const SYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sys");

    #[test]
    fn partitions_resolve_to_their_disk() {
        let virtio = Path::new("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda");
        assert_eq!(disk_from_sysfs_path(virtio, false).as_deref(), Some("vda"));
        let partition = Path::new("/sys/devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1/nvme0n1p2");
        assert_eq!(disk_from_sysfs_path(partition, true).as_deref(), Some("nvme0n1"));
        let sda1 = Path::new("/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1");
        assert_eq!(disk_from_sysfs_path(sda1, true).as_deref(), Some("sda"));
        let dm = Path::new("/sys/devices/virtual/block/dm-0");
        assert_eq!(disk_from_sysfs_path(dm, false).as_deref(), Some("dm-0"));
    }

    #[test]
    fn virtio_disk_as_on_this_machine() {
        let device = read_block_device(Path::new(SYS), "vda");
        assert_eq!(device.nr_requests, Some(256));
        assert_eq!(device.logical_block_size, Some(512));
        let observation = BlockObservation::Found(device);
        let scheduler = check_scheduler(&observation);
        assert_eq!(scheduler.status, Status::Warn);
        assert!(scheduler.found.starts_with("vda: mq-deadline"), "{}", scheduler.found);
        assert!(scheduler.remedy.unwrap().contains("/sys/block/vda/queue/scheduler"));
        assert_eq!(check_queue_depth(&observation).found, "vda: nr_requests 256");
        let cache = check_write_cache(&observation);
        assert_eq!(cache.status, Status::Ok);
        assert!(cache.found.starts_with("vda: write back"));
    }

    #[test]
    fn nvme_with_none_and_a_short_queue() {
        let observation = BlockObservation::Found(read_block_device(Path::new(SYS), "nvme0n1"));
        assert_eq!(check_scheduler(&observation).status, Status::Ok);
        assert_eq!(check_queue_depth(&observation).status, Status::Warn);
        assert!(check_write_cache(&observation).found.contains("write through"));
    }

    #[test]
    fn no_device_warns_with_the_reason() {
        let observation = BlockObservation::NotFound("tmpfs from tmpfs (device 0:27) has no block device".into());
        let check = check_scheduler(&observation);
        assert_eq!(check.status, Status::Warn);
        assert!(check.found.contains("tmpfs from tmpfs (device 0:27)"));
    }

    #[test]
    fn the_live_data_disk_is_found_on_ext4() {
        let dir = tempfile::tempdir().unwrap();
        let data = super::super::storage::observe(dir.path());
        if data.mount.as_ref().is_some_and(|m| m.source.starts_with("/dev/")) {
            assert!(matches!(observe(&data), BlockObservation::Found(_)));
        }
    }
}
