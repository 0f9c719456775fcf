//! Producer ids for idempotent producers (InitProducerId).
//!
//! The controller shard hands out ids from a counter. Before it uses an id
//! past the end of the current block, it persists a new block end
//! (`<data_dir>/__pinion/producer-id-block`: temp file, fsync, rename,
//! fsync the directory), so that after a restart, clean or not, counting
//! resumes past every id ever handed out and no id repeats.

use std::cell::Cell;
use std::path::{Path, PathBuf};

/// Ids reserved per write of the block file.
pub const BLOCK_SIZE: i64 = 1000;

#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    next: Cell<i64>,
    block_end: Cell<i64>,
}

impl ProducerIdAllocator {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("__pinion").join("producer-id-block")
    }

    /// Resumes after the last persisted block (or starts at 0).
    pub fn open(data_dir: &Path) -> Result<Self, String> {
        let path = Self::path(data_dir);
        let block_end = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| format!("corrupt {}: {text:?}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self { path, next: Cell::new(block_end), block_end: Cell::new(block_end) })
    }

    /// The next unused producer id.
    pub fn allocate(&self) -> std::io::Result<i64> {
        let id = self.next.get();
        if id >= self.block_end.get() {
            let end = id + BLOCK_SIZE;
            let dir = self.path.parent().expect("the block file has a parent");
            std::fs::create_dir_all(dir)?;
            let tmp = self.path.with_extension("tmp");
            {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                writeln!(file, "{end}")?;
                file.sync_all()?;
            }
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()?;
            self.block_end.set(end);
        }
        self.next.set(id + 1);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIdAllocator::open(dir.path()).unwrap();
        let a: Vec<i64> = (0..5).map(|_| first.allocate().unwrap()).collect();
        assert_eq!(a, vec![0, 1, 2, 3, 4]);
        drop(first); // like a crash: nothing else is written
        let second = ProducerIdAllocator::open(dir.path()).unwrap();
        let b = second.allocate().unwrap();
        assert!(b > 4, "id {b} after a restart must be new");
        assert_eq!(b, BLOCK_SIZE);
    }
}
