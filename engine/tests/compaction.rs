//! Log compaction (`cleanup_policy` compact) keeps the last value per key.
//!
//! Every scenario runs an engine on the fault-injecting `SimStorage` with a
//! `ManualClock`, writes keys over several segments, rolls by time so the
//! active segment holds one marker record, and reads the whole log back
//! batch by batch (each batch checked, offsets strictly increasing). What
//! must hold: after a pass exactly the latest record of each key is left,
//! at its original offset (offsets leave gaps, never move); tombstones go
//! only after `delete_retention_ms`; compressed batches (gzip, snappy, lz4,
//! zstd) are read for their keys and rewritten with their own codec, which
//! the test decodes with its own readers; a fault or a power cut at any point of a
//! pass leaves every key's latest record readable, once, after a reopen;
//! retention still applies under `compact,delete`; the dirty ratio and the
//! compaction lag hold passes back; and reads during and after a pass see
//! either the old or the new segment whole, never stale cached batches.

mod common;

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::BytesMut;
use common::*;
use pinion_engine::batch::{self, build, BatchHeader, Compression, HEADER_BYTES};
use pinion_engine::io::sim::{Fault, FaultOp, SimFile, SimReadBuf, SimStorage};
use pinion_engine::io::{OpenMode, Storage, StorageFile};
use pinion_engine::{CleanupPolicy, Clock, Durability, Engine, Log, LogConfig, ManualClock};

const T0: i64 = 1_700_000_000_000;
const SEGMENT_MS: i64 = 3_600_000;
const DELETE_RETENTION_MS: i64 = 60_000;

fn compacted_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4 << 10,
        segment_ms: SEGMENT_MS,
        index_interval_bytes: 512,
        retention_ms: -1,
        cleanup_policy: CleanupPolicy::Compact,
        delete_retention_ms: DELETE_RETENTION_MS,
        ..LogConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Keyed records and batches.

/// A record to append: key and value, either may be null.
type Entry = (Option<Vec<u8>>, Option<Vec<u8>>);

fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn encode_records(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, (key, value)) in entries.iter().enumerate() {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, i as i64); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        for field in [key, value] {
            match field {
                Some(bytes) => {
                    put_varint(&mut body, bytes.len() as i64);
                    body.extend_from_slice(bytes);
                }
                None => put_varint(&mut body, -1),
            }
        }
        put_varint(&mut body, 0); // headers
        put_varint(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];

