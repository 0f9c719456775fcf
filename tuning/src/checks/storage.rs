//! The data directory's filesystem and whether it takes O_DIRECT writes.
//!
//! The broker writes segments with O_DIRECT through io_uring, so the data
//! directory must sit on a filesystem that supports direct I/O on a real
//! device. ext4 and xfs are what it is built for. tmpfs and ramfs keep data
//! in memory (gone at reboot; tmpfs only emulates O_DIRECT since 6.6 and
//! refuses it with EINVAL before), overlayfs adds a layer between the
//! broker and the disk, copy-on-write and network filesystems change what
//! fsync and O_DIRECT mean. The filesystem is named by its statfs magic;
//! the live layer also really opens a file there with O_DIRECT and writes
//! one aligned 4 KiB block, because only a real write tells.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::Check;
use crate::aligned::{AlignedBuffer, DIRECT_IO_ALIGN};
use crate::sysfs::{self, describe_errno};

/// statfs magic numbers (from linux/magic.h) of the filesystems named here.
pub mod magic {
    pub const EXT4: u64 = 0xEF53;
    pub const XFS: u64 = 0x5846_5342;
    pub const BTRFS: u64 = 0x9123_683E;
    pub const TMPFS: u64 = 0x0102_1994;
    pub const RAMFS: u64 = 0x8584_58F6;
    pub const OVERLAYFS: u64 = 0x794C_7630;
    pub const NFS: u64 = 0x6969;
    pub const SMB2: u64 = 0xFE53_4D42;
    pub const CIFS: u64 = 0xFF53_4D42;
    pub const FUSE: u64 = 0x6573_5546;
    pub const ZFS: u64 = 0x2FC1_2FC1;
    pub const F2FS: u64 = 0xF2F5_2010;
    pub const BCACHEFS: u64 = 0xCA45_1A4E;
    pub const SQUASHFS: u64 = 0x7371_7368;
}

/// How suitable a filesystem is for the broker's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suitability {
    Supported,
    /// Works, with a cost: the reason and the fix.
    Discouraged(&'static str, &'static str),
    /// Breaks durability or O_DIRECT: the reason and the fix.
    Unsupported(&'static str, &'static str),
}

const MOVE_TO_DISK: &str = "put the data directory on ext4 or xfs on a local disk (--data-dir /var/lib/pinion)";

