//! `inlet`: one binary to run a broker (`inlet serve`) and, later, to administer any
//! Kafka-compatible cluster. Errors reach the operator as one line with context, never a panic.

mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "inlet",
    version,
    about = "Inlet: a Kafka-compatible streaming ingestion broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("inlet: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
