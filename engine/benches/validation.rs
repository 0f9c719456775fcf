//! What the produce path pays per byte before a batch is stored:
//! `batch::validate` (framing, magic, CRC-32C, record count, and for
//! uncompressed batches the walk over every record's length) and
//! `batch::split_batches` (the same for every batch of a request), on
//! batches of 100-byte records of 1 KiB, 64 KiB and 1 MiB, uncompressed and
//! with a compressed attribute (records opaque: never inflated). The bare
//! CRC-32C over the same bytes is measured beside them, so the cost of the
//! record walk is the difference.
//!
//! Run: `cargo bench -p pinion-engine --bench validation`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pinion_engine::batch::{self, build, HEADER_BYTES};

const VALUE_BYTES: usize = 100;
const SIZES: [(&str, usize); 3] = [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)];
/// Kafka's attribute bits for lz4.
const LZ4_ATTRIBUTES: i16 = 3;
/// Stored bytes of one 100-byte-value record, near enough to count records.
const RECORD_BYTES_ABOUT: usize = 110;

fn value(i: usize) -> Vec<u8> {
    let text = format!("{{\"seq\":{i},\"user\":\"u{:05}\",\"event\":\"click\",\"pad\":\"", (i * 7919) % 50_000);
    let mut v = text.into_bytes();
    v.resize(VALUE_BYTES - 2, b'x');
    v.extend_from_slice(b"\"}");
    v
}

/// An uncompressed batch of 100-byte records, as close to `size` stored
/// bytes as whole records allow.
fn uncompressed_batch(size: usize) -> Vec<u8> {
    let mut records = Vec::with_capacity(size);
    let mut count = 0i32;
    let mut one = Vec::new();
    loop {
        one.clear();
        build::record(&mut one, i64::from(count), 0, None, &value(count as usize));
        if count > 0 && HEADER_BYTES + records.len() + one.len() > size {
            break;
        }
        records.extend_from_slice(&one);
        count += 1;
    }
    build::from_records(&records, count, 0, 1_700_000_000_000, 1_700_000_000_000)
}

/// A batch of `size` stored bytes whose attributes say lz4: its records
/// section is opaque to the broker (here pseudo-random bytes).
fn compressed_batch(size: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let body: Vec<u8> = (0..size - HEADER_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let records_count = (size / RECORD_BYTES_ABOUT).max(1) as i32;
    build::from_records(&body, records_count, LZ4_ATTRIBUTES, 1_700_000_000_000, 1_700_000_000_000)
}

fn validate(c: &mut Criterion) {
    for (kind, compressed) in [("uncompressed", false), ("lz4_attribute", true)] {
        let mut group = c.benchmark_group(format!("validate/{kind}"));
        for (name, size) in SIZES {
            let bytes = if compressed { compressed_batch(size) } else { uncompressed_batch(size) };
            batch::validate(&bytes).expect("bench batch is valid");
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
                b.iter(|| batch::validate(black_box(bytes)).unwrap())
            });
        }
        group.finish();
    }
}

fn split_batches(c: &mut Criterion) {
    let mut group = c.benchmark_group("split_batches/uncompressed");
    for (name, size) in SIZES {
        let bytes = uncompressed_batch(size);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| batch::split_batches(black_box(bytes)).unwrap())
        });
    }
    // One 1 MiB produce request made of 1 KiB batches (many small producers' worth).
    let one = uncompressed_batch(1 << 10);
    let request: Vec<u8> = std::iter::repeat_n(one.as_slice(), (1 << 20) / one.len()).flatten().copied().collect();
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_with_input(BenchmarkId::from_parameter("1MiB_of_1KiB_batches"), &request, |b, request| {
        b.iter(|| batch::split_batches(black_box(request)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("split_batches/lz4_attribute");
    for (name, size) in SIZES {
        let bytes = compressed_batch(size);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| batch::split_batches(black_box(bytes)).unwrap())
        });
    }
    group.finish();
}

fn compute_crc(c: &mut Criterion) {
    let mut group = c.benchmark_group("compute_crc");
    for (name, size) in SIZES {
        let bytes = uncompressed_batch(size);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| batch::compute_crc(black_box(bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, validate, split_batches, compute_crc);
criterion_main!(benches);
