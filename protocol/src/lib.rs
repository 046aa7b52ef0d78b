//! The Kafka wire protocol as Inlet speaks it: length-prefixed framing ([`frame`]), request and
//! response encoding over the `kafka-protocol` crate's generated messages ([`codec`]), a zero-copy
//! view of v2 record batches ([`batch`]) and a small async client ([`client`]).

pub mod batch;
pub mod client;
pub mod codec;
pub mod frame;

pub use kafka_protocol;
