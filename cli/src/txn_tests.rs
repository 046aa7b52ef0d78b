//! `inlet txn` argument parsing.

use super::*;
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: TxnCommand,
}

fn parse(args: &[&str]) -> Result<TxnCommand, clap::Error> {
    Cli::try_parse_from(std::iter::once("txn").chain(args.iter().copied())).map(|c| c.command)
}

#[test]
fn list_takes_repeatable_state_and_producer_filters() {
    assert_eq!(
        parse(&["list"]).unwrap(),
        TxnCommand::List {
            states: vec![],
            producer_ids: vec![]
        }
    );
    assert_eq!(
        parse(&[
            "list",
            "--state",
            "Ongoing",
            "--state",
            "PrepareCommit",
            "--producer-id",
            "7"
        ])
        .unwrap(),
        TxnCommand::List {
            states: vec!["Ongoing".into(), "PrepareCommit".into()],
            producer_ids: vec![7]
        }
    );
    assert!(parse(&["list", "--producer-id", "seven"]).is_err());
}

#[test]
fn describe_needs_one_transactional_id() {
    assert_eq!(
        parse(&["describe", "orders-tx"]).unwrap(),
        TxnCommand::Describe {
            transactional_id: "orders-tx".into()
        }
    );
    assert!(parse(&["describe"]).is_err());
    assert!(parse(&["describe", "a", "b"]).is_err());
}

#[test]
fn producers_takes_a_topic_and_optional_partitions() {
    assert_eq!(
        parse(&[
            "producers",
            "orders",
            "--partition",
            "0",
            "--partition",
            "2"
        ])
        .unwrap(),
        TxnCommand::Producers {
            topic: "orders".into(),
            partitions: vec![0, 2]
        }
    );
    assert_eq!(
        parse(&["producers", "orders"]).unwrap(),
        TxnCommand::Producers {
            topic: "orders".into(),
            partitions: vec![]
        }
    );
    assert!(parse(&["producers"]).is_err());
    assert!(parse(&["producers", "orders", "--partition", "x"]).is_err());
}
