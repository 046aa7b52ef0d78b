//! `inlet`: one binary to run a broker (`inlet serve`) and to administer any Kafka-compatible
//! cluster (topics, produce/consume, groups, transactions, configs, load generation). Each verb
//! lives in the module of its name. Errors reach the operator as one line with context and exit code 1 (clap
//! exits 2 for usage errors), never a panic.

mod cluster;
mod connect;
mod consume;
mod delete_records;
mod elect;
mod group;
mod group_consumer;
mod output;
mod perf;
mod produce;
mod quota;
mod reassign;
mod serve;
mod topic;
mod topic_describe;
mod txn;

use clap::{CommandFactory, Parser, Subcommand};

use crate::connect::Context;
use crate::output::Output;

#[derive(Parser)]
#[command(
    name = "inlet",
    version,
    about = "Inlet: a Kafka-compatible streaming ingestion broker"
)]
struct Cli {
    /// Comma-separated `host:port` list of brokers to bootstrap from (admin verbs).
    #[arg(
        long,
        global = true,
        env = "INLET_BOOTSTRAP",
        default_value = "localhost:9092",
        value_name = "HOST:PORT"
    )]
    bootstrap_server: String,
    /// Human-readable tables, or JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Serve(Box<serve::ServeArgs>),
    /// Create, list, describe, delete and configure topics.
    Topic(topic::TopicArgs),
    /// Produce records from stdin (one per line) or a file.
    Produce(produce::ProduceArgs),
    /// Print records of a topic, optionally as a member of a consumer group.
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups.
    Group(group::GroupArgs),
    /// List and describe transactions, and show the producers of a topic's partitions.
    Txn(txn::TxnArgs),
    /// Describe the cluster: brokers and their state, the controller quorum, cluster id.
    Cluster(cluster::ClusterArgs),
    /// Describe topic or broker configuration.
    Config(cluster::ConfigArgs),
    /// Describe and alter client quotas (produce and fetch byte rates per client id or user).
    Quota(quota::QuotaArgs),
    /// Load generators: produce or consume as fast as allowed and report throughput and latency.
    Perf(perf::PerfArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let context = Context {
        bootstrap: cli.bootstrap_server,
        output: cli.output,
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Topic(args) => connect::block_on(topic::run(&context, args)),
        Command::Produce(args) => connect::block_on(produce::run(&context, args)),
        Command::Consume(args) => connect::block_on(consume::run(&context, args)),
        Command::Group(args) => connect::block_on(group::run(&context, args)),
        Command::Txn(args) => connect::block_on(txn::run(&context, args)),
        Command::Cluster(args) => connect::block_on(cluster::run_cluster(&context, args)),
        Command::Config(args) => connect::block_on(cluster::run_config(&context, args)),
        Command::Quota(args) => connect::block_on(quota::run(&context, args)),
        Command::Perf(args) => connect::block_on(perf::run(&context, args)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "inlet", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `inlet ... | head` closing the pipe early is not a failure.
        Err(error)
            if error
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("inlet: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
