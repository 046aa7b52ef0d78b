//! Real clients against a real broker process.
//!
//! [`Broker`] starts the `inlet` binary on a free loopback port with a temporary data directory and
//! stops it again; the tests in `tests/` drive it with librdkafka (through `rdkafka`), with
//! hand-built bytes, and (from `python/`) with kafka-python and kcat.
//!
//! Which binary runs:
//! - `INLET_BIN`, if set (`scripts/test.sh` builds the broker and sets it);
//! - otherwise `<target dir>/debug/inlet`, where the target dir is `CARGO_TARGET_DIR` or the
//!   workspace's `target/`. If that file is missing it is built once per test process with
//!   `$CARGO build -p inlet`. An existing binary is used as it is, so after changing broker code
//!   run `cargo build -p inlet` (or `scripts/test.sh`) before `cargo test`.
//!
//! Test brokers run with `--log-segment-bytes` [`TEST_SEGMENT_BYTES`] (1 MiB) unless a test asks
//! for another size: small segments make the round-trip tests roll segments and read across
//! them, and keep the disk an active segment reserves ahead of its writes small.
//!
//! The broker's stdout and stderr go to `broker.log` in the broker's temporary directory. When a
//! test panics while a [`Broker`] is alive, its `Drop` prints the log's last lines. The directory
//! is deleted as usual unless `INLET_IT_KEEP_DATA` is set, in which case it is kept and its path
//! printed.

pub mod cluster;
pub mod history;
pub mod kafka;
pub mod netsplit;
pub mod proxy;
pub mod raw;
pub mod socket_owner;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long a starting broker has to answer its first ApiVersions request.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a broker has to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// `--log-segment-bytes` for test brokers unless [`BrokerOptions::segment_bytes`] says otherwise.
pub const TEST_SEGMENT_BYTES: u64 = 1 << 20;

/// How a [`Broker`] is started. `Default` gives a fresh data directory and no extra settings.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Use this data directory instead of a fresh one (it is not deleted afterwards).
    pub data_dir: Option<PathBuf>,
    /// `--log-segment-bytes`; `None` means [`TEST_SEGMENT_BYTES`].
    pub segment_bytes: Option<u64>,
    /// Extra command-line arguments appended after the standard `serve` flags.
    pub extra_args: Vec<String>,
    /// Extra environment variables for the broker process (e.g. `INLET_LOG`).
    pub env: Vec<(String, String)>,
    /// Run the broker under this open-file limit (soft and hard, `ulimit -n` in a shell that
    /// then execs the broker); `None` inherits the test's.
    pub open_files_limit: Option<u64>,
    /// `--node-id`; `None` means 1.
    pub node_id: Option<i32>,
    /// The Kafka listener's loopback port; `None` means a free one.
    pub port: Option<u16>,
    /// `--advertised-listener` (`host:port` other nodes and clients are told to connect to,
    /// e.g. a proxy in front of the listener); `None` means the listener itself.
    pub advertised_listener: Option<String>,
}

