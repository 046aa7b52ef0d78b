//! The Kafka wire protocol as Inlet speaks it: length-prefixed framing ([`frame`]), request and
//! response encoding over the `kafka-protocol` crate's generated messages ([`codec`]), a zero-copy
//! view of v2 record batches ([`batch`]), record-level decode/encode for compaction and
//! broker-written batches ([`records`]) and a small async client ([`client`]).

pub mod batch;
pub mod chunked;
pub mod client;
pub mod codec;
pub mod frame;
pub mod record_walk;
pub mod records;

pub use kafka_protocol;
