//! What every admin verb shares: the global options, the runtime, and the connection to the
//! cluster with an error message that names the address the operator gave.

use anyhow::Context as _;
use inlet_protocol::client::cluster::Cluster;

use crate::output::Output;

/// Global options, passed to every verb.
pub struct Context {
    pub bootstrap: String,
    pub output: Output,
}

impl Context {
    /// Connects to the first reachable bootstrap broker.
    pub async fn connect(&self) -> anyhow::Result<Cluster> {
        Cluster::connect(&self.bootstrap, "inlet-cli")
            .await
            .with_context(|| format!("cannot reach the cluster at {}", self.bootstrap))
    }
}

/// Runs a verb's future on a fresh runtime.
pub fn block_on(
    future: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}
