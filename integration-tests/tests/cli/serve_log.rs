//! `inlet serve`'s own log when it goes to a file: plain text an operator can grep.

use inlet_integration_tests::Broker;

#[test]
fn serve_writes_a_log_file_without_colour_codes() {
    // The test broker's stdout and stderr are a file (its log), not a terminal.
    let broker = Broker::start();
    let log = std::fs::read(broker.log_path()).expect("read the broker log");
    assert!(
        String::from_utf8_lossy(&log).contains("INFO"),
        "the broker logged nothing at info:\n{}",
        broker.log_tail(20)
    );
    let escapes = log.iter().filter(|&&b| b == 0x1b).count();
    assert_eq!(
        escapes,
        0,
        "ANSI escape bytes in a log written to a file:\n{}",
        broker.log_tail(5)
    );
}