/// A running (or stopped, between [`Broker::kill9`] and [`Broker::restart`]) `inlet` process.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    options: BrokerOptions,
    /// Holds the log file and, unless the caller gave one, the data directory.
    tempdir: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a broker with default options on a free loopback port.
    pub fn start() -> Broker {
        Broker::start_with(BrokerOptions::default())
    }

    /// Starts a broker with `options` on a free loopback port and waits until it answers an
    /// ApiVersions request.
    pub fn start_with(options: BrokerOptions) -> Broker {
        let mut broker = Broker::prepare(options);
        broker.spawn_and_wait();
        broker
    }

    /// Starts several brokers at once and waits until every one answers ApiVersions: the nodes
    /// of a cluster, none of which serves before the controller quorum (a majority of them) runs.
    pub fn start_group(options: Vec<BrokerOptions>) -> Vec<Broker> {
        let mut brokers: Vec<Broker> = options.into_iter().map(Broker::prepare).collect();
        Broker::restart_group(&mut brokers.iter_mut().collect::<Vec<_>>());
        brokers
    }

    /// Starts every broker of `brokers` (killing those still running first), then waits until
    /// each answers ApiVersions.
    pub fn restart_group(brokers: &mut [&mut Broker]) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        for broker in brokers.iter_mut() {
            if broker.child.is_some() {
                broker.kill9();
            }
            broker.child = Some(broker.spawn());
        }
        for broker in brokers.iter_mut() {
            let addr = broker.addr();
            let mut child = broker.child.take().expect("spawned above");
            if let Err(err) = wait_until_listening(&mut child, addr, deadline) {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "inlet did not start on {addr}: {err}\nlog: {}\n{}",
                    broker.log_path.display(),
                    broker.log_tail(40)
                );
            }
            broker.child = Some(child);
        }
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`, `libc::SIGCONT`) to the running broker.
    pub fn signal(&self, signal: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .expect("signal: the broker is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet, so it is still ours.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    fn prepare(options: BrokerOptions) -> Broker {
        let tempdir = tempfile::Builder::new()
            .prefix("inlet-it-")
            .tempdir()
            .expect("create a temporary directory for the broker");
        let data_dir = match &options.data_dir {
            Some(dir) => dir.clone(),
            None => tempdir.path().join("data"),
        };
        std::fs::create_dir_all(&data_dir)
            .unwrap_or_else(|e| panic!("create data dir {}: {e}", data_dir.display()));
        let log_path = tempdir.path().join("broker.log");
        Broker {
            child: None,
            port: options.port.unwrap_or_else(free_port),
            data_dir,
            log_path,
            options,
            tempdir: Some(tempdir),
        }
    }

    /// `host:port` for a client's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The socket address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker process id while it runs (e.g. to read its `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `--node-id` of the broker.
    pub fn node_id(&self) -> i32 {
        self.options.node_id.unwrap_or(1)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The file that receives the broker's stdout and stderr, across restarts.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole broker log so far (lossy UTF-8).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The options it was started with.
    pub fn options(&self) -> &BrokerOptions {
        &self.options
    }

    /// The options the next [`restart`](Self::restart) uses (e.g. to drop a fault-injection
    /// variable before restarting).
    pub fn options_mut(&mut self) -> &mut BrokerOptions {
        &mut self.options
    }

    /// Whether the process is still running (has not exited, been killed or terminated).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// Kills the broker with SIGKILL (no flush, no shutdown) and reaps it.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("kill9: the broker is not running");
        // The process may already be gone; kill then fails with InvalidInput, which is fine.
        let _ = child.kill();
        child.wait().expect("wait for the killed broker");
    }

    /// Sends SIGTERM and waits (up to [`SHUTDOWN_TIMEOUT`]) for the broker to exit.
    /// Panics, after a SIGKILL, if it does not exit in time.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .expect("terminate: the broker is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits in pid_t");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet, so it is still ours.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(
            rc,
            0,
            "kill(SIGTERM) failed: {}",
            std::io::Error::last_os_error()
        );
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            match child.try_wait().expect("wait for the terminated broker") {
                Some(status) => return status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "broker did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; log: {}\n{}",
                        self.log_path.display(),
                        self.log_tail(40)
                    );
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Starts the broker again on the same port and data directory and waits until it answers
    /// ApiVersions. If it is still running it is first killed with SIGKILL.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
        self.spawn_and_wait();
    }

    /// The last `lines` lines of the broker log.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            // Read at most the last 64 KiB: enough for `lines` lines of a normal log.
            let start = len.saturating_sub(64 * 1024);
            if file.seek(SeekFrom::Start(start)).is_ok() {
                let mut bytes = Vec::new();
                let _ = file.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn spawn_and_wait(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        // A restart may race the kernel releasing the port of the killed process, so a broker
        // that exits during start-up is started again until the deadline.
        loop {
            let mut child = self.spawn();
            match wait_until_listening(&mut child, self.addr(), deadline) {
                Ok(()) => {
                    self.child = Some(child);
                    return;
                }
                Err(StartError::Exited(status))
                    if Instant::now() + Duration::from_secs(1) < deadline =>
                {
                    eprintln!("inlet exited during start-up ({status}); retrying");
                    thread::sleep(Duration::from_millis(250));
                }
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "inlet did not start on {}: {err}\nbinary: {}\nlog: {}\n{}",
                        self.addr(),
                        inlet_bin().display(),
                        self.log_path.display(),
                        self.log_tail(40)
                    );
                }
            }
        }
    }

    fn spawn(&self) -> Child {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("open broker log {}: {e}", self.log_path.display()));
        let log_err = log.try_clone().expect("clone the broker log file handle");
        let listen = self.bootstrap();
        let mut cmd = match self.options.open_files_limit {
            None => Command::new(inlet_bin()),
            Some(limit) => {
                // exec keeps the shell's pid, so `pid()` and signals reach the broker.
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(inlet_bin());
                shell
            }
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(&listen)
            .arg("--advertised-listener")
            .arg(
                self.options
                    .advertised_listener
                    .as_deref()
                    .unwrap_or(&listen),
            )
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--node-id")
            .arg(self.options.node_id.unwrap_or(1).to_string())
            .arg("--log-segment-bytes")
            .arg(
                self.options
                    .segment_bytes
                    .unwrap_or(TEST_SEGMENT_BYTES)
                    .to_string(),
            )
            .args(&self.options.extra_args)
            .env("INLET_LOG", "info")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", inlet_bin().display()))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let mut exited_early = None;
        if let Some(mut child) = self.child.take() {
            if let Ok(Some(status)) = child.try_wait() {
                exited_early = Some(status);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            if let Some(status) = exited_early {
                eprintln!("the broker had already exited during the test: {status}");
            }
            eprintln!(
                "---- inlet broker log {} (last 60 lines) ----\n{}\n---- end of broker log ----",
                self.log_path.display(),
                self.log_tail(60)
            );
            let keep = std::env::var_os("INLET_IT_KEEP_DATA").is_some_and(|v| !v.is_empty());
            match self.tempdir.take() {
                Some(dir) if keep => {
                    eprintln!("kept the broker's directory: {}", dir.keep().display());
                }
                _ => eprintln!("(set INLET_IT_KEEP_DATA=1 to keep the broker's directory)"),
            }
        }
    }
}

