//! Message values and keys.
//!
//! Value layout (message_size_bytes in all):
//! ```text
//! 0..8    run id (little-endian u64): the consumer counts only its own run
//! 8..16   intended send time, ns since the process-wide epoch (LE u64)
//! 16..    body: random bytes or a JSON-like event, from a seeded pool
//! ```
//! Bodies come from a pool of [`POOL_BODIES`] values built before the run,
//! so generating a message costs a 16-byte write and a copy.

use crate::load::stats::RunStats;
use crate::producer::{json_value, SplitMix64};
use crate::workload::{Keys, Payload, Workload};

pub const HEADER_BYTES: usize = 16;
const POOL_BODIES: usize = 64;

#[derive(Debug)]
pub struct PayloadPool {
    bodies: Vec<Vec<u8>>,
}

impl PayloadPool {
    pub fn new(workload: &Workload, producer: u32) -> Self {
        let body_bytes = workload.message_size_bytes as usize - HEADER_BYTES;
        let mut rng = SplitMix64::new(workload.payload_seed ^ (u64::from(producer) << 32));
        let bodies = (0..POOL_BODIES as u64)
            .map(|i| {
                let mut body = Vec::with_capacity(body_bytes);
                match workload.payload {
                    Payload::Random => {
                        body.resize(body_bytes, 0);
                        rng.fill(&mut body);
                    }
                    Payload::Json => json_value(&mut rng, i, body_bytes, &mut body),
                }
                body
            })
            .collect();
        Self { bodies }
    }

    pub fn body(&self, sequence: u64) -> &[u8] {
        &self.bodies[sequence as usize % POOL_BODIES]
    }
}

/// The 16-byte value header.
pub fn header(run_id: u64, intended_ns: u64) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..8].copy_from_slice(&run_id.to_le_bytes());
    out[8..].copy_from_slice(&intended_ns.to_le_bytes());
    out
}

/// The intended send time of a value of this run, or `None` for another
/// run's (or another tool's) message.
pub fn intended_ns_of(value: &[u8], stats: &RunStats) -> Option<u64> {
    let run_id = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    (run_id == stats.run_id).then(|| u64::from_le_bytes(value[8..16].try_into().expect("8 bytes")))
}

/// Keys of one producer.
#[derive(Debug)]
pub struct KeyGenerator {
    keys: Keys,
    rng: SplitMix64,
    buffer: Vec<u8>,
}

impl KeyGenerator {
    pub fn new(keys: Keys, seed: u64) -> Self {
        Self { keys, rng: SplitMix64::new(seed), buffer: Vec::with_capacity(24) }
    }

    /// The next key and the partition (of `partitions`) it maps to;
    /// `None` without keys.
    pub fn next(&mut self, sequence: u64, partitions: usize) -> Option<(&[u8], usize)> {
        use std::io::Write;
        self.buffer.clear();
        let partition = match self.keys {
            Keys::None => return None,
            Keys::Random => {
                let value = self.rng.next_u64();
                let _ = write!(self.buffer, "{value:016x}");
                (value % partitions as u64) as usize
            }
            Keys::Sequential => {
                let _ = write!(self.buffer, "{sequence}");
                (sequence % partitions as u64) as usize
            }
        };
        Some((&self.buffer, partition))
    }
}
