//! Shared by the binary-level tests: starting the real `exposure-server` binary on port 0,
//! reading the ports it bound from its `listening` log line, following its log, and creating
//! authorities through its admin command.

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
    /// `127.0.0.1:PORT` of its metrics listener.
    pub metrics_addr: String,
    /// Every log line so far (JSON), kept up to date by a reader thread.
    pub log: Arc<Mutex<String>>,
}

impl RunningBinary {
    /// Returns the log read so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// Waits until the log holds `needle`; panics after 20 s.
    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM and returns whether the process then exited successfully.
    pub fn terminate(self) -> bool {
        self.send_sigterm();
        self.wait()
    }

    /// Sends SIGTERM and returns at once; the server drains meanwhile.
    pub fn send_sigterm(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits for the process to exit; returns whether it exited successfully.
    pub fn wait(mut self) -> bool {
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
pub fn start(data_dir: &Path, extra: &[&str]) -> RunningBinary {
    let mut command = Command::new(BINARY);
    command
        .args(["--grpc-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(extra)
        .arg("--data-dir")
        .arg(data_dir);
    start_command(command)
}

/// Spawns `command` (the binary with JSON logs, maybe through a shell) and returns once the
/// store is open and the listener bound.
#[allow(
    clippy::zombie_processes,
    reason = "the caller waits through RunningBinary::terminate"
)]
pub fn start_command(command: Command) -> RunningBinary {
    spawn_and_wait(command, "\"message\":\"store opened\"", |log, field| {
        let line = log
            .lines()
            .find(|line| line.contains("\"message\":\"listening\""))?;
        let key = format!("\"{field}\":\"");
        let start = line.find(&key)? + key.len();
        let end = start + line[start..].find('"')?;
        Some(line[start..end].to_owned())
    })
}

/// Spawns `command` (the binary with text logs) and returns once the store is open.
pub fn start_text(command: Command) -> RunningBinary {
    spawn_and_wait(command, "store opened", |log, field| {
        let line = log.lines().find(|line| line.contains("listening"))?;
        let key = format!("{field}=");
        let start = line.find(&key)? + key.len();
        let end = start + line[start..].find(' ')?;
        Some(line[start..end].to_owned())
    })
}

#[allow(
    clippy::zombie_processes,
    reason = "the caller waits through RunningBinary::terminate"
)]
fn spawn_and_wait(
    mut command: Command,
    ready: &str,
    address: impl Fn(&str, &str) -> Option<String>,
) -> RunningBinary {
    // Tests run in parallel: the HTTP mirror and the console take free ports unless a test
    // names them.
    let mut child = command
        .env("EXPOSURE_HTTP_ADDR", "127.0.0.1:0")
        .env("EXPOSURE_CONSOLE_ADDR", "127.0.0.1:0")
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
        if text.contains(ready) {
            let grpc = address(&text, "grpc").expect("listening line with the gRPC address");
            let metrics_addr =
                address(&text, "metrics").expect("listening line with the metrics address");
            return RunningBinary {
                child,
                url: format!("http://{grpc}"),
                metrics_addr,
                log,
            };
        }
        assert!(Instant::now() < deadline, "server did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Uploads one fresh GAEN key for VN-TB with `token`; returns the status code.
pub async fn upload_one(url: &str, token: &str, byte: u8) -> tonic::Code {
    upload(url, token, "VN-TB", byte).await
}

async fn upload(url: &str, token: &str, region: &str, byte: u8) -> tonic::Code {
    upload_as(url, &format!("Bearer {token}"), region, byte).await
}

/// Uploads one key for `region` with `authorization` as given (`Bearer …` or `UploadCode …`).
pub async fn upload_as(url: &str, authorization: &str, region: &str, byte: u8) -> tonic::Code {
    use exposure_proto::v1::key_upload_client::KeyUploadClient;
    use exposure_proto::v1::{DiagnosisKey, GaenKey, UploadDiagnosisKeysRequest, diagnosis_key};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let key = DiagnosisKey {
        key: Some(diagnosis_key::Key::Gaen(GaenKey {
            key_data: vec![byte; 16],
            rolling_start_interval_number: u32::try_from((now / 86_400 - 1) * 144)
                .expect("interval"),
            rolling_period: 144,
            days_since_onset_of_symptoms: None,
        })),
        transmission_risk_level: 0,
    };
    let mut request = tonic::Request::new(UploadDiagnosisKeysRequest {
        region: region.into(),
        upload_id: format!("hot-{byte}"),
        keys: vec![key],
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().expect("ascii"));
    let mut client = KeyUploadClient::connect(url.to_owned())
        .await
        .expect("connect");
    match client.upload_diagnosis_keys(request).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// Polls ListBatches of VN-TB until at least `count` batches are listed; returns them; panics
/// after 20 s.
pub async fn wait_for_batches(url: &str, count: usize) -> Vec<exposure_proto::v1::BatchInfo> {
    use exposure_proto::v1::ListBatchesRequest;
    use exposure_proto::v1::distribution_client::DistributionClient;
    let mut client = DistributionClient::connect(url.to_owned())
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let batches = client
            .list_batches(ListBatchesRequest {
                region: "VN-TB".into(),
                after_sequence: 0,
                limit: 0,
            })
            .await
            .expect("list batches")
            .into_inner()
            .batches;
        if batches.len() >= count {
            return batches;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} batches not published: {batches:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