#[derive(Debug)]
enum StartError {
    Exited(ExitStatus),
    Timeout,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Exited(status) => write!(f, "the process exited ({status})"),
            StartError::Timeout => {
                write!(f, "no ApiVersions answer within {STARTUP_TIMEOUT:?}")
            }
        }
    }
}

fn wait_until_listening(
    child: &mut Child,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<(), StartError> {
    loop {
        if let Some(status) = child.try_wait().expect("poll the starting broker") {
            return Err(StartError::Exited(status));
        }
        if answers_api_versions(addr) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(StartError::Timeout);
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Whether a Kafka broker answers an ApiVersions v0 request on `addr`. A bare TCP connect is not
/// proof enough: it also succeeds against another test's momentary `free_port` listener, or
/// against itself (TCP self-connect, when the kernel picks `addr`'s port as the local port).
fn answers_api_versions(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream.local_addr().ok() == stream.peer_addr().ok() {
        return false;
    }
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    const CORRELATION_ID: i32 = 0x1e7;
    let mut request = Vec::with_capacity(14);
    request.extend_from_slice(&10i32.to_be_bytes()); // frame size
    request.extend_from_slice(&18i16.to_be_bytes()); // api key: ApiVersions
    request.extend_from_slice(&0i16.to_be_bytes()); // api version 0
    request.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    request.extend_from_slice(&0i16.to_be_bytes()); // client id: ""
    if stream.write_all(&request).is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    if stream.read_exact(&mut head).is_err() {
        return false;
    }
    let size = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let correlation_id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    size >= 4 && correlation_id == CORRELATION_ID
}

/// A loopback port that was free a moment ago, and that this process has not handed out before
/// (tests run in parallel threads, each starting brokers).
pub fn free_port() -> u16 {
    let listener = free_listener();
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// A listener on a loopback port this process has not handed out before (from [`free_port`]
/// or here), for a test's own servers (proxies): it cannot take the port a broker that is
/// about to start was given.
pub fn free_listener() -> TcpListener {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let port = listener
            .local_addr()
            .expect("local address of a bound listener")
            .port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if handed_out.insert(port) {
            return listener;
        }
    }
}

/// The `inlet` binary the tests run; see the module doc. Built at most once per process.
pub fn inlet_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("INLET_BIN") {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "INLET_BIN={} is not a file", bin.display());
            return bin;
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("integration-tests lives inside the workspace")
            .to_path_buf();
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => workspace.join(dir),
            None => workspace.join("target"),
        };
        let bin = target_dir.join("debug").join("inlet");
        if !bin.is_file() {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            eprintln!(
                "{} is missing: building it with `cargo build -p inlet`",
                bin.display()
            );
            let status = Command::new(&cargo)
                .args(["build", "-p", "inlet"])
                .current_dir(&workspace)
                .status()
                .unwrap_or_else(|e| panic!("run {cargo:?} build -p inlet: {e}"));
            assert!(status.success(), "`cargo build -p inlet` failed: {status}");
            assert!(
                bin.is_file(),
                "`cargo build -p inlet` did not produce {}",
                bin.display()
            );
        }
        bin
    })
    .clone()
}

/// Runs the `inlet` CLI against `bootstrap` with `args`, asserts it succeeded, and returns what
/// it printed.
pub fn inlet(bootstrap: &str, args: &[&str]) -> String {
    let output = std::process::Command::new(inlet_bin())
        .args(["--bootstrap-server", bootstrap])
        .args(args)
        .output()
        .expect("run inlet");
    assert!(
        output.status.success(),
        "inlet {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
