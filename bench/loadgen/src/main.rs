//! `inlet-loadgen`: the client side of the broker benchmark, on librdkafka (what most Kafka users
//! run), so the figures describe the broker as real clients see it. Each mode prints one JSON
//! object on stdout; `bench/run.sh` collects them.
//!
//! * `produce`: as fast as possible (or at `--rate-mb`) for `--seconds`; throughput and the
//!   send-to-acknowledgement latency of every record.
//! * `consume`: one consumer reads every partition from the beginning to the end seen at start.
//! * `end-to-end`: a producer at a fixed rate and a consumer in the same process; latency from
//!   the send time written into each record to its arrival at the consumer.

mod latency;
mod modes;
mod payload;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "librdkafka load for the Inlet broker benchmark")]
struct Cli {
    /// Broker to connect to.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to use (created by the producer side with --partitions if missing).
    #[arg(long, default_value = "bench")]
    topic: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Produce(modes::ProduceArgs),
    Consume(modes::ConsumeArgs),
    EndToEnd(modes::EndToEndArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.mode {
        Mode::Produce(args) => modes::produce(&cli.bootstrap, &cli.topic, &args),
        Mode::Consume(args) => modes::consume(&cli.bootstrap, &cli.topic, &args),
        Mode::EndToEnd(args) => modes::end_to_end(&cli.bootstrap, &cli.topic, &args),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(error) => {
            eprintln!("inlet-loadgen: {error:#}");
            std::process::exit(1);
        }
    }
}
