//! The process's open-file limit (RLIMIT_NOFILE), raised at start-up.
//!
//! Every client connection and every active segment holds descriptors (closed segments do not,
//! see `inlet_storage::segment`); the common default soft limit of 1024 is far below what a
//! broker needs, while the hard limit an administrator set is usually much higher. Like Kafka's
//! packaging, which asks for a high `ulimit -n`, the broker uses all it is allowed.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft limit on open files to the hard limit and returns the limit in force
/// (`None` if it cannot be read). A failure is logged, not fatal: the broker can run with less.
pub fn raise_to_hard_limit() -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        tracing::info!(open_files_limit = soft, "open-file limit");
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                open_files_limit = hard,
                previous = soft,
                "raised the open-file limit to the hard limit"
            );
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(%error, soft, hard, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_ends_at_the_hard_limit() {
        let limit = raise_to_hard_limit().unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!((limit, soft), (hard, hard));
    }
}
