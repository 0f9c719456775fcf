//! Sparse index lookups, the first step of every cold read and of every
//! ListOffsets by time: `OffsetIndex::lookup` (relative offset -> position)
//! and `TimeIndex::lookup` (timestamp -> relative offset), on indexes of 1k
//! entries (a small segment) and 260k entries (a full 1 GiB segment at the
//! default `index_interval_bytes` of 4096). Keys are pseudo-random, so the
//! figures include the cache misses a real fetch would have.
//!
//! Run: `cargo bench -p pinion-engine --bench index_lookup`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use pinion_engine::index::{OffsetIndex, TimeIndex};

const ENTRY_COUNTS: [(&str, u32); 2] = [("1k", 1_000), ("260k", 260_000)];
const KEY_COUNT: usize = 4096;
/// Offsets between entries: 4096 index bytes of 100-byte records.
const OFFSETS_PER_ENTRY: u32 = 37;
/// Milliseconds between time index entries.
const MS_PER_ENTRY: i64 = 5;

fn keys(bound: u64) -> Vec<u64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..KEY_COUNT)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        })
        .collect()
}

fn offset_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("offset_index_lookup");
    for (name, entries) in ENTRY_COUNTS {
        let mut index = OffsetIndex::default();
        for i in 0..entries {
            index.push(i * OFFSETS_PER_ENTRY, i * 4096);
        }
        assert_eq!(index.len(), entries as usize);
        let keys: Vec<u32> = keys(u64::from(entries * OFFSETS_PER_ENTRY)).into_iter().map(|k| k as u32).collect();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % KEY_COUNT;
                index.lookup(black_box(keys[i]))
            })
        });
    }
    group.finish();
}

fn time_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("time_index_lookup");
    let base = 1_700_000_000_000i64;
    for (name, entries) in ENTRY_COUNTS {
        let mut index = TimeIndex::default();
        for i in 0..entries {
            index.maybe_push(base + i64::from(i) * MS_PER_ENTRY, i * OFFSETS_PER_ENTRY);
        }
        assert_eq!(index.len(), entries as usize);
        let keys: Vec<i64> =
            keys(u64::from(entries) * MS_PER_ENTRY as u64).into_iter().map(|k| base + k as i64).collect();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % KEY_COUNT;
                index.lookup(black_box(keys[i]))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, offset_index, time_index);
criterion_main!(benches);