impl Codec {
    fn attribute(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// Compresses as Kafka's clients do (snappy in xerial framing).
    fn compress(self, data: &[u8]) -> Vec<u8> {
        match self {
            Codec::None => data.to_vec(),
            Codec::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
            Codec::Snappy => {
                let mut out = XERIAL_MAGIC.to_vec();
                out.extend_from_slice(&1i32.to_be_bytes());
                out.extend_from_slice(&1i32.to_be_bytes());
                for chunk in data.chunks(32 << 10) {
                    let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                    out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                    out.extend_from_slice(&block);
                }
                out
            }
            Codec::Lz4 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    fn of(compression: Compression) -> Self {
        match compression {
            Compression::None => Codec::None,
            Compression::Gzip => Codec::Gzip,
            Compression::Snappy => Codec::Snappy,
            Compression::Lz4 => Codec::Lz4,
            Compression::Zstd => Codec::Zstd,
            Compression::Unknown(c) => panic!("unknown codec {c} in a stored batch"),
        }
    }

    fn decompress(self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Codec::None => out.extend_from_slice(data),
            Codec::Gzip => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            Codec::Snappy => {
                assert_eq!(data[..8], XERIAL_MAGIC, "test batches use xerial framing");
                let mut at = 16;
                while at < data.len() {
                    let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
                    at += 4;
                    out.extend(snap::raw::Decoder::new().decompress_vec(&data[at..at + len]).unwrap());
                    at += len;
                }
            }
            Codec::Lz4 => {
                lz4_flex::frame::FrameDecoder::new(data).read_to_end(&mut out).unwrap();
            }
            Codec::Zstd => out = zstd::decode_all(data).unwrap(),
        }
        out
    }
}

fn keyed_batch(entries: &[Entry], base_timestamp: i64, codec: Codec) -> Vec<u8> {
    let records = codec.compress(&encode_records(entries));
    let count = entries.len() as i32;
    build::from_records(&records, count, codec.attribute(), base_timestamp, base_timestamp + i64::from(count) - 1)
}

/// Sets producer id, epoch and base sequence (inside the CRC) of a built batch.
fn with_producer(mut batch: Vec<u8>, producer_id: i64, epoch: i16, base_sequence: i32) -> Vec<u8> {
    batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
    batch[51..53].copy_from_slice(&epoch.to_be_bytes());
    batch[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn key(name: &str) -> Option<Vec<u8>> {
    Some(name.as_bytes().to_vec())
}

// ---------------------------------------------------------------------------
// What was written, and what the log reads back.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

impl Record {
    fn describe(&self) -> String {
        let key = self.key.as_deref().map(String::from_utf8_lossy);
        format!("offset {} key {key:?}", self.offset)
    }
}

/// Every record appended, by offset, and the latest record of each key.
#[derive(Debug, Default)]
struct Written {
    by_offset: BTreeMap<i64, Record>,
    latest: BTreeMap<Vec<u8>, Record>,
    rolls: u64,
}

impl Written {
    /// The latest record of each key, in offset order: all a fully compacted log holds.
    fn latest_records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self.latest.values().cloned().collect();
        records.sort_by_key(|r| r.offset);
        records
    }
}

async fn append_batch<S: Storage>(log: &Log<S>, written: &mut Written, entries: &[Entry], batch: &[u8]) -> i64 {
    let info = log.append(BytesMut::from(batch), LEADER_EPOCH).await.expect("append accepted");
    for (i, (key, value)) in entries.iter().enumerate() {
        let record = Record { offset: info.base_offset + i as i64, key: key.clone(), value: value.clone() };
        if let Some(key) = key {
            written.latest.insert(key.clone(), record.clone());
        }
        written.by_offset.insert(record.offset, record);
    }
    info.base_offset
}

async fn append_entries<S: Storage>(
    log: &Log<S>,
    clock: &ManualClock,
    written: &mut Written,
    entries: &[Entry],
) -> i64 {
    append_batch(log, written, entries, &keyed_batch(entries, clock.now_ms(), Codec::None)).await
}

/// Rolls by time: a marker record with a key of its own starts the new
/// active segment, so every earlier record is in a sealed segment. Then
/// waits until the sealed segments are finished (compactable).
async fn roll<S: Storage>(log: &Log<S>, clock: &ManualClock, written: &mut Written) {
    let segments = log.segment_count();
    clock.advance(SEGMENT_MS);
    written.rolls += 1;
    let marker = format!("roll-{}", written.rolls);
    append_entries(log, clock, written, &[(key(&marker), Some(b"marker".to_vec()))]).await;
    assert_eq!(log.segment_count(), segments + 1, "the marker starts a new segment");
    log.flush(Durability::Durable).await.unwrap();
}

/// `batches` batches of 1-5 records over `keys` keys, values ~60 bytes.
async fn overwrite_keys<S: Storage>(
    log: &Log<S>,
    clock: &ManualClock,
    written: &mut Written,
    rng: &mut Rng,
    batches: usize,
    keys: u64,
) {
    for b in 0..batches {
        let entries: Vec<Entry> = (0..rng.range(1, 5))
            .map(|_| {
                let k = rng.below(keys);
                let value = format!("key-{k:03} batch {b} {:016x} ................................", rng.next_u64());
                (key(&format!("key-{k:03}")), Some(value.into_bytes()))
            })
            .collect();
        append_entries(log, clock, written, &entries).await;
        clock.advance(10);
    }
}

/// The log as read back through [`Log::read`].
#[derive(Debug, Default)]
struct Contents {
    /// Each batch and its header.
    batches: Vec<(BatchHeader, Vec<u8>)>,
    records: Vec<Record>,
}

fn decode_records(bytes: &[u8], header: &BatchHeader) -> Vec<Record> {
    let records = Codec::of(header.compression()).decompress(&bytes[HEADER_BYTES..]);
    let mut out = Vec::new();
    let mut at = 0usize;
    let field = |bytes: &[u8], at: &mut usize| -> Option<Vec<u8>> {
        let (len, used) = batch::read_varint(&bytes[*at..]).unwrap();
        *at += used;
        (len >= 0).then(|| {
            let value = bytes[*at..*at + len as usize].to_vec();
            *at += len as usize;
            value
        })
    };
    for _ in 0..header.records_count {
        let (len, used) = batch::read_varint(&records[at..]).unwrap();
        let body = &records[at + used..at + used + len as usize];
        let mut p = 1;
        p += batch::read_varint(&body[p..]).unwrap().1;
        let (offset_delta, used_delta) = batch::read_varint(&body[p..]).unwrap();
        p += used_delta;
        let key = field(body, &mut p);
        let value = field(body, &mut p);
        out.push(Record { offset: header.base_offset + offset_delta, key, value });
        at += used + len as usize;
    }
    assert_eq!(at, records.len(), "records fill their batch");
    out
}

/// Reads the whole log from its start. Every batch must pass the checks
/// recovery applies, batches and records must have strictly increasing
/// offsets, and the reads must reach the log end.
async fn read_back<S: Storage>(log: &Log<S>) -> Contents {
    let mut contents = Contents::default();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let mut last_offset = offset - 1;
    // Each read returns at least one batch, so this bounds the loop.
    for _ in 0..=(end - offset).max(0) {
        if offset >= end {
            break;
        }
        let read = log.read(offset, 16 << 10, i64::MAX).await.unwrap_or_else(|e| panic!("read at {offset}: {e}"));
        assert!(!read.chunks.is_empty(), "read at {offset} below the log end {end} returned nothing");
        for chunk in &read.chunks {
            let mut at = 0usize;
            while at < chunk.len() {
                let size = batch::peek_size(&chunk[at..]).unwrap() as usize;
                let bytes = chunk[at..at + size].to_vec();
                let header = batch::validate_stored(&bytes).unwrap_or_else(|e| panic!("invalid batch read back: {e}"));
                assert!(header.base_offset > last_offset, "batch at {} after offset {last_offset}", header.base_offset);
                assert!(header.last_offset() >= offset, "a read returns batches at or after the offset asked");
                for record in decode_records(&bytes, &header) {
                    assert!(record.offset > last_offset, "record offsets increase: {}", record.describe());
                    assert!(record.offset <= header.last_offset(), "record inside its batch: {}", record.describe());
                    last_offset = record.offset;
                    contents.records.push(record);
                }
                last_offset = header.last_offset();
                contents.batches.push((header, bytes));
                at += size;
            }
        }
        assert!(read.next_offset > offset);
        offset = read.next_offset;
    }
    assert_eq!(offset, end, "reading the whole log ends at the log end offset");
    contents
}

/// Every record read back is the one written at its offset, and the latest
/// record of every key is there, or, for a tombstone past its retention,
/// nothing of that key is: what must hold at any time, whatever a
/// compaction did or failed to do.
fn assert_consistent(contents: &Contents, written: &Written, what: &str) {
    for record in &contents.records {
        assert_eq!(
            written.by_offset.get(&record.offset),
            Some(record),
            "{what}: {} is not what was written there",
            record.describe()
        );
    }
    let present: HashSet<i64> = contents.records.iter().map(|r| r.offset).collect();
    for latest in written.latest.values() {
        if latest.value.is_none() && !present.contains(&latest.offset) {
            let resurrected = contents.records.iter().find(|r| r.key == latest.key);
            assert!(resurrected.is_none(), "{what}: deleted key visible again: {}", resurrected.unwrap().describe());
            continue;
        }
        assert!(present.contains(&latest.offset), "{what}: latest record missing: {}", latest.describe());
    }
}

/// Exactly the latest record of each key, in offset order.
fn assert_fully_compacted(contents: &Contents, written: &Written, what: &str) {
    assert_consistent(contents, written, what);
    let expected = written.latest_records();
    assert_eq!(contents.records.len(), expected.len(), "{what}: one record per key");
    assert!(contents.records == expected, "{what}: exactly the latest record of each key");
}

/// Each sealed segment still ends where the next begins: a batch ends at
/// every segment boundary.
fn assert_segments_end_at_the_next_base(contents: &Contents, bases: &[i64]) {
    let ends: HashSet<i64> = contents.batches.iter().map(|(h, _)| h.last_offset() + 1).collect();
    for base in &bases[1..] {
        assert!(ends.contains(base), "no batch ends at segment boundary {base}");
    }
}

fn leftovers(sim: &SimStorage) -> Vec<PathBuf> {
    sim.files()
        .into_iter()
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".cleaned") || name.ends_with(".swap") || name.ends_with(".tmp")
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Scenarios.

#[test]
fn keeps_latest_value_per_key() {
    run("compaction-latest", || async {
        let sim = SimStorage::new(11);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        let mut written = Written::default();
        let mut rng = Rng::new(11);
        overwrite_keys(&log, &clock, &mut written, &mut rng, 300, 40).await;
        // Records without a key have no place in a compacted log.
        append_entries(&log, &clock, &mut written, &[(None, Some(b"no key".to_vec()))]).await;
        overwrite_keys(&log, &clock, &mut written, &mut rng, 30, 40).await;
        roll(&log, &clock, &mut written).await;
        let bases = log.segment_base_offsets();
        assert!(bases.len() >= 8, "4 KiB segments roll often: {bases:?}");
        let active_base = *bases.last().unwrap();
        let active_before = sim.contents(&segment_path(active_base, "log"));
        let size_before = log.size_bytes();

        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned);
        assert_eq!(outcome.dirty_ratio, 1.0, "nothing was compacted before");
        assert_eq!(outcome.segments_cleaned, bases.len() - 1, "every sealed segment, never the active one");
        assert_eq!(outcome.segments_rewritten, bases.len() - 1);
        assert_eq!(outcome.records_removed as usize, written.by_offset.len() - written.latest.len());
        assert_eq!(outcome.tombstones_removed, 0);
        assert_eq!(outcome.clean_offset, active_base);
        assert!(outcome.bytes_after < outcome.bytes_before / 2, "{outcome:?}");
        assert_eq!(log.size_bytes(), size_before - (outcome.bytes_before - outcome.bytes_after));
        assert_eq!(log.segment_base_offsets(), bases, "one cleaned segment per segment, same base offsets");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, written.by_offset.len() as i64));

        let contents = read_back(&log).await;
        assert_fully_compacted(&contents, &written, "after compaction");
        assert!(contents.records.windows(2).any(|w| w[1].offset > w[0].offset + 1), "offsets keep their gaps");
        assert_segments_end_at_the_next_base(&contents, &bases);
        assert_eq!(sim.contents(&segment_path(active_base, "log")), active_before, "active segment untouched");
        assert!(leftovers(&sim).is_empty(), "no temporary files left: {:?}", leftovers(&sim));

        let again = log.compact().await.unwrap();
        assert!(!again.cleaned, "a clean log is not compacted again: {again:?}");
        assert_eq!(again.dirty_ratio, 0.0);

        // Appends go on; a clean reopen loads the compacted segments.
        append_entries(&log, &clock, &mut written, &[(key("key-000"), Some(b"after".to_vec()))]).await;
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        let contents = read_back(&log).await;
        assert_consistent(&contents, &written, "after reopening");
        assert_eq!(contents.records.len(), written.latest.len() + 1, "the old key-000 waits for the next pass");
        engine.shutdown().await;
    });
}

