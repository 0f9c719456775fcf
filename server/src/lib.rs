//! pinion-server: the Kafka-compatible broker on the pinion storage engine.
//!
//! Follow a produce request from the socket to the disk and back by reading
//! these modules in order: [`broker`] (shards start), [`net`] (listener,
//! frames, connection, vectored send), [`api`] (the advertised table and
//! dispatch; `api/produce.rs`), [`shard`] (`call` / `execute`),
//! [`placement`] (which shard owns a partition), [`mesh`] (the cross-core
//! hop), then `pinion_engine::Log::append`.

pub mod api;
pub mod broker;
pub mod config;
pub mod errors;
pub mod group;
pub mod groups;
pub mod http;
pub mod mesh;
pub mod metrics;
pub mod net;
pub mod placement;
pub mod producer_ids;
pub mod shard;
pub mod topics;
