//! Shared by the binary-level tests: starting the real `exposure-server` binary on free ports,
//! following its log, and creating authorities through its admin command.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub const BINARY: &str = env!("CARGO_BIN_EXE_exposure-server");

/// A running server process.
pub struct RunningBinary {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT` of its gRPC listener.
    pub url: String,
    /// Every log line so far (JSON), kept up to date by a reader thread.
    pub log: Arc<Mutex<String>>,
}

impl RunningBinary {
    /// Returns the log read so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM and returns whether the process then exited successfully.
    pub fn terminate(mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        self.child.wait().expect("wait").success()
    }
}

/// Runs an admin command of the binary on `data_dir`.
pub fn admin(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run exposure-server")
}

/// Creates an authority for `region`; returns its token (the last line of stdout).
pub fn add_authority(data_dir: &Path, region: &str) -> String {
    let added = admin(
        data_dir,
        &[
            "authority",
            "add",
            "--name",
            "test authority",
            "--region",
            region,
        ],
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    String::from_utf8(added.stdout)
        .expect("utf-8")
        .lines()
        .last()
        .expect("token line")
        .to_owned()
}

/// Starts the binary with JSON logs on a free gRPC port and the given extra flags; returns
/// once the store is open and the listener bound.
#[allow(
    clippy::zombie_processes,
    reason = "the caller waits through RunningBinary::terminate"
)]
pub fn start(data_dir: &Path, extra: &[&str]) -> RunningBinary {
    let mut child = Command::new(BINARY)
        .args(["--grpc-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start server");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let log = Arc::new(Mutex::new(String::new()));
    let reader_log = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if let Ok(mut log) = reader_log.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = log.lock().map(|log| log.clone()).unwrap_or_default();
        if text.contains("\"message\":\"store opened\"") {
            let line = text
                .lines()
                .find(|line| line.contains("\"message\":\"listening\""))
                .expect("listening line");
            let start = line.find("\"grpc\":\"").expect("grpc field") + 8;
            let end = start + line[start..].find('"').expect("end of field");
            let url = format!("http://{}", &line[start..end]);
            return RunningBinary { child, url, log };
        }
        assert!(Instant::now() < deadline, "server did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Returns a free loopback port (for the metrics listener, which has no port-0 report).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
