//! The workspace's real binaries as processes: finding them in this build's profile folder and
//! running `exposure-server` on loopback ports it picks itself (port 0, read back from its
//! `listening` log line), for tests that kill it, restart it or run its subcommands.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Returns a binary of this build (`exposure-server`, `exposure-matcher`), building it when a
/// run of this package alone did not.
pub fn path(package: &str, name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("test executable");
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("profile folder");
    let binary = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build.args(["build", "-p", package, "--bin", name]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(
            build.status().expect("cargo build").success(),
            "building {name}"
        );
    }
    binary
}

/// A running `exposure-server` process with JSON logs.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT` of the gRPC listener.
    pub grpc_url: String,
    /// `http://127.0.0.1:PORT` of the HTTP listener.
    pub http_url: String,
    /// `http://127.0.0.1:PORT` of the Prometheus `/metrics` listener.
    pub metrics_url: String,
    log: Arc<Mutex<String>>,
    /// The `listening` log line.
    listening: String,
}

impl ServerProcess {
    /// Starts the server on `data_dir` with every listener on a loopback port of its choosing
    /// and `extra` flags; returns once it listens (30 s at most).
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut command = Command::new(path("exposure-server", "exposure-server"));
        command
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(["--console-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json"])
            .args(extra)
            .arg("--data-dir")
            .arg(data_dir);
        Self::spawn(command)
    }

    /// Starts `command`, the server binary with flags and environment the caller chose (JSON
    /// logs among them); returns once it listens (30 s at most).
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start exposure-server");
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
            if let Some(line) = text
                .lines()
                .find(|line| line.contains("\"message\":\"listening\""))
            {
                let field = |name: &str| {
                    let start = line.find(&format!("\"{name}\":\""))? + name.len() + 4;
                    let end = start + line[start..].find('"')?;
                    Some(format!("http://{}", &line[start..end]))
                };
                let grpc_url = field("grpc").expect("the gRPC address is logged");
                let http_url = field("http").expect("the HTTP address is logged");
                let metrics_url = field("metrics").expect("the metrics address is logged");
                return Self {
                    child,
                    grpc_url,
                    http_url,
                    metrics_url,
                    listening: line.to_owned(),
                    log,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("exposure-server exited with {status}: {text}");
            }
            assert!(Instant::now() < deadline, "server did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the address the listener `name` (`grpc`, `http`, `metrics`) bound, as logged.
    pub fn listener(&self, name: &str) -> std::net::SocketAddr {
        let key = format!("\"{name}\":\"");
        let start = self.listening.find(&key).map(|at| at + key.len());
        let address = start.and_then(|start| {
            let end = start + self.listening[start..].find('"')?;
            self.listening[start..end].parse().ok()
        });
        address.unwrap_or_else(|| panic!("no {name} address in {}", self.listening))
    }

    /// Returns the log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Sends SIGTERM; returns whether the process then exited successfully.
    pub fn terminate(mut self) -> bool {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        self.child.wait().expect("wait").success()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // A test that panics must not leave a server behind; after kill/terminate this is a
        // no-op on a reaped child.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