#[test]
fn tombstones_removed_after_delete_retention() {
    run("compaction-tombstones", || async {
        let sim = SimStorage::new(12);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        let mut written = Written::default();
        for round in 0..3 {
            for k in 0..10 {
                let value = format!("k{k} round {round} ..................................................");
                append_entries(&log, &clock, &mut written, &[(key(&format!("k{k}")), Some(value.into_bytes()))]).await;
            }
        }
        let deletes: Vec<Entry> = (0..5).map(|k| (key(&format!("k{k}")), None)).collect();
        append_entries(&log, &clock, &mut written, &deletes).await;
        roll(&log, &clock, &mut written).await;

        // First pass: the values of k0..k4 go, their tombstones stay.
        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned);
        assert_eq!(outcome.tombstones_removed, 0);
        assert_fully_compacted(&read_back(&log).await, &written, "tombstones kept on the first pass");

        clock.advance(DELETE_RETENTION_MS - 1);
        let outcome = log.compact().await.unwrap();
        assert!(!outcome.cleaned, "tombstones are not due yet: {outcome:?}");

        // k5 is deleted now: its tombstone is first seen by the next pass,
        // which also finds the older tombstones due.
        append_entries(&log, &clock, &mut written, &[(key("k5"), None)]).await;
        roll(&log, &clock, &mut written).await;
        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned);
        assert_eq!(outcome.tombstones_removed, 5);
        let contents = read_back(&log).await;
        assert_consistent(&contents, &written, "older tombstones removed");
        let expected: Vec<Record> = written
            .latest_records()
            .into_iter()
            .filter(|r| {
                !["k0", "k1", "k2", "k3", "k4"].contains(&String::from_utf8_lossy(r.key.as_ref().unwrap()).as_ref())
            })
            .collect();
        assert!(contents.records == expected, "k0..k4 are gone, k5's tombstone stays");
        assert!(contents.records.iter().any(|r| r.key == key("k5") && r.value.is_none()));

        // The checkpoint remembers when k5's tombstone was first seen, across a reopen.
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        assert!(!log.compact().await.unwrap().cleaned, "k5's tombstone is not due yet");
        clock.advance(DELETE_RETENTION_MS);
        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned, "a due tombstone starts a pass on a clean log");
        assert_eq!(outcome.tombstones_removed, 1);
        let contents = read_back(&log).await;
        let values: Vec<Record> = written.latest_records().into_iter().filter(|r| r.value.is_some()).collect();
        assert!(contents.records == values, "only the keys with values are left");
        assert!(!log.compact().await.unwrap().cleaned, "nothing is due any more");
        engine.shutdown().await;
    });
}

