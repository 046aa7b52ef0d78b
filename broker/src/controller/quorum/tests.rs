//! Tests of the controller quorum.
