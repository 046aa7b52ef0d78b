//! The metadata image every broker reads: brokers, topics, partitions and their leaders, as the
//! controller's log has them once applied. Published as an immutable snapshot after each applied
//! batch; handlers read it, never a lock-held registry.

pub mod image;
pub mod quotas;
pub mod view;