#[test]
fn compressed_batches_are_compacted() {
    run("compaction-compressed", || async {
        let sim = SimStorage::new(13);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        let mut written = Written::default();
        let codecs = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];
        let entries_of = |codec: usize, tag: &str| -> Vec<Entry> {
            (0..4)
                .map(|i| {
                    let name = format!("c{}", codec * 4 + i);
                    (key(&name), Some(format!("{name} {tag} {}", "x".repeat(40)).into_bytes()))
                })
                .collect()
        };
        let mut bases = Vec::new();
        for (c, codec) in codecs.iter().enumerate() {
            let entries = entries_of(c, "first");
            let mut batch = keyed_batch(&entries, clock.now_ms(), *codec);
            if c == 0 {
                batch = with_producer(batch, 77, 3, 0);
            }
            bases.push(append_batch(&log, &mut written, &entries, &batch).await);
        }
        // One key of every compressed batch is overwritten: each is rewritten.
        let overwrites: Vec<Entry> =
            (0..4).map(|c| (key(&format!("c{}", c * 4 + 1)), Some(b"newer".to_vec()))).collect();
        append_entries(&log, &clock, &mut written, &overwrites).await;
        // A compressed batch that keeps all its records is copied as it is.
        let kept_entries = entries_of(4, "kept");
        let kept_batch = keyed_batch(&kept_entries, clock.now_ms(), Codec::Zstd);
        let kept_base = append_batch(&log, &mut written, &kept_entries, &kept_batch).await;
        // A batch losing every record vanishes, unless it is the last batch
        // of its producer, which stays as an empty batch.
        let doomed_entries = vec![(key("d0"), Some(b"old".to_vec())), (key("d1"), Some(b"old".to_vec()))];
        let doomed_base = append_batch(
            &log,
            &mut written,
            &doomed_entries,
            &keyed_batch(&doomed_entries, clock.now_ms(), Codec::Lz4),
        )
        .await;
        let producer_entries = vec![(key("p0"), Some(b"old".to_vec()))];
        let producer_batch = with_producer(keyed_batch(&producer_entries, clock.now_ms(), Codec::Gzip), 88, 0, 0);
        let producer_base = append_batch(&log, &mut written, &producer_entries, &producer_batch).await;
        let overwrite_all = vec![
            (key("d0"), Some(b"new".to_vec())),
            (key("d1"), Some(b"new".to_vec())),
            (key("p0"), Some(b"new".to_vec())),
        ];
        append_entries(&log, &clock, &mut written, &overwrite_all).await;
        roll(&log, &clock, &mut written).await;
        assert_eq!(log.segment_count(), 2, "everything but the marker is in one sealed segment");

        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned);
        assert_eq!(outcome.records_removed, 4 + 2 + 1);
        let contents = read_back(&log).await;
        assert_fully_compacted(&contents, &written, "compressed batches compacted");

        let batch_at = |base: i64| contents.batches.iter().find(|(h, _)| h.base_offset == base);
        for (c, base) in bases.iter().enumerate() {
            let (header, _) = batch_at(*base).unwrap_or_else(|| panic!("batch of codec {:?} is gone", codecs[c]));
            assert_eq!(Codec::of(header.compression()), codecs[c], "a batch that lost records keeps its codec");
            assert_eq!((header.records_count, header.last_offset_delta), (3, 3), "offsets keep their span");
            assert_eq!(header.base_timestamp, T0, "timestamps are kept");
            assert_eq!(header.partition_leader_epoch, LEADER_EPOCH);
        }
        let (first, _) = batch_at(bases[0]).unwrap();
        assert_eq!((first.producer_id, first.producer_epoch, first.base_sequence), (77, 3, 0), "producer fields kept");
        let (_, kept) = batch_at(kept_base).expect("fully kept batch");
        assert_eq!(kept, &stored_form(&kept_batch, kept_base), "a batch keeping every record is copied byte for byte");
        assert!(batch_at(doomed_base).is_none(), "a batch that lost every record is dropped");
        let (empty, _) = batch_at(producer_base).expect("the producer's last batch stays");
        assert_eq!((empty.records_count, empty.last_offset_delta, empty.producer_id), (0, 0, 88));
        assert_eq!(empty.compression(), Compression::None);
        engine.shutdown().await;
    });
}

