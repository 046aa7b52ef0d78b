//! Replication of partition data between brokers, as Kafka does it: followers fetch from the
//! leader (`fetcher`), the leader tracks their log ends and moves the high watermark
//! (`leader`, applied by `cluster::partition`), asks the controller to shrink or expand the ISR
//! (`isr`), and acks=all producers wait for the high watermark to pass their batches
//! (`Partition::wait_for_high_watermark`).

pub mod fetcher;
pub mod isr;
pub mod leader;

pub use leader::{FollowerState, LeaderState};

/// A partition replica's role, from the metadata image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not yet told by an image (just opened): acts as the sole replica, as a single broker.
    Unassigned,
    /// This broker leads the partition.
    Leader(LeaderState),
    /// This broker copies the partition from `leader`.
    Follower { leader: i32, leader_epoch: i32 },
    /// No leader, or this broker holds the log without being a replica: nothing is served.
    Offline,
}
