//! pinion-bench's own Kafka client, on the `kafka-protocol` message types:
//! blocking sockets with timeouts, one thread per connection side, no
//! async runtime (the load generator must stay lighter than the broker).
//!
//! Reading order: [`connection`] (frames, versions), [`cluster`] (metadata,
//! topic creation, start offsets), [`record_batch`] (batches built and walked),
//! [`produce_frame`] (produce requests sent without copying their batches).

pub mod cluster;
pub mod connection;
pub mod produce_frame;
pub mod record_batch;