/// Writes a whole file of the simulated disk, durably.
async fn put_file(sim: &SimStorage, path: &Path, contents: &[u8]) {
    let file = sim.open(path, OpenMode::CreateTruncate).await.unwrap();
    let padded = contents.len().div_ceil(4096) * 4096;
    if padded > 0 {
        let mut buf = file.alloc_write_buf(padded);
        buf[..contents.len()].copy_from_slice(contents);
        file.write_at(buf, 0).await.unwrap();
    }
    file.truncate(contents.len() as u64).await.unwrap();
    file.fdatasync().await.unwrap();
}

async fn remove_file(sim: &SimStorage, path: &Path) {
    let _ = sim.remove_file(path).await;
}

fn with_suffix(path: PathBuf, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[test]
fn crash_during_compaction_recovers() {
    run("compaction-crash", || async {
        let eio = libc::EIO;
        let fault = |op: FaultOp, path: &str, skip: u32| Fault { skip, ..Fault::new(op, path, eio) };
        let scenarios: Vec<(&str, Option<Fault>, Option<u64>)> = vec![
            ("write of the first cleaned segment", Some(fault(FaultOp::Write, ".log.cleaned", 0)), None),
            ("write of the third cleaned segment", Some(fault(FaultOp::Write, ".log.cleaned", 2)), None),
            (
                "torn write of a cleaned segment",
                Some(Fault { torn_bytes: Some(1500), ..fault(FaultOp::Write, ".log.cleaned", 1) }),
                None,
            ),
            ("fdatasync of a cleaned segment", Some(fault(FaultOp::Fsync, ".log.cleaned", 1)), None),
            ("fdatasync of a cleaned offset index", Some(fault(FaultOp::Fsync, ".index.cleaned", 3)), None),
            ("write of a cleaned time index", Some(fault(FaultOp::Write, ".timeindex.cleaned", 4)), None),
            // Skips the first pass's reads (one per segment): fails while rewriting.
            ("read of an old segment", Some(fault(FaultOp::Read, ".log", u32::MAX)), None),
            ("write of the cleaner checkpoint", Some(fault(FaultOp::Write, "cleaner-offset-checkpoint", 0)), None),
            ("disk full midway", None, Some(24 << 10)),
            ("power cut after a whole pass", None, None),
        ];
        for (seed, (what, fault, budget)) in scenarios.into_iter().enumerate() {
            let sim = SimStorage::new(100 + seed as u64);
            let clock = ManualClock::new(T0);
            let engine = start_sim(&sim, &clock).await;
            let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
            let mut written = Written::default();
            let mut rng = Rng::new(14);
            overwrite_keys(&log, &clock, &mut written, &mut rng, 200, 30).await;
            roll(&log, &clock, &mut written).await;
            let bases = log.segment_base_offsets();
            let faulty = fault.is_some() || budget.is_some();
            if let Some(mut fault) = fault {
                if fault.skip == u32::MAX {
                    fault.skip = bases.len() as u32 + 1;
                }
                sim.inject(fault);
            }
            if let Some(budget) = budget {
                sim.set_write_budget(budget);
            }

            let result = log.compact().await;
            assert_eq!(result.is_err(), faulty, "{what}: {result:?}");
            sim.clear_faults();
            assert!(log.poisoned().is_none(), "{what}: a failed pass does not poison the log");
            let contents = read_back(&log).await;
            assert_consistent(&contents, &written, what);
            if faulty {
                // (A checkpoint's `.tmp` may stay: recovery removes it.)
                let cleaned: Vec<_> =
                    leftovers(&sim).into_iter().filter(|p| !p.to_string_lossy().ends_with(".tmp")).collect();
                assert!(cleaned.is_empty(), "{what}: cleaned files removed: {cleaned:?}");
            }
            // Appends go on after the failure.
            append_entries(&log, &clock, &mut written, &[(key("after"), Some(b"failure".to_vec()))]).await;
            log.flush(Durability::Durable).await.unwrap();

            engine.abandon().await;
            sim.power_cut();
            let engine = start_sim(&sim, &clock).await;
            let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
            let what = format!("{what}, after a power cut");
            assert_eq!(log.segment_base_offsets(), bases, "{what}: same segments");
            let contents = read_back(&log).await;
            assert_consistent(&contents, &written, &what);
            assert!(leftovers(&sim).is_empty(), "{what}: {:?}", leftovers(&sim));
            // The next pass completes the job (whatever the ratio: after a
            // whole pass only the new records are dirty).
            append_entries(&log, &clock, &mut written, &[(key("after"), Some(b"reopen".to_vec()))]).await;
            roll(&log, &clock, &mut written).await;
            log.set_config(LogConfig { min_cleanable_dirty_ratio: 0.0, ..compacted_config() });
            let outcome = log.compact().await.unwrap();
            assert!(outcome.cleaned, "{what}: {outcome:?}");
            assert_fully_compacted(&read_back(&log).await, &written, &what);
            engine.shutdown().await;
        }
    });
}

#[test]
fn interrupted_segment_swap_is_settled_at_open() {
    run("compaction-swap", || async {
        let sim = SimStorage::new(15);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        let mut written = Written::default();
        let mut rng = Rng::new(15);
        overwrite_keys(&log, &clock, &mut written, &mut rng, 120, 20).await;
        roll(&log, &clock, &mut written).await;
        let bases = log.segment_base_offsets();
        log.close().await.unwrap();
        let files = |base: i64| ["log", "index", "timeindex"].map(|e| segment_path(base, e));
        let snapshot = |base: i64| files(base).map(|p| sim.contents(&p).expect("segment file"));
        // Only the first segment is interrupted; the others are compacted.
        let old = snapshot(bases[0]);
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        assert!(log.compact().await.unwrap().cleaned);
        let compacted = read_back(&log).await;
        assert_fully_compacted(&compacted, &written, "compacted");
        log.close().await.unwrap();
        let new = snapshot(bases[0]);
        assert!(new[0].len() < old[0].len());
        let [log_path, index_path, time_index_path] = files(bases[0]);
        let swap = with_suffix(log_path.clone(), ".swap");
        let cleaned = |p: &PathBuf| with_suffix(p.clone(), ".cleaned");

        // States a crash can leave, by the step it interrupted, and whether
        // the first segment must come back compacted.
        for step in ["before the commit", "at the commit", "after the old indexes went", "after the swap"] {
            let (log_bytes, indexes_old, indexes_present, swap_bytes, expect_new) = match step {
                "before the commit" => (&old[0], true, true, None, false),
                "at the commit" => (&old[0], true, true, Some(&new[0]), true),
                "after the old indexes went" => (&old[0], true, false, Some(&new[0]), true),
                _ => (&new[0], false, false, None, true),
            };
            put_file(&sim, &log_path, log_bytes).await;
            if indexes_present {
                let source = if indexes_old { &old } else { &new };
                put_file(&sim, &index_path, &source[1]).await;
                put_file(&sim, &time_index_path, &source[2]).await;
            } else {
                remove_file(&sim, &index_path).await;
                remove_file(&sim, &time_index_path).await;
            }
            match swap_bytes {
                Some(bytes) => put_file(&sim, &swap, bytes).await,
                None => put_file(&sim, &cleaned(&log_path), &new[0][..new[0].len() / 2]).await,
            }
            put_file(&sim, &cleaned(&index_path), &new[1]).await;
            put_file(&sim, &cleaned(&time_index_path), &new[2]).await;

            let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
            assert!(leftovers(&sim).is_empty(), "{step}: {:?}", leftovers(&sim));
            assert_eq!(log.segment_base_offsets(), bases, "{step}");
            let expected_bytes = if expect_new { &new[0] } else { &old[0] };
            assert!(sim.contents(&log_path).as_ref() == Some(expected_bytes), "{step}: which segment is in place");
            let contents = read_back(&log).await;
            assert_consistent(&contents, &written, step);
            if expect_new {
                assert!(contents.records == compacted.records, "{step}: the compacted segment, once");
            } else {
                assert!(contents.records.len() > compacted.records.len(), "{step}: the old segment, whole");
            }
            log.close().await.unwrap();
        }
        engine.shutdown().await;
    });
}

#[test]
fn compaction_with_delete_policy_also_retains_by_time() {
    run("compaction-delete", || async {
        let sim = SimStorage::new(16);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::CompactDelete,
            retention_ms: SEGMENT_MS + SEGMENT_MS / 2,
            ..compacted_config()
        };
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut written = Written::default();
        let mut rng = Rng::new(16);
        // Old keys, then newer writes of some of them an hour later.
        overwrite_keys(&log, &clock, &mut written, &mut rng, 60, 20).await;
        let old_end = log.log_end_offset();
        roll(&log, &clock, &mut written).await;
        overwrite_keys(&log, &clock, &mut written, &mut rng, 60, 10).await;
        roll(&log, &clock, &mut written).await;

        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned);
        assert_fully_compacted(&read_back(&log).await, &written, "compacted");

        // Retention deletes the segments older than retention_ms, compacted or not.
        let retention = log.enforce_retention().await.unwrap();
        assert!(retention.segments_deleted > 0, "the first hour's segments expired");
        let start = log.log_start_offset();
        assert!(start >= old_end, "start {start} past every segment of the first hour (ended {old_end})");
        let contents = read_back(&log).await;
        let surviving: Vec<Record> = written.latest_records().into_iter().filter(|r| r.offset >= start).collect();
        assert!(contents.records == surviving, "the compacted records after the new log start");

        // compact alone never deletes by time; delete alone never compacts.
        clock.advance(100 * SEGMENT_MS);
        log.set_config(LogConfig { cleanup_policy: CleanupPolicy::Compact, ..config.clone() });
        assert_eq!(log.enforce_retention().await.unwrap().segments_deleted, 0);
        assert_eq!(log.log_start_offset(), start);
        log.set_config(LogConfig { cleanup_policy: CleanupPolicy::Delete, ..config.clone() });
        append_entries(&log, &clock, &mut written, &[(key("key-000"), Some(b"dirty again".to_vec()))]).await;
        roll(&log, &clock, &mut written).await;
        let before = log.size_bytes();
        let outcome = log.compact().await.unwrap();
        assert!(!outcome.cleaned && outcome.segments_cleaned == 0, "{outcome:?}");
        assert_eq!(log.size_bytes(), before);
        assert!(log.enforce_retention().await.unwrap().segments_deleted > 0);
        engine.shutdown().await;
    });
}

