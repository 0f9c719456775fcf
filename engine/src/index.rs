//! Sparse segment indexes, kept in memory and written beside the segment
//! when it is sealed or the log is closed. Both can always be rebuilt from
//! the log, and are at recovery when missing or damaged.
//!
//! `.index` (8-byte entries, big-endian): relative offset u32 (offset -
//! segment base offset), position u32 (byte position of the batch in the
//! `.log`). One entry per `index_interval_bytes` of log, both fields
//! strictly increasing.
//!
//! `.timeindex` (12-byte entries, big-endian): timestamp i64, relative
//! offset u32: "up to this offset, the largest timestamp seen is this".
//! Timestamps strictly increase.

use std::fmt;

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

/// Why an index file on disk cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDamaged(pub &'static str);

impl fmt::Display for IndexDamaged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "damaged index: {}", self.0)
    }
}

/// Relative offset -> byte position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_offset, last_position)) = self.entries.last() {
            assert!(
                relative_offset > last_offset && position > last_position,
                "offset index must grow: ({last_offset},{last_position}) then ({relative_offset},{position})"
            );
        }
        self.entries.push((relative_offset, position));
    }

    /// The entry with the largest relative offset <= `relative_offset`, or
    /// `(0, 0)`: where to start scanning for that offset.
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let after = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if after == 0 {
            (0, 0)
        } else {
            self.entries[after - 1]
        }
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries at or past `position` (log truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(keep);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(offset, position) in &self.entries {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }

    /// Parses an `.index` file and checks it against the segment it indexes.
    pub fn from_bytes(bytes: &[u8], segment_bytes: u64) -> Result<Self, IndexDamaged> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return Err(IndexDamaged("size is not a multiple of 8"));
        }
        let mut index = Self::default();
        for entry in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let offset = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
            let position = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
            if u64::from(position) >= segment_bytes.max(1) {
                return Err(IndexDamaged("position past the end of the segment"));
            }
            if let Some(&(o, p)) = index.entries.last() {
                if offset <= o || position <= p {
                    return Err(IndexDamaged("entries do not increase"));
                }
            } else if position != 0 {
                // Its offset may be past the base: compaction can drop a
                // segment's first batches.
                return Err(IndexDamaged("first entry is not the first batch"));
            }
            index.entries.push((offset, position));
        }
        Ok(index)
    }
}

/// Timestamp -> relative offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records `timestamp` at `relative_offset` if it is a new maximum.
    pub fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) {
        match self.entries.last() {
            Some(&(t, o)) if timestamp <= t || relative_offset < o => {}
            _ => self.entries.push((timestamp, relative_offset)),
        }
    }

    /// Relative offset to start scanning from for the first batch whose
    /// max timestamp is >= `timestamp`.
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let after = self.entries.partition_point(|&(t, _)| t < timestamp);
        if after == 0 {
            0
        } else {
            self.entries[after - 1].1
        }
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.last().map(|&(t, _)| t)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries at or past `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(_, o)| o < relative_offset);
        self.entries.truncate(keep);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(timestamp, offset) in &self.entries {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IndexDamaged> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return Err(IndexDamaged("size is not a multiple of 12"));
        }
        let mut index = Self::default();
        for entry in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&entry[..8]);
            let timestamp = i64::from_be_bytes(t);
            let offset = u32::from_be_bytes([entry[8], entry[9], entry[10], entry[11]]);
            if let Some(&(last_t, last_o)) = index.entries.last() {
                if timestamp <= last_t || offset < last_o {
                    return Err(IndexDamaged("time index entries do not increase"));
                }
            }
            index.entries.push((timestamp, offset));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let mut index = OffsetIndex::default();
        index.push(0, 0);
        index.push(10, 4096);
        index.push(25, 9000);
        assert_eq!(index.lookup(0), (0, 0));
        assert_eq!(index.lookup(9), (0, 0));
        assert_eq!(index.lookup(10), (10, 4096));
        assert_eq!(index.lookup(1000), (25, 9000));
        let round = OffsetIndex::from_bytes(&index.to_bytes(), 10_000).unwrap();
        assert_eq!(round, index);
        assert!(OffsetIndex::from_bytes(&index.to_bytes(), 9000).is_err());
        assert!(OffsetIndex::from_bytes(&index.to_bytes()[..7], 10_000).is_err());
        index.truncate_to_position(4096);
        assert_eq!(index.last(), Some((0, 0)));
    }

    #[test]
    fn time_lookup_starts_before_first_match() {
        let mut index = TimeIndex::default();
        index.maybe_push(100, 0);
        index.maybe_push(90, 3);
        index.maybe_push(200, 5);
        assert_eq!(index.len(), 2);
        assert_eq!(index.lookup(50), 0);
        assert_eq!(index.lookup(150), 0);
        assert_eq!(index.lookup(201), 5);
        assert_eq!(TimeIndex::from_bytes(&index.to_bytes()).unwrap(), index);
        assert!(TimeIndex::from_bytes(&[0; 13]).is_err());
    }
}
