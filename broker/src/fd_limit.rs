//! The process's open-file limit (RLIMIT_NOFILE): raised at start-up, and read by the listener to
//! cap connections.
//!
//! Every client connection and every active segment holds descriptors (closed segments do not,
//! see `inlet_storage::segment`); the common default soft limit of 1024 is far below what a
//! broker needs, while the hard limit an administrator set is usually much higher. Like Kafka's
//! packaging, which asks for a high `ulimit -n`, the broker uses all it is allowed.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft limit on open files to the hard limit and returns the limit in force
/// (`None` when unlimited). A failure is logged, not fatal: the broker can run with less.
pub fn raise_to_hard_limit() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: maximum,
        maximum,
    };
    if current == maximum {
        tracing::info!(open_files_limit = ?current, "open-file limit");
        return current;
    }
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(open_files_limit = ?maximum, previous = ?current,
                "raised the open-file limit to the hard limit");
            maximum
        }
        Err(error) => {
            tracing::warn!(%error, soft = ?current, hard = ?maximum, "cannot raise the open-file limit");
            current
        }
    }
}

/// The soft limit on open files now; `None` when unlimited.
pub fn open_file_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_ends_at_the_hard_limit() {
        let limit = raise_to_hard_limit();
        let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
        assert_eq!((limit, current), (maximum, maximum));
        assert_eq!(open_file_limit(), maximum);
    }
}