#[test]
fn dirty_ratio_gates_compaction() {
    run("compaction-dirty-ratio", || async {
        let sim = SimStorage::new(17);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let config = LogConfig { min_cleanable_dirty_ratio: 0.5, ..compacted_config() };
        let log = engine.open_log(&log_dir(), config.clone()).await.unwrap();
        let mut written = Written::default();
        let mut rng = Rng::new(17);
        overwrite_keys(&log, &clock, &mut written, &mut rng, 200, 200).await;
        roll(&log, &clock, &mut written).await;
        assert!(log.compact().await.unwrap().cleaned);
        let clean_bytes = log.size_bytes();

        // A little new data: dirty, but well under half of the compactable bytes.
        overwrite_keys(&log, &clock, &mut written, &mut rng, 20, 200).await;
        roll(&log, &clock, &mut written).await;
        let files_before: Vec<_> = sim_segment_logs(&sim, &log_dir()).iter().map(|p| sim.contents(p)).collect();
        let outcome = log.compact().await.unwrap();
        assert!(!outcome.cleaned, "{outcome:?}");
        assert!(outcome.dirty_ratio > 0.0 && outcome.dirty_ratio < 0.5, "{outcome:?}");
        let files_after: Vec<_> = sim_segment_logs(&sim, &log_dir()).iter().map(|p| sim.contents(p)).collect();
        assert!(files_before == files_after, "nothing rewritten below the ratio");

        // As much new data as the clean part: at least half is dirty.
        while log.size_bytes() < 2 * clean_bytes + (1 << 10) {
            overwrite_keys(&log, &clock, &mut written, &mut rng, 10, 200).await;
        }
        roll(&log, &clock, &mut written).await;
        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned, "{outcome:?}");
        assert!(outcome.dirty_ratio >= 0.5);
        assert_fully_compacted(&read_back(&log).await, &written, "after the second pass");

        // A ratio of 1 waits until nothing is clean.
        log.set_config(LogConfig { min_cleanable_dirty_ratio: 1.0, ..config });
        overwrite_keys(&log, &clock, &mut written, &mut rng, 200, 200).await;
        roll(&log, &clock, &mut written).await;
        assert!(!log.compact().await.unwrap().cleaned);
        engine.shutdown().await;
    });
}

