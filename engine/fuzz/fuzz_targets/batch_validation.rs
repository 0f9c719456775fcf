//! Fuzzes the broker's first line of defence: `batch::validate` and
//! `batch::split_batches` on arbitrary bytes (a produce request's records).
//! Neither may panic, and whatever they accept must hold up: the announced
//! size is the real size, the CRC-32C recomputes to the stored one, the
//! record count matches the offset delta, the split covers the input with
//! contiguous batches, patching `base_offset` and the leader epoch (the
//! broker's only in-place edits) keeps the batch valid with the same CRC,
//! the LogAppendTime rewrite yields a valid batch, the repair of a max
//! timestamp below the first one (compressed batches inflated) yields a
//! valid batch whose header agrees, and the records of an uncompressed
//! batch parse for offset and timestamp lookups.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pinion_engine::batch::{self, BatchHeader, Compression};

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes with every complete batch's CRC made right, so the
    // fuzzer gets past the CRC to the checks behind it.
    check(&with_crcs_fixed(data));
});

/// Walks `data` as batches back to back and rewrites each complete one's CRC.
fn with_crcs_fixed(data: &[u8]) -> Vec<u8> {
    let mut fixed = data.to_vec();
    let mut at = 0usize;
    while let Some(size) = batch::peek_size(&fixed[at..]) {
        let Some(size) = usize::try_from(size)
            .ok()
            .filter(|&s| s >= batch::HEADER_BYTES && at + s <= fixed.len())
        else {
            break;
        };
        let crc = batch::compute_crc(&fixed[at..at + size]);
        fixed[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        at += size;
    }
    fixed
}

fn check(data: &[u8]) {
    if let Ok(header) = batch::validate(data) {
        check_accepted(data, &header);
    }
    if let Ok(batches) = batch::split_batches(data) {
        assert!(
            !batches.is_empty(),
            "an accepted split holds at least one batch"
        );
        let mut end = 0;
        for (range, header) in &batches {
            assert_eq!(range.start, end, "batches are back to back");
            end = range.end;
            check_accepted(&data[range.clone()], header);
        }
        assert_eq!(end, data.len(), "the batches cover the whole input");
    }
    // Peeking at a size never panics, whatever the bytes.
    let _ = batch::peek_size(data);
    let _ = batch::uncompressed_record_deltas(data);
}

fn check_accepted(bytes: &[u8], header: &BatchHeader) {
    assert_eq!(
        header.size(),
        bytes.len(),
        "announced size is the real size"
    );
    assert_eq!(batch::compute_crc(bytes), header.crc, "the CRC recomputes");
    assert_eq!(header.magic, batch::MAGIC_V2);
    assert!(header.records_count > 0);
    assert_eq!(
        i64::from(header.records_count),
        i64::from(header.last_offset_delta) + 1
    );
    assert_eq!(
        batch::validate(bytes).as_ref(),
        Ok(header),
        "validation is deterministic"
    );

    let mut patched = bytes.to_vec();
    batch::set_base_offset(&mut patched, 0x0012_3456_789A);
    batch::set_partition_leader_epoch(&mut patched, 42);
    let after = batch::validate(&patched)
        .expect("patching base_offset and the leader epoch keeps a batch valid");
    assert_eq!(
        (after.base_offset, after.partition_leader_epoch),
        (0x0012_3456_789A, 42)
    );
    assert_eq!(
        after.crc, header.crc,
        "the patched fields lie outside the CRC"
    );
    assert_eq!(
        &patched[21..],
        &bytes[21..],
        "nothing under the CRC changed"
    );

    let mut log_append_time = bytes.to_vec();
    batch::set_log_append_time(&mut log_append_time, 1_700_000_000_000);
    let stamped =
        batch::validate(&log_append_time).expect("the LogAppendTime rewrite yields a valid batch");
    assert!(stamped.is_log_append_time());
    assert_eq!(stamped.max_timestamp, 1_700_000_000_000);

    let mut repaired = bytes.to_vec();
    let mut repaired_header = *header;
    if batch::repair_max_timestamp(&mut repaired, &mut repaired_header) {
        let after = batch::validate(&repaired).expect("the max timestamp repair yields a valid batch");
        assert_eq!(after, repaired_header, "the repaired header says what was written");
    } else {
        assert_eq!(repaired, bytes, "a batch not repaired is untouched");
    }

    if header.compression() == Compression::None {
        let deltas = batch::uncompressed_record_deltas(bytes)
            .expect("a validated uncompressed batch's records parse");
        assert_eq!(deltas.len(), header.records_count as usize);
    }
}