/// Names a filesystem by its statfs magic and says how it suits the broker.
pub fn classify_filesystem(fs_magic: u64) -> (&'static str, Suitability) {
    use Suitability::*;
    match fs_magic {
        magic::EXT4 => ("ext2/3/4", Supported),
        magic::XFS => ("xfs", Supported),
        magic::TMPFS => (
            "tmpfs",
            Unsupported(
                "memory-backed: every message is lost at reboot, and O_DIRECT is at best emulated",
                MOVE_TO_DISK,
            ),
        ),
        magic::RAMFS => (
            "ramfs",
            Unsupported("memory-backed: every message is lost at reboot, and there is no O_DIRECT", MOVE_TO_DISK),
        ),
        magic::SQUASHFS => ("squashfs", Unsupported("read-only", MOVE_TO_DISK)),
        magic::OVERLAYFS => (
            "overlayfs",
            Discouraged(
                "a container's overlay: slow metadata, copy-up, and O_DIRECT only through to some upper filesystems",
                "mount a volume for the data directory (docker: -v /var/lib/pinion:/data)",
            ),
        ),
        magic::BTRFS => (
            "btrfs",
            Discouraged(
                "copy-on-write: O_DIRECT overwrites fragment segments, and data checksums fight direct I/O",
                "use ext4 or xfs, or at least `chattr +C` the empty data directory",
            ),
        ),
        magic::ZFS => ("zfs", Discouraged("the ARC caches regardless and O_DIRECT needs OpenZFS 2.3+", MOVE_TO_DISK)),
        magic::NFS | magic::SMB2 | magic::CIFS => (
            "network filesystem",
            Discouraged(
                "what fsync and O_DIRECT guarantee depends on the server, and latency on the network",
                MOVE_TO_DISK,
            ),
        ),
        magic::FUSE => {
            ("fuse", Discouraged("a userspace filesystem: O_DIRECT and fsync depend on the daemon", MOVE_TO_DISK))
        }
        magic::F2FS => ("f2fs", Discouraged("not a filesystem the broker is tested on", MOVE_TO_DISK)),
        magic::BCACHEFS => ("bcachefs", Discouraged("not a filesystem the broker is tested on", MOVE_TO_DISK)),
        _ => ("unknown", Discouraged("not a filesystem the broker is tested on", MOVE_TO_DISK)),
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The `major:minor` of the filesystem's st_dev.
    pub major: u32,
    pub minor: u32,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// `/dev/vda`, `overlay`, `tmpfs`...
    pub source: String,
    /// The per-mount options (field 6: `rw,relatime`).
    pub mount_options: Vec<String>,
    /// The filesystem's super options, the last field after ` - fstype
    /// source` (`rw,discard,resv_strict`); empty when the line has none.
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether `option` is set exactly (`discard`, not `nodiscard` or
    /// `discard=async`), in the per-mount or the super options.
    pub fn has_option(&self, option: &str) -> bool {
        self.mount_options.iter().chain(&self.super_options).any(|o| o == option)
    }
}

fn split_options(field: Option<&str>) -> Vec<String> {
    field.map_or_else(Vec::new, |f| f.split(',').filter(|o| !o.is_empty()).map(str::to_string).collect())
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'\\' && index + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[index + 1..index + 4]).unwrap_or("");
            let octal = digits.len() == 3 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
            if let (true, Ok(value)) = (octal, u8::from_str_radix(digits, 8)) {
                out.push(value);
                index += 4;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/<pid>/mountinfo` text, skipping malformed lines.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let (major, minor) = fields.get(2)?.split_once(':')?;
            let mut after = after.split(' ');
            Some(MountEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: PathBuf::from(unescape_mountinfo(fields.get(4)?)),
                fs_type: after.next()?.to_string(),
                source: unescape_mountinfo(after.next()?),
                mount_options: split_options(fields.get(5).copied()),
                super_options: split_options(after.next()),
            })
        })
        .collect()
}

/// The mount that holds `path` (absolute): the longest mount point that
/// contains it, the last one listed when mounts are stacked.
pub fn mount_containing<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .enumerate()
        .filter(|(_, mount)| path.starts_with(&mount.mount_point))
        .max_by_key(|(index, mount)| (mount.mount_point.components().count(), *index))
        .map(|(_, mount)| mount)
}

/// What a real O_DIRECT write in the data directory did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectIoProbe {
    /// A 4 KiB-aligned 4 KiB write succeeded. The alignments come from
    /// statx STATX_DIOALIGN (Linux 6.1+), when the filesystem reports them.
    Written { dio_mem_align: Option<u32>, dio_offset_align: Option<u32> },
    /// open(O_DIRECT) failed (EINVAL: the filesystem has no direct I/O).
    OpenFailed { errno: i32 },
    /// The aligned write failed (EINVAL: larger alignment needed).
    WriteFailed { errno: i32 },
}

/// The data directory as found on the live host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDirObservation {
    /// The directory the broker was given.
    pub requested: PathBuf,
    /// The directory examined: `requested`, or its nearest existing
    /// ancestor when it does not exist yet (the broker creates it).
    pub probed: PathBuf,
    /// statfs `f_type`, or the errno.
    pub fs_magic: Result<u64, i32>,
    /// The st_dev (major, minor) of `probed`.
    pub device: Option<(u32, u32)>,
    /// The mount holding `probed`, from `/proc/self/mountinfo`.
    pub mount: Option<MountEntry>,
    pub direct_io: DirectIoProbe,
}

/// The nearest existing directory at or above `path`, made absolute.
pub fn existing_ancestor(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf())
    };
    let mut candidate = absolute.as_path();
    loop {
        if candidate.is_dir() {
            return candidate.canonicalize().unwrap_or_else(|_| candidate.to_path_buf());
        }
        match candidate.parent() {
            Some(parent) => candidate = parent,
            None => return PathBuf::from("/"),
        }
    }
}

fn path_to_cstring(path: &Path) -> Option<CString> {
    CString::new(path.as_os_str().as_bytes()).ok()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn statfs_magic(path: &Path) -> Result<u64, i32> {
    let cpath = path_to_cstring(path).ok_or(libc::EINVAL)?;
    // SAFETY: statfs is plain data; all-zero is a valid value.
    let mut buffer: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statfs we own.
    if unsafe { libc::statfs(cpath.as_ptr(), &mut buffer) } != 0 {
        return Err(last_errno());
    }
    // Magic numbers are 32 bits; f_type is a signed word on some targets.
    Ok(buffer.f_type as u64 & 0xFFFF_FFFF)
}

/// The (major, minor) of the device holding `path`.
pub(crate) fn device_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    Some((libc::major(dev), libc::minor(dev)))
}

/// Opens a fresh file in `dir` with O_DIRECT (removing its name at once),
/// asks statx for the direct-I/O alignment, and writes one aligned block.
pub fn probe_direct_io(dir: &Path) -> DirectIoProbe {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let name = dir.join(format!(".pinion-tune-direct-io-{}-{nanos}", std::process::id()));
    let Some(cpath) = path_to_cstring(&name) else {
        return DirectIoProbe::OpenFailed { errno: libc::EINVAL };
    };
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_DIRECT | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated path; the returned descriptor is owned below.
    let raw = unsafe { libc::open(cpath.as_ptr(), flags, 0o600) };
    if raw < 0 {
        return DirectIoProbe::OpenFailed { errno: last_errno() };
    }
    // SAFETY: `raw` is a descriptor we just opened and nothing else owns.
    let file = unsafe { OwnedFd::from_raw_fd(raw) };
    // The name goes now: the open descriptor keeps the inode until it is
    // closed, so nothing is left behind even if the process dies.
    // SAFETY: a NUL-terminated path.
    unsafe { libc::unlink(cpath.as_ptr()) };

    let (dio_mem_align, dio_offset_align) = direct_io_alignment(&file);
    let buffer = AlignedBuffer::patterned(DIRECT_IO_ALIGN, 0x5eed);
    // SAFETY: the buffer holds DIRECT_IO_ALIGN initialised bytes and
    // outlives the synchronous call.
    let written = unsafe { libc::pwrite(file.as_raw_fd(), buffer.as_ptr().cast(), buffer.len(), 0) };
    if written < 0 {
        return DirectIoProbe::WriteFailed { errno: last_errno() };
    }
    if written as usize != buffer.len() {
        return DirectIoProbe::WriteFailed { errno: libc::EIO };
    }
    DirectIoProbe::Written { dio_mem_align, dio_offset_align }
}

fn direct_io_alignment(file: &OwnedFd) -> (Option<u32>, Option<u32>) {
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut stat: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: an empty path with AT_EMPTY_PATH addresses the descriptor
    // itself; statx writes into the struct we own.
    let result =
        unsafe { libc::statx(file.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_DIOALIGN, &mut stat) };
    if result != 0 || stat.stx_mask & libc::STATX_DIOALIGN == 0 || stat.stx_dio_offset_align == 0 {
        return (None, None);
    }
    (Some(stat.stx_dio_mem_align), Some(stat.stx_dio_offset_align))
}

/// Examines the live data directory.
pub fn observe(data_dir: &Path) -> DataDirObservation {
    let probed = existing_ancestor(data_dir);
    let mount = sysfs::read_optional("/proc/self/mountinfo")
        .and_then(|text| mount_containing(&parse_mountinfo(&text), &probed).cloned());
    DataDirObservation {
        requested: data_dir.to_path_buf(),
        fs_magic: statfs_magic(&probed),
        device: device_of(&probed),
        mount,
        direct_io: probe_direct_io(&probed),
        probed,
    }
}

fn where_checked(observation: &DataDirObservation) -> String {
    let requested = observation.requested.display();
    if observation.requested.is_dir() {
        requested.to_string()
    } else {
        format!("{requested} (does not exist yet; checked {})", observation.probed.display())
    }
}

pub fn check_filesystem(observation: &DataDirObservation) -> Check {
    const NAME: &str = "filesystem";
    let place = where_checked(observation);
    let fs_magic = match observation.fs_magic {
        Ok(fs_magic) => fs_magic,
        Err(errno) => {
            return Check::fail(
                NAME,
                format!("cannot statfs {place}: {}", describe_errno(errno)),
                "create the data directory and make it readable by the broker",
            )
        }
    };
    let (class_name, suitability) = classify_filesystem(fs_magic);
    let found = match &observation.mount {
        Some(mount) => format!("{} on {} at {} for {place}", mount.fs_type, mount.source, mount.mount_point.display()),
        None => format!("{class_name} (magic {fs_magic:#x}) for {place}"),
    };
    match suitability {
        Suitability::Supported => Check::ok(NAME, found),
        Suitability::Discouraged(reason, remedy) => Check::warn(NAME, format!("{found}: {reason}"), remedy),
        Suitability::Unsupported(reason, remedy) => Check::fail(NAME, format!("{found}: {reason}"), remedy),
    }
}

/// Online discard (`-o discard` on ext4 and xfs) TRIMs freed blocks at
/// each journal commit. Retention unlinking a 1 GiB segment then discards
/// 1 GiB at once and stalls the device: O_DIRECT segment writes on an ext4
/// `discard` VM stalled 170-400 ms right after a retention deletion. The
/// broker still works, so this WARNs; the fix is to mount without
/// `discard` and trim periodically with `fstrim.timer`. `discard` is
/// looked for in both the per-mount and the super options (ext4 lists it
/// in the super options).
pub fn check_discard(observation: &DataDirObservation) -> Check {
    const NAME: &str = "online_discard";
    let place = where_checked(observation);
    let Some(mount) = &observation.mount else {
        return Check::ok(NAME, format!("no mount for {place} in /proc/self/mountinfo; mount options not checked"));
    };
    let on = format!("{} on {} at {}", mount.fs_type, mount.source, mount.mount_point.display());
    if !mount.has_option("discard") {
        return Check::ok(NAME, format!("{on} for {place} is mounted without discard"));
    }
    Check::warn(
        NAME,
        format!(
            "{on} for {place} is mounted with discard: freed blocks are TRIMmed at each journal commit, so \
             deleting a 1 GiB segment at retention stalls writes (170-400 ms measured on ext4)"
        ),
        format!(
            "mount {} without discard (remove `discard` from its /etc/fstab options, or mount with `nodiscard`) \
             and trim periodically instead: `systemctl enable --now fstrim.timer`",
            mount.mount_point.display()
        ),
    )
}

pub fn check_direct_io(observation: &DataDirObservation) -> Check {
    const NAME: &str = "o_direct";
    let place = observation.probed.display();
    match &observation.direct_io {
        DirectIoProbe::Written { dio_mem_align, dio_offset_align } => {
            let alignment = match (dio_mem_align, dio_offset_align) {
                (Some(memory), Some(offset)) => {
                    format!("needs {memory}-byte memory and {offset}-byte offset alignment")
                }
                _ => "alignment not reported by the filesystem (statx DIOALIGN, Linux 6.1+)".to_string(),
            };
            match dio_offset_align {
                Some(offset) if *offset as usize > DIRECT_IO_ALIGN => Check::fail(
                    NAME,
                    format!("a 4 KiB O_DIRECT write in {place} worked, but the device {alignment}: larger than the broker's 4 KiB blocks"),
                    "put the data directory on a device with 4 KiB or smaller logical blocks",
                ),
                _ => Check::ok(NAME, format!("a 4 KiB O_DIRECT write in {place} worked; {alignment}")),
            }
        }
        DirectIoProbe::OpenFailed { errno } | DirectIoProbe::WriteFailed { errno } => {
            let step = if matches!(observation.direct_io, DirectIoProbe::OpenFailed { .. }) {
                "open(O_DIRECT)"
            } else {
                "an aligned 4 KiB O_DIRECT write"
            };
            let error = describe_errno(*errno);
            match *errno {
                libc::EINVAL => Check::fail(
                    NAME,
                    format!("{step} in {place}: {error}: this filesystem does not do direct I/O (tmpfs before 6.6, ramfs, some FUSE and network filesystems)"),
                    MOVE_TO_DISK,
                ),
                libc::EACCES | libc::EPERM => Check::fail(
                    NAME,
                    format!("{step} in {place}: {error}: the data directory is not writable"),
                    "give the broker's user write access to the data directory",
                ),
                libc::EROFS => Check::fail(
                    NAME,
                    format!("{step} in {place}: {error}"),
                    "mount the data directory's filesystem read-write",
                ),
                libc::ENOSPC => Check::fail(
                    NAME,
                    format!("{step} in {place}: {error}"),
                    "free space on the data directory's filesystem",
                ),
                _ => Check::fail(NAME, format!("{step} in {place}: {error}"), MOVE_TO_DISK),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Status;

    const MOUNTINFO: &str = include_str!("../../tests/fixtures/mountinfo_vm");

    fn observation(fs_magic: u64, mount: Option<MountEntry>, direct_io: DirectIoProbe) -> DataDirObservation {
        DataDirObservation {
            requested: PathBuf::from("/"),
            probed: PathBuf::from("/"),
            fs_magic: Ok(fs_magic),
            device: Some((254, 0)),
            mount,
            direct_io,
        }
    }

    fn written() -> DirectIoProbe {
        DirectIoProbe::Written { dio_mem_align: Some(512), dio_offset_align: Some(512) }
    }

    #[test]
    fn parses_mountinfo_and_finds_the_mount() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let root = mount_containing(&mounts, Path::new("/work/main/data")).unwrap();
        assert_eq!((root.major, root.minor), (254, 0));
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.source, "/dev/vda");
        // /dev/shm is mounted twice; the later mount is the visible one.
        let shm = mount_containing(&mounts, Path::new("/dev/shm/x")).unwrap();
        assert_eq!((shm.fs_type.as_str(), shm.minor), ("tmpfs", 27));
        let spaced = mount_containing(&mounts, Path::new("/mnt/my disk/data")).unwrap();
        assert_eq!(spaced.mount_point, PathBuf::from("/mnt/my disk"));
        assert_eq!(spaced.fs_type, "xfs");
    }

    #[test]
    fn ext4_is_ok() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let mount = mount_containing(&mounts, Path::new("/work")).cloned();
        let check = check_filesystem(&observation(magic::EXT4, mount, written()));
        assert_eq!(check.status, Status::Ok);
        assert_eq!(check.found, "ext4 on /dev/vda at / for /");
        let direct = check_direct_io(&observation(magic::EXT4, None, written()));
        assert_eq!(direct.status, Status::Ok);
        assert!(direct.found.contains("512-byte offset alignment"), "{}", direct.found);
    }

    #[test]
    fn tmpfs_fails_and_so_does_its_o_direct_einval() {
        let check = check_filesystem(&observation(magic::TMPFS, None, written()));
        assert_eq!(check.status, Status::Fail);
        assert!(check.found.starts_with("tmpfs (magic 0x1021994)"), "{}", check.found);
        assert!(check.remedy.unwrap().contains("ext4 or xfs"));
        let refused = observation(magic::TMPFS, None, DirectIoProbe::OpenFailed { errno: libc::EINVAL });
        let check = check_direct_io(&refused);
        assert_eq!(check.status, Status::Fail);
        assert!(check.found.contains("EINVAL"), "{}", check.found);
        assert!(check.remedy.unwrap().contains("ext4 or xfs"));
    }

    #[test]
    fn overlay_and_btrfs_warn_unknown_warns() {
        assert_eq!(check_filesystem(&observation(magic::OVERLAYFS, None, written())).status, Status::Warn);
        assert_eq!(check_filesystem(&observation(magic::BTRFS, None, written())).status, Status::Warn);
        let unknown = check_filesystem(&observation(0x1234, None, written()));
        assert_eq!(unknown.status, Status::Warn);
        assert!(unknown.found.contains("0x1234"));
    }

    #[test]
    fn big_alignment_and_read_only_fail() {
        let big = DirectIoProbe::Written { dio_mem_align: Some(4), dio_offset_align: Some(8192) };
        assert_eq!(check_direct_io(&observation(magic::XFS, None, big)).status, Status::Fail);
        let read_only = DirectIoProbe::OpenFailed { errno: libc::EROFS };
        let check = check_direct_io(&observation(magic::XFS, None, read_only));
        assert!(check.remedy.unwrap().contains("read-write"));
    }

    fn data_dir_on(mountinfo: &str, data_dir: &str) -> DataDirObservation {
        let mount = mount_containing(&parse_mountinfo(mountinfo), Path::new(data_dir)).cloned();
        let mut observed = observation(magic::EXT4, mount, written());
        observed.requested = PathBuf::from(data_dir);
        observed.probed = PathBuf::from(data_dir);
        observed
    }

    #[test]
    fn parses_per_mount_and_super_options() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let root = mount_containing(&mounts, Path::new("/")).unwrap();
        assert_eq!(root.mount_options, ["rw", "relatime"]);
        assert_eq!(root.super_options[..3], ["rw", "discard", "resv_strict"]);
        // Optional fields (`shared:12`) sit between the options and ` - `.
        let spaced = mount_containing(&mounts, Path::new("/mnt/my disk")).unwrap();
        assert_eq!(spaced.mount_options, ["rw", "noatime"]);
        assert_eq!(spaced.super_options, ["rw", "attr2", "inode64"]);
        // No super options and no per-mount options: kept, just empty.
        let bare =
            parse_mountinfo("50 1 8:1 / /bare - ext4 /dev/sda1\n51 1 8:2 / /short\n52 1 8:3 / /x  - ext4 /dev/sda3 ");
        assert_eq!(bare.len(), 2, "{bare:?}");
        assert!(bare[0].mount_options.is_empty() && bare[0].super_options.is_empty());
        assert!(!bare[0].has_option("discard") && !bare[1].has_option("discard"));
        for odd in ["", " - ", "x - y", "1 2 3:4 / - ext4", "1 2 a:b / /m rw - ext4 /dev/sda discard"] {
            assert!(parse_mountinfo(odd).is_empty(), "{odd:?}");
        }
    }

    #[test]
    fn ext4_with_discard_warns_with_fstrim_and_nodiscard() {
        let mountinfo = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534";
        let check = check_discard(&data_dir_on(mountinfo, "/work/benchdata"));
        assert_eq!(check.status, Status::Warn);
        // (`for <dir>` may add "does not exist yet" on hosts without it.)
        assert!(check.found.starts_with("ext4 on /dev/vda at / for /work/benchdata"), "{}", check.found);
        assert!(check.found.contains("is mounted with discard: freed blocks are TRIMmed"), "{}", check.found);
        let remedy = check.remedy.unwrap();
        assert!(remedy.contains("nodiscard") && remedy.contains("systemctl enable --now fstrim.timer"), "{remedy}");
        // Some systems list it in the per-mount options instead.
        let per_mount = "40 27 259:3 / /data rw,noatime,discard shared:12 - xfs /dev/nvme0n1p3 rw,attr2,inode64";
        assert_eq!(check_discard(&data_dir_on(per_mount, "/data/pinion")).status, Status::Warn);
    }

    #[test]
    fn without_discard_is_ok() {
        let mountinfo = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,nodiscard,resv_strict\n\
                         40 27 259:3 / /data rw,noatime - xfs /dev/nvme0n1p3 rw,attr2,discard=async,inode64";
        for data_dir in ["/var/lib/pinion", "/data/pinion"] {
            let check = check_discard(&data_dir_on(mountinfo, data_dir));
            assert_eq!(check.status, Status::Ok, "{check}");
            assert!(check.found.ends_with("is mounted without discard"), "{}", check.found);
            assert_eq!(check.remedy, None);
        }
        let unknown = check_discard(&observation(magic::EXT4, None, written()));
        assert_eq!(unknown.status, Status::Ok);
        assert!(unknown.found.contains("not checked"), "{}", unknown.found);
    }

    #[test]
    fn discard_on_another_mount_is_ok() {
        let mountinfo = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict\n\
                         40 27 259:3 / /data rw,noatime - xfs /dev/nvme0n1p3 rw,attr2,inode64\n\
                         41 27 259:4 / /scratch rw,noatime - ext4 /dev/nvme1n1 rw,discard";
        let check = check_discard(&data_dir_on(mountinfo, "/data/pinion"));
        assert_eq!(check.status, Status::Ok, "{check}");
        assert!(check.found.starts_with("xfs on /dev/nvme0n1p3 at /data for /data/pinion"), "{}", check.found);
        assert!(check.found.ends_with("is mounted without discard"), "{}", check.found);
    }

    #[test]
    fn the_live_probe_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let observed = observe(dir.path());
        assert!(observed.fs_magic.is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = observe(&dir.path().join("not/yet"));
        assert_eq!(missing.probed, dir.path().canonicalize().unwrap());
        assert!(check_filesystem(&missing).found.contains("does not exist yet"));
    }
}