#[test]
fn min_compaction_lag_holds_back_recent_segments() {
    run("compaction-lag", || async {
        let sim = SimStorage::new(18);
        let clock = ManualClock::new(T0);
        let engine = start_sim(&sim, &clock).await;
        let config = LogConfig { min_compaction_lag_ms: 2 * SEGMENT_MS, ..compacted_config() };
        let log = engine.open_log(&log_dir(), config).await.unwrap();
        let mut written = Written::default();
        let mut rng = Rng::new(18);
        overwrite_keys(&log, &clock, &mut written, &mut rng, 100, 20).await;
        roll(&log, &clock, &mut written).await;
        let outcome = log.compact().await.unwrap();
        assert!(!outcome.cleaned && outcome.segments_cleaned == 0, "records younger than the lag: {outcome:?}");
        clock.advance(SEGMENT_MS);
        let outcome = log.compact().await.unwrap();
        assert!(outcome.cleaned, "{outcome:?}");
        assert_fully_compacted(&read_back(&log).await, &written, "after the lag");
        engine.shutdown().await;
    });
}

// ---------------------------------------------------------------------------
// Reads while a pass runs.

/// `SimStorage` whose every operation first yields to the executor, so a
/// compaction task and a reading task interleave at each disk operation,
/// as they do on a real device.
#[derive(Debug, Clone)]
struct YieldingStorage(SimStorage);

#[derive(Debug)]
struct YieldingFile(Rc<SimFile>);

async fn yield_now() {
    futures_lite::future::yield_now().await;
}

impl Storage for YieldingStorage {
    type File = YieldingFile;

    async fn prepare_dir(&self, dir: &Path) -> io::Result<()> {
        yield_now().await;
        self.0.prepare_dir(dir).await
    }
    async fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Rc<YieldingFile>> {
        yield_now().await;
        Ok(Rc::new(YieldingFile(self.0.open(path, mode).await?)))
    }
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        yield_now().await;
        self.0.remove_file(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        yield_now().await;
        self.0.rename(from, to).await
    }
    async fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.create_dir_all(path).await
    }
    async fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.0.remove_dir_all(path).await
    }
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        yield_now().await;
        self.0.list_dir(path).await
    }
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        yield_now().await;
        self.0.sync_dir(path).await
    }
    async fn exists(&self, path: &Path) -> bool {
        self.0.exists(path).await
    }
}

impl StorageFile for YieldingFile {
    type WriteBuf = Vec<u8>;
    type ReadBuf = SimReadBuf;

