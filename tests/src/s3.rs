//! A real S3-protocol server for the object-storage tests: moto (`python3 -m moto.server`,
//! installed with `pip install 'moto[server]'`) on a loopback port it picks, behind a loopback TCP
//! relay the tests can take down and bring back (an S3 endpoint outage without losing moto's
//! in-memory objects). Reads go through plain HTTP path-style URLs, independent of the
//! server's `object_store` client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::http_client::HttpClient;

/// Access key the server signs with (moto accepts any).
pub const ACCESS_KEY: &str = "exposure-test-access";
/// Secret key the server signs with.
pub const SECRET_KEY: &str = "exposure-test-secret";

/// A moto server process, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: HttpClient,
}

impl Moto {
    /// Starts moto on a port it picks, or returns `None` when python3 or moto is missing (after
    /// printing why; under CI it panics instead, see [`crate::outside`]).
    pub async fn start() -> Option<Self> {
        let python = std::env::var("EXPOSURE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let probe = Command::new(&python)
            .args(["-c", "import moto.server, flask, werkzeug"])
            .output();
        match probe {
            Ok(output) if output.status.success() => {}
            _ => {
                crate::outside::missing(
                    &format!("moto, an S3-protocol server ({python} with moto[server])"),
                    "install python3 (Debian: apt-get install python3 python3-pip), then \
                     `python3 -m pip install 'moto[server]'`; .ci/run does both",
                );
                return None;
            }
        }
        // Port 0: moto (werkzeug) binds a free port and names it on stderr, " * Running on
        // http://127.0.0.1:PORT"; a thread keeps reading stderr so moto's request log never
        // fills the pipe.
        let mut child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto");
        let stderr = child.stderr.take().expect("moto stderr");
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("Running on http://127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| rest.trim().parse::<u16>().ok())
                {
                    let _ = port_sender.send(port);
                }
            }
        });
        let port = tokio::task::spawn_blocking(move || {
            port_receiver.recv_timeout(Duration::from_secs(30))
        })
        .await
        .expect("port reader");
        let Ok(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("moto did not report its port within 30 s");
        };
        let url = format!("http://127.0.0.1:{port}");
        Some(Self {
            child,
            http: HttpClient::new(&url),
            url,
        })
    }

    /// Creates a bucket that anyone may read (a bucket policy, as in front of a CDN): the
    /// server writes with signed requests, phones and the tests read anonymously (and the
    /// tests may delete, to empty it; a real bucket would not allow that).
    pub async fn create_bucket(&self, bucket: &str) {
        let answer = self
            .http
            .send(Method::PUT, &format!("/{bucket}"), &[])
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "create bucket: {}",
            answer.text()
        );
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"PublicRead","Effect":"Allow","Principal":"*","Action":["s3:GetObject","s3:ListBucket","s3:DeleteObject"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
        );
        let status = put_body(&self.url, &format!("/{bucket}?policy"), &policy).await;
        assert!(status.starts_with("HTTP/1.1 2"), "bucket policy: {status}");
    }

    /// Returns every key under `prefix` in `bucket` (ListObjectsV2, all pages).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..1000 {
            let mut path = format!("/{bucket}?list-type=2&prefix={prefix}");
            if let Some(token) = &token {
                path.push_str(&format!("&continuation-token={}", url_encode(token)));
            }
            let answer = self.http.get(&path).await;
            assert_eq!(answer.status, StatusCode::OK, "list: {}", answer.text());
            let text = answer.text();
            keys.extend(tag_values(text, "Key"));
            token = tag_values(text, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// Deletes one object.
    pub async fn delete(&self, bucket: &str, key: &str) {
        let answer = self
            .http
            .send(Method::DELETE, &format!("/{bucket}/{key}"), &[])
            .await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT, "delete {key}");
    }

    /// Returns an HTTP client of moto's path-style URLs.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // The child was started by this test; it is ended by its own handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the texts of every `<tag>…</tag>` of an XML answer.
fn tag_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(value, _)| value.to_owned()))
        .collect()
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// PUTs a JSON body with a plain HTTP/1.1 request; returns the status line.
async fn put_body(base: &str, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.expect("connect to moto");
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("moto answers within 10 s")
        .expect("read");
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A loopback TCP relay to `target` that can be taken down (every connection cut, new ones
/// closed at once) and brought back.
pub struct Relay {
    /// `http://127.0.0.1:PORT` of the relay.
    pub url: String,
    up: Arc<watch::Sender<bool>>,
    /// Connections closed at once because the relay was down.
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts a relay to `target` (`http://host:port`), up.
    pub async fn start(target: &str) -> Self {
        let target: SocketAddr = target
            .trim_start_matches("http://")
            .parse()
            .expect("target address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let url = format!("http://{}", listener.local_addr().expect("relay address"));
        let (up, _) = watch::channel(true);
        let up = Arc::new(up);
        let state = up.clone();
        let refused = Arc::new(AtomicU64::new(0));
        let refusals = refused.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut down = state.subscribe();
                if !*down.borrow() {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    continue; // dropped: the client sees the connection closed
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self {
            url,
            up,
            refused,
            task,
        }
    }

    /// Returns how many connections the relay closed at once because it was down.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Cuts every connection and refuses new ones until [`Relay::bring_up`].
    pub fn take_down(&self) {
        self.up.send_replace(false);
    }

    /// Relays again.
    pub fn bring_up(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returns the `--publish-option`s that point the server at `endpoint` with the test keys.
pub fn publish_options(endpoint: &str) -> Vec<String> {
    vec![
        format!("aws_endpoint={endpoint}"),
        "aws_allow_http=true".into(),
        "aws_region=us-east-1".into(),
        format!("aws_access_key_id={ACCESS_KEY}"),
        format!("aws_secret_access_key={SECRET_KEY}"),
    ]
}
