//! What `batch::validate` accepts, the rest of the engine can read.
//!
//! Regressions found by the `batch_validation` fuzz target: an uncompressed
//! batch whose records frame correctly but whose timestamp or offset delta
//! is not a valid varint used to be accepted (and then skipped by lookups
//! by timestamp); `uncompressed_record_deltas` on a header announcing
//! billions of records used to allocate for all of them before looking at
//! the bytes; and `last_offset` on a `base_offset` near `i64::MAX` (a field
//! outside the CRC, so damage there passes the checksum) overflowed.

use pinion_engine::batch::{self, build, BatchError, BatchHeader};

/// A record's encoding with an arbitrary body (after its length varint).
fn raw_record(body: &[u8]) -> Vec<u8> {
    assert!(body.len() < 64, "one-byte length varint");
    let mut out = vec![(body.len() as u8) << 1];
    out.extend_from_slice(body);
    out
}

#[test]
fn uncompressed_records_whose_deltas_do_not_parse_are_refused() {
    let bodies: [&[u8]; 3] = [
        &[0x00],                   // attributes only: no timestamp delta
        &[0x00, 0x02],             // timestamp delta but no offset delta
        &[0x00, 0xFF, 0xFF, 0xFF], // timestamp delta never ends
    ];
    for body in bodies {
        let batch = build::from_records(&raw_record(body), 1, 0, 1_000, 1_000);
        match batch::validate(&batch) {
            Err(BatchError::Records { reason }) => assert!(reason.contains("varint"), "{reason}"),
            other => panic!("record body {body:x?}: expected a Records error, got {other:?}"),
        }
        assert!(batch::split_batches(&batch).is_err());
    }
    // The smallest record the broker can read back is accepted, and read back.
    let batch = build::from_records(&raw_record(&[0x00, 0x02, 0x00]), 1, 0, 1_000, 1_001);
    batch::validate(&batch).expect("attributes, timestamp delta and offset delta suffice");
    assert_eq!(batch::uncompressed_record_deltas(&batch), Some(vec![(0, 1)]));
}

#[test]
fn every_validated_uncompressed_batch_yields_its_record_deltas() {
    let batch = build::batch(&[b"a", b"", b"ccc"], 50);
    let header = batch::validate(&batch).unwrap();
    let deltas = batch::uncompressed_record_deltas(&batch).unwrap();
    assert_eq!(deltas.len(), header.records_count as usize);
}

#[test]
fn record_deltas_of_a_damaged_header_do_not_allocate_for_the_announced_count() {
    let mut batch = build::batch(&[b"x"], 0);
    // records_count (offset 57) says two billion; only one record is there.
    batch[57..61].copy_from_slice(&2_000_000_000i32.to_be_bytes());
    assert_eq!(batch::uncompressed_record_deltas(&batch), None);
}

#[test]
fn last_offset_of_a_damaged_base_offset_saturates() {
    let mut batch = build::batch(&[b"x", b"y", b"z"], 0);
    batch::set_base_offset(&mut batch, i64::MAX - 1);
    let header: BatchHeader = batch::validate(&batch).expect("base_offset is outside the CRC");
    assert_eq!(header.last_offset(), i64::MAX);
}
