//! The load of `pinion-bench run`: producer threads on an open-loop
//! schedule ([`publisher`]), consumer threads measuring end-to-end latency
//! ([`subscriber`]), the message layout ([`payload`]) and what they share
//! ([`stats`]).

pub mod payload;
pub mod publisher;
pub mod stats;
pub mod subscriber;
