//! The `inlet` admin CLI as an operator runs it: each verb is a subprocess against a real broker;
//! the tests assert on its `--output json`, its exit code and one-line errors, and check the
//! broker's state independently (librdkafka reads what `inlet produce` wrote and the group
//! offsets `inlet consume --group` committed; `describe` verbs are checked after the verbs that
//! change state).
//!
//! - [`topics`]: topic, config and cluster verbs, errors, completions;
//! - [`clients`]: produce, consume and perf;
//! - [`groups`]: consume in a group, group list/describe/reset-offsets/delete;
//! - [`dead_leader`]: `topic describe` with a killed leader still in the metadata;
//! - [`serve_log`]: the broker's log written to a file.

mod clients;
mod dead_leader;
mod groups;
mod serve_log;
mod topics;

use std::io::Write;
use std::process::{Command, Stdio};

use inlet_integration_tests::inlet_bin;
use serde_json::Value;

/// What one `inlet` run printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `inlet --bootstrap-server <bootstrap> ARGS` with `stdin` as its input.
pub fn inlet_with_input(bootstrap: &str, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(inlet_bin())
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .args(args)
        .env_remove("INLET_BOOTSTRAP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn inlet {args:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(stdin.as_bytes())
        .expect("write the CLI's stdin");
    drop(input);
    let output = child.wait_with_output().expect("wait for inlet");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn inlet(bootstrap: &str, args: &[&str]) -> Run {
    inlet_with_input(bootstrap, args, "")
}

/// Runs a verb with `--output json`, asserts it succeeded and parses what it printed.
pub fn json(bootstrap: &str, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let run = inlet(bootstrap, &all);
    assert_eq!(
        run.code, 0,
        "inlet {args:?} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("inlet {args:?} printed no JSON ({e}):\n{}", run.stdout))
}

/// A failed run: exit code 1 (2 for usage errors), one line on stderr containing every
/// `expected` fragment, nothing on stdout, no panic.
pub fn assert_error(run: &Run, code: i32, expected: &[&str]) {
    assert_eq!(
        run.code, code,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{}", run.stderr);
    if code == 1 {
        assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
        assert!(run.stderr.starts_with("inlet: "), "{}", run.stderr);
    }
    for fragment in expected {
        assert!(
            run.stderr.contains(fragment),
            "expected {fragment:?} in stderr: {}",
            run.stderr
        );
    }
}

pub fn config_value(configs: &Value, name: &str) -> (String, String) {
    let entry = configs
        .as_array()
        .expect("configs are a list")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no config {name} in {configs}"));
    (
        entry["value"].as_str().unwrap_or_default().to_string(),
        entry["source"].as_str().unwrap_or_default().to_string(),
    )
}
