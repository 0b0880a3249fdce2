//! The binary's exit statuses, as `--help` documents them, each produced for real: bad usage,
//! a target that refuses connections, a breached SLO and a run that meets its SLO, against
//! tonic-health's own `grpc.health.v1.Health` service on a loopback port (what the `noop`
//! scenario calls).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Output};

use tokio_stream::wrappers::TcpListenerStream;

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_exposure-loadtest"))
        .args(args)
        .env_remove("EXPOSURE_TOKEN")
        .output()
        .expect("run exposure-loadtest")
}

/// Returns the exit statuses `run --help` documents: code → what it means.
fn documented_statuses() -> BTreeMap<i32, String> {
    let help = loadtest(&["run", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).expect("utf-8 help");
    let section = help
        .split("Exit status:")
        .nth(1)
        .unwrap_or_else(|| panic!("no exit status section in run --help:\n{help}"));
    section
        .lines()
        .skip_while(|line| line.trim().is_empty())
        .map_while(|line| {
            let line = line.trim();
            let (code, meaning) = line.split_once(char::is_whitespace)?;
            Some((code.parse().ok()?, meaning.trim().to_owned()))
        })
        .collect()
}

/// Starts tonic-health's health service on a loopback port, in a runtime of its own.
fn start_health_server() -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let address = listener.local_addr().expect("address");
        let (_reporter, service) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        address
    });
    (runtime, address)
}

/// Returns a loopback socket bound to a port but not listening: connections to it are refused
/// for as long as the socket is held, and no other process can take the port meanwhile.
fn refusing_socket() -> tokio::net::TcpSocket {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind port 0");
    socket
}

#[test]
fn every_documented_exit_status_is_the_one_the_binary_returns() {
    let documented = documented_statuses();
    assert_eq!(
        documented.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 64],
        "{documented:?}"
    );
    let (_runtime, health) = start_health_server();
    let health = format!("http://{health}");
    let closed = refusing_socket();
    let refusing = format!("http://{}", closed.local_addr().expect("address"));
    let noop = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--scenario",
            "noop",
            "--requests",
            "20",
            "--timeout",
            "5s",
        ];
        args.extend_from_slice(extra);
        loadtest(&args)
    };
    let cases: [(i32, Output); 5] = [
        (0, noop(&["--target", &health])),
        (1, noop(&["--target", &refusing])),
        (
            2,
            // No gRPC call answers within a picosecond.
            noop(&["--target", &health, "--p99-max-ms", "0.000000001"]),
        ),
        (64, loadtest(&["run", "--scenario", "no-such-scenario"])),
        (
            64,
            loadtest(&["run", "--scenario", "upload", "--target", &health]),
        ),
    ];
    for (code, output) in cases {
        assert_eq!(
            output.status.code(),
            Some(code),
            "expected {code} ({}); stderr: {}",
            documented[&code],
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