    fn alignment(&self) -> usize {
        self.0.alignment()
    }
    fn alloc_write_buf(&self, len: usize) -> Vec<u8> {
        self.0.alloc_write_buf(len)
    }
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        yield_now().await;
        self.0.write_at(buf, pos).await
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<SimReadBuf> {
        yield_now().await;
        self.0.read_at(pos, len).await
    }
    fn slice(buf: &SimReadBuf, offset: usize, len: usize) -> SimReadBuf {
        SimFile::slice(buf, offset, len)
    }
    async fn fdatasync(&self) -> io::Result<()> {
        yield_now().await;
        self.0.fdatasync().await
    }
    async fn preallocate(&self, len: u64, grow_size: bool) -> io::Result<()> {
        self.0.preallocate(len, grow_size).await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        yield_now().await;
        self.0.truncate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.0.size().await
    }
    async fn close(self: Rc<Self>) -> io::Result<()> {
        self.0.clone().close().await
    }
}

#[test]
fn reads_during_and_after_compaction_are_consistent() {
    run("compaction-reads", || async {
        let sim = SimStorage::new(19);
        let clock = ManualClock::new(T0);
        let shared_clock: Rc<dyn Clock> = Rc::new(clock.clone());
        let engine =
            Engine::start(YieldingStorage(sim.clone()), engine_config(), shared_clock, &[data_dir()]).await.unwrap();
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        let mut written = Written::default();
        let mut rng = Rng::new(19);
        overwrite_keys(&log, &clock, &mut written, &mut rng, 250, 40).await;
        roll(&log, &clock, &mut written).await;
        let cached = engine.cache_bytes();
        assert!(cached > 0, "the tail cache holds the batches of the sealed segments");
        let before = read_back(&log).await;
        assert_eq!(before.records.len(), written.by_offset.len(), "nothing compacted yet");

        let done = Rc::new(Cell::new(false));
        let compaction = glommio::spawn_local({
            let (log, done) = (log.clone(), done.clone());
            async move {
                let outcome = log.compact().await;
                done.set(true);
                outcome
            }
        });
        // Read the whole log and append to the active segment while the pass
        // runs: every read sees each segment old or new, never a mix, and no
        // key ever loses its latest record.
        let mut rounds = 0;
        while !done.get() {
            assert!(rounds < 10_000, "compaction finishes");
            let contents = read_back(&log).await;
            assert_consistent(&contents, &written, &format!("read {rounds} during compaction"));
            let live = format!("live-{rounds}");
            append_entries(&log, &clock, &mut written, &[(key(&live), Some(b"appended meanwhile".to_vec()))]).await;
            rounds += 1;
            yield_now().await;
        }
        let outcome = compaction.await.unwrap();
        assert!(outcome.cleaned);
        assert!(rounds > 5, "reads ran while the pass was in progress ({rounds} rounds)");
        assert!(engine.cache_bytes() < cached, "cached batches of compacted segments are evicted");

        // Reads from the start come from the cleaned segments, not the cache.
        let contents = read_back(&log).await;
        assert_fully_compacted(&contents, &written, "after compaction");
        log.flush(Durability::Durable).await.unwrap();
        engine.shutdown().await;
    });
}

#[test]
fn truncation_stops_a_running_compaction() {
    run("compaction-truncate", || async {
        let sim = SimStorage::new(20);
        let clock = ManualClock::new(T0);
        let shared_clock: Rc<dyn Clock> = Rc::new(clock.clone());
        let engine =
            Engine::start(YieldingStorage(sim.clone()), engine_config(), shared_clock, &[data_dir()]).await.unwrap();
        let log = engine.open_log(&log_dir(), compacted_config()).await.unwrap();
        let mut written = Written::default();
        let mut rng = Rng::new(20);
        overwrite_keys(&log, &clock, &mut written, &mut rng, 250, 40).await;
        roll(&log, &clock, &mut written).await;
        let bases = log.segment_base_offsets();

        let compaction = glommio::spawn_local({
            let log = log.clone();
            async move { log.compact().await }
        });
        // Let the pass start (it holds the segments lock), then truncate in
        // the middle of the log, as a replica following a new leader does.
        for _ in 0..40 {
            yield_now().await;
        }
        let cut = bases[bases.len() / 2] + 3;
        let new_end = log.truncate_to(cut).await.unwrap();
        let outcome = compaction.await.unwrap();
        assert!(!outcome.cleaned, "the pass stopped for the truncation: {outcome:?}");
        assert!(outcome.segments_cleaned < bases.len() - 1, "{outcome:?}");
        assert!(new_end <= cut && new_end > bases[bases.len() / 2 - 1], "truncated at {new_end}");

        // What is left is what was written below the new end, some of it compacted.
        let mut kept = Written::default();
        for record in written.by_offset.values().filter(|r| r.offset < new_end) {
            if let Some(key) = &record.key {
                kept.latest.insert(key.clone(), record.clone());
            }
            kept.by_offset.insert(record.offset, record.clone());
        }
        assert_eq!(log.log_end_offset(), new_end);
        assert_consistent(&read_back(&log).await, &kept, "after the truncation");
        assert!(leftovers(&sim).is_empty(), "{:?}", leftovers(&sim));

        // Compaction resumes once the log moves on.
        roll(&log, &clock, &mut kept).await;
        log.set_config(LogConfig { min_cleanable_dirty_ratio: 0.0, ..compacted_config() });
        assert!(log.compact().await.unwrap().cleaned);
        assert_fully_compacted(&read_back(&log).await, &kept, "compacted after the truncation");
        engine.shutdown().await;
    });
}
