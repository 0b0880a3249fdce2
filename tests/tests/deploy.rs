//! The deployment files run as written. Each test reads files of `deploy/` at run time, starts
//! the real `exposure-server` binary with exactly the environment and arguments a file gives the
//! container, and runs what the files declare against it:
//! - `deploy/k8s/`: the pod's readiness and liveness probes, the Ingress's hop to its backend
//!   port in the Ingress's `backend-protocol`, and the scrape the pod's `prometheus.io/*`
//!   annotations ask for;
//! - `deploy/Dockerfile` with `deploy/docker-compose.yml`: every port the image exposes answers
//!   the protocol of the listener declared on it, every port compose publishes is one of them,
//!   and Prometheus's scrape of `deploy/prometheus.yml` answers; the image's environment alone
//!   is refused, as its comment says;
//! - `deploy/nginx-cache.conf` in Debian's nginx in front of the compose server's HTTP listener:
//!   a batch comes from the cache on the second request, and the region index is revalidated
//!   with a 304 once its minute is over (this test waits that minute).
//!
//! What the tests change in a file's environment, and nothing else (the remapping rule):
//! - a listener address (`EXPOSURE_*_ADDR`, e.g. `0.0.0.0:8080`) becomes `127.0.0.1:0`: the
//!   server picks a free loopback port and logs it, and a check of the declared port (8080) goes
//!   to the port the listener declared on it bound;
//! - an absolute path (`/data`, `/tls/tls.crt`) moves under a temporary root (`ROOT/data`), where
//!   the test makes what the deployment mounts: the certificate and key named by
//!   `EXPOSURE_TLS_CERT`/`EXPOSURE_TLS_KEY`, issued for `localhost` by a test CA;
//! - the object-storage target (`EXPOSURE_PUBLISH_TO`) becomes `file://ROOT/bucket`, so no test
//!   writes to a real bucket (the `AWS_*` variables then go unused), and the secrets a pod takes
//!   with `envFrom` (the bucket's keys) are absent.
//!
//! Probes are tried every 100 ms, not every `periodSeconds`, each attempt within the probe's
//! `timeoutSeconds` (1 s unless declared), for 30 s at most. An HTTPS check verifies the
//! certificate against the test CA, which is stricter than the kubelet (it verifies nothing).
//! A probe kind the runner does not know fails the test rather than being skipped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{ListBatchesResponse, RegionIndex};
use exposure_tests::binary::{self, ServerProcess};
use exposure_tests::fixtures::{gaen, key16, upload};
use exposure_tests::http_client::HttpClient;
use exposure_tests::pki::{TestCa, handshake, tls_channel};
use exposure_tests::scrape::Scrape;
use exposure_tests::{REGION, add_authority};
use prost::Message as _;
use serde::Deserialize as _;
use serde_norway::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The folder of the deployment files.
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// How long a probe may keep failing before the test fails.
const PROBE_DEADLINE: Duration = Duration::from_secs(30);

fn read_deploy(name: &str) -> String {
    let path = Path::new(DEPLOY).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Returns every YAML document of a deployment file.
fn yaml_documents(name: &str) -> Vec<Value> {
    let text = read_deploy(name);
    serde_norway::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

/// Returns the document of `kind` named `name`.
fn resource<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|document| document["kind"] == kind && document["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Returns a scalar as text (YAML numbers and booleans are environment values too).
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| items.iter().map(text).collect())
        .unwrap_or_default()
}

/// What a file says to check on a running container.
#[derive(Clone, Debug)]
enum Probe {
    /// kubelet's `httpGet` (also a scrape, or a proxy's hop): a status from 200 to 399 passes.
    HttpGet {
        https: bool,
        path: String,
        port: u16,
        timeout: Duration,
    },
    /// kubelet's `tcpSocket`: an accepted connection passes.
    TcpSocket { port: u16, timeout: Duration },
    /// `grpc.health.v1.Health/Check` of the whole server over TLS: SERVING passes.
    GrpcHealth { port: u16, timeout: Duration },
}

impl Probe {
    fn port(&self) -> u16 {
        match self {
            Probe::HttpGet { port, .. }
            | Probe::TcpSocket { port, .. }
            | Probe::GrpcHealth { port, .. } => *port,
        }
    }

    fn timeout(&self) -> Duration {
        match self {
            Probe::HttpGet { timeout, .. }
            | Probe::TcpSocket { timeout, .. }
            | Probe::GrpcHealth { timeout, .. } => *timeout,
        }
    }
}

/// A container as the deployment files declare it.
struct Container {
    /// Its environment in order; a later value of a name wins, as in Docker and Kubernetes.
    env: Vec<(String, String)>,
    /// The arguments after the binary.
    args: Vec<String>,
    /// What the files say to check, each under the name the files give it.
    checks: Vec<(String, Probe)>,
}

/// The pod of `deploy/k8s/exposure-server.yaml`, with its probes, the scrape its annotations
/// ask for and the hop of the Ingress of `deploy/k8s/ingress.yaml` to its backend.
fn kubernetes() -> Container {
    let documents = yaml_documents("k8s/exposure-server.yaml");
    let pod = &resource(&documents, "StatefulSet", "exposure-server")["spec"]["template"];
    let spec = &pod["spec"]["containers"][0];
    let ports: Vec<(String, u16)> = spec["ports"]
        .as_sequence()
        .expect("containerPorts")
        .iter()
        .map(|port| (text(&port["name"]), port_number(&port["containerPort"])))
        .collect();
    let port_of = |value: &Value| -> u16 {
        match value {
            Value::String(name) => {
                ports
                    .iter()
                    .find(|(port_name, _)| port_name == name)
                    .unwrap_or_else(|| panic!("no containerPort named {name}"))
                    .1
            }
            number => port_number(number),
        }
    };
    let env: Vec<(String, String)> = spec["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|variable| {
            assert!(
                variable.get("valueFrom").is_none(),
                "teach this test valueFrom: {variable:?}"
            );
            (text(&variable["name"]), text(&variable["value"]))
        })
        .collect();
    let container_ports: Vec<u16> = ports.iter().map(|(_, port)| *port).collect();
    assert_reachable(&env, &container_ports, "the containerPorts");
    let mut checks = Vec::new();
    for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
        if let Some(probe) = spec.get(kind) {
            checks.push((kind.to_owned(), kubelet_probe(probe, &port_of)));
        }
    }
    let readiness_path = match checks.iter().find(|(kind, _)| kind == "readinessProbe") {
        Some((_, Probe::HttpGet { path, .. })) => path.clone(),
        other => panic!("the pod's readiness probe is an httpGet: {other:?}"),
    };

    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    checks.push((
        "prometheus.io/scrape".to_owned(),
        Probe::HttpGet {
            https: scheme_is_https(&text(&annotations["prometheus.io/scheme"])),
            path: annotations
                .get("prometheus.io/path")
                .map_or_else(|| "/metrics".to_owned(), text),
            port: text(&annotations["prometheus.io/port"])
                .parse()
                .expect("prometheus.io/port"),
            timeout: Duration::from_secs(10),
        },
    ));

    // The Ingress's hop: its backend Service port, through the Service's targetPort, to a
    // container port, in the protocol the backend-protocol annotation names; the path asked is
    // the readiness probe's, which must lie under the Ingress's path.
    let ingress_documents = yaml_documents("k8s/ingress.yaml");
    let ingress = resource(&ingress_documents, "Ingress", "exposure-http");
    let protocol =
        text(&ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"]);
    let route = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    let prefix = text(&route["path"]);
    assert!(
        readiness_path.starts_with(&prefix),
        "{readiness_path} is served under the Ingress's {prefix}"
    );
    let backend = &route["backend"]["service"];
    let service = resource(&documents, "Service", &text(&backend["name"]));
    let service_port = service["spec"]["ports"]
        .as_sequence()
        .expect("Service ports")
        .iter()
        .find(|port| port["name"] == backend["port"]["name"])
        .expect("the Ingress's backend port is a port of the Service");
    checks.push((
        format!("Ingress backend-protocol {protocol}"),
        Probe::HttpGet {
            https: scheme_is_https(&protocol),
            path: readiness_path,
            port: port_of(&service_port["targetPort"]),
            timeout: Duration::from_secs(10),
        },
    ));

    Container {
        env,
        args: strings(&spec["args"]),
        checks,
    }
}

fn port_number(value: &Value) -> u16 {
    value
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or_else(|| panic!("not a port: {value:?}"))
}

fn scheme_is_https(scheme: &str) -> bool {
    match scheme.to_ascii_uppercase().as_str() {
        "HTTP" => false,
        "HTTPS" => true,
        other => panic!("teach this test the scheme {other}"),
    }
}

/// Reads a kubelet probe (`httpGet` or `tcpSocket`).
fn kubelet_probe(spec: &Value, port_of: &impl Fn(&Value) -> u16) -> Probe {
    let timeout = Duration::from_secs(spec["timeoutSeconds"].as_u64().unwrap_or(1));
    if let Some(get) = spec.get("httpGet") {
        assert!(
            get.get("httpHeaders").is_none(),
            "teach this test httpHeaders"
        );
        Probe::HttpGet {
            https: scheme_is_https(
                get.get("scheme")
                    .map_or("HTTP", |s| s.as_str().expect("scheme")),
            ),
            path: get.get("path").map_or_else(|| "/".to_owned(), text),
            port: port_of(&get["port"]),
            timeout,
        }
    } else if let Some(tcp) = spec.get("tcpSocket") {
        Probe::TcpSocket {
            port: port_of(&tcp["port"]),
            timeout,
        }
    } else {
        panic!("teach this test the probe {spec:?}")
    }
}

/// The final stage of `deploy/Dockerfile`: its `ENV` (the `KEY=VALUE` form), `EXPOSE`d ports
/// and `ENTRYPOINT`/`CMD` (exec form), continuation lines joined.
struct Image {
    env: Vec<(String, String)>,
    exposed: Vec<u16>,
    args: Vec<String>,
}

fn image() -> Image {
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut current = String::new();
    for line in read_deploy("Dockerfile").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        if keyword.eq_ignore_ascii_case("FROM") {
            instructions.clear();
        } else {
            instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
        }
        current.clear();
    }
    let mut image = Image {
        env: Vec::new(),
        exposed: Vec::new(),
        args: Vec::new(),
    };
    let mut entrypoint = Vec::new();
    let mut cmd = Vec::new();
    for (keyword, rest) in instructions {
        let exec_form = || -> Vec<String> {
            serde_json::from_str(&rest).unwrap_or_else(|e| panic!("{keyword} {rest}: {e}"))
        };
        match keyword.as_str() {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (name, value) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV {rest}: use the KEY=VALUE form"));
                    image
                        .env
                        .push((name.to_owned(), value.trim_matches('"').to_owned()));
                }
            }
            "EXPOSE" => image.exposed.extend(rest.split_whitespace().map(|port| {
                port.trim_end_matches("/tcp")
                    .parse::<u16>()
                    .unwrap_or_else(|e| panic!("EXPOSE {port}: {e}"))
            })),
            "ENTRYPOINT" => entrypoint = exec_form(),
            "CMD" => cmd = exec_form(),
            _ => {}
        }
    }
    assert_eq!(
        entrypoint.first().map(String::as_str),
        Some("exposure-server"),
        "the image runs the server"
    );
    image.args = entrypoint.into_iter().skip(1).chain(cmd).collect();
    image
}

/// The `exposure-server` service of `deploy/docker-compose.yml` on the image of
/// `deploy/Dockerfile`: the image's environment overlaid with the service's. Each port the
/// image exposes is checked in the protocol of the listener declared on it, and Prometheus's
/// scrape of `deploy/prometheus.yml` (which compose mounts) too.
fn compose() -> Container {
    let image = image();
    let compose = serde_norway::from_str::<Value>(&read_deploy("docker-compose.yml"))
        .expect("docker-compose.yml");
    let service = &compose["services"]["exposure-server"];
    assert_eq!(service["build"]["dockerfile"], "deploy/Dockerfile");
    assert!(
        service.get("healthcheck").is_none(),
        "teach this test healthcheck"
    );
    let mut env = image.env.clone();
    env.extend(
        service["environment"]
            .as_mapping()
            .expect("environment as a mapping")
            .iter()
            .map(|(name, value)| (text(name), text(value))),
    );
    let args = match service.get("command") {
        Some(command) => strings(command),
        None => image.args.clone(),
    };
    let listeners = declared_listeners(&env);
    let tls = env.iter().any(|(name, _)| name == "EXPOSURE_TLS_CERT");
    let timeout = Duration::from_secs(5);
    let mut checks = Vec::new();
    for port in &image.exposed {
        let listener = listeners
            .get(port)
            .unwrap_or_else(|| panic!("EXPOSE {port}: no listener is declared on it"));
        let probe = match listener.as_str() {
            "grpc" => Probe::GrpcHealth {
                port: *port,
                timeout,
            },
            "http" => Probe::HttpGet {
                https: tls,
                path: "/v1/signing-keys".to_owned(),
                port: *port,
                timeout,
            },
            "metrics" => Probe::HttpGet {
                https: tls,
                path: "/metrics".to_owned(),
                port: *port,
                timeout,
            },
            // The staff console's sign-in page (DESIGN.md section 13).
            "console" => Probe::HttpGet {
                https: tls,
                path: "/login".to_owned(),
                port: *port,
                timeout,
            },
            other => panic!("teach this test the {other} listener"),
        };
        checks.push((format!("EXPOSE {port} ({listener})"), probe));
    }
    assert_reachable(&env, &image.exposed, "the image's EXPOSE");
    for published in strings(&service["ports"]) {
        let port: u16 = published
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("ports: {published}"));
        assert!(
            image.exposed.contains(&port),
            "compose publishes {published}, which the image does not expose"
        );
    }

    let prometheus =
        serde_norway::from_str::<Value>(&read_deploy("prometheus.yml")).expect("prometheus.yml");
    let job = &prometheus["scrape_configs"][0];
    let target = text(&job["static_configs"][0]["targets"][0]);
    let (host, port) = target.rsplit_once(':').expect("host:port target");
    assert_eq!(
        host, "exposure-server",
        "Prometheus scrapes the compose service"
    );
    assert_eq!(
        job["tls_config"]["server_name"], "localhost",
        "the name the test CA's certificate holds"
    );
    checks.push((
        format!("prometheus.yml target {target}"),
        Probe::HttpGet {
            https: scheme_is_https(&job.get("scheme").map_or_else(|| "http".to_owned(), text)),
            path: job
                .get("metrics_path")
                .map_or_else(|| "/metrics".to_owned(), text),
            port: port.parse().expect("target port"),
            timeout,
        },
    ));
    Container { env, args, checks }
}

/// The server's listeners; it has no others.
const LISTENERS: [&str; 4] = ["grpc", "http", "console", "metrics"];

/// Checks that every listener of a container is reachable from outside it: declared in `env`
/// on an address that is not loopback (the server's defaults are loopback, which in a container
/// serves nobody) with a port among `ports`.
fn assert_reachable(env: &[(String, String)], ports: &[u16], what: &str) {
    let last: BTreeMap<&str, &str> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    for listener in LISTENERS {
        let name = format!("EXPOSURE_{}_ADDR", listener.to_ascii_uppercase());
        let value = last.get(name.as_str()).unwrap_or_else(|| {
            panic!("{name} is not set: the {listener} listener stays on loopback")
        });
        let addr: SocketAddr = value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value}: {e}"));
        assert!(
            !addr.ip().is_loopback(),
            "{name}={value}: nothing outside the container reaches it"
        );
        assert!(
            ports.contains(&addr.port()),
            "{name}={value}: port {} is not in {what} {ports:?}",
            addr.port()
        );
    }
}

/// Returns the listener (`grpc`, `http`, `console`, `metrics`) declared on each port by the
/// `EXPOSURE_*_ADDR` variables of `env` (the last value of a name wins).
fn declared_listeners(env: &[(String, String)]) -> BTreeMap<u16, String> {
    let last: BTreeMap<&str, &str> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    last.into_iter()
        .filter_map(|(name, value)| {
            let listener = name.strip_prefix("EXPOSURE_")?.strip_suffix("_ADDR")?;
            let addr: SocketAddr = value.parse().ok()?;
            Some((addr.port(), listener.to_ascii_lowercase()))
        })
        .collect()
}

/// Applies the remapping rule of this file's header to `env` under `root`.
fn remap(env: &[(String, String)], root: &Path) -> BTreeMap<String, String> {
    let last: BTreeMap<&str, &str> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    last.into_iter()
        .map(|(name, value)| {
            let listener = name.starts_with("EXPOSURE_") && name.ends_with("_ADDR");
            let value = if listener && value.parse::<SocketAddr>().is_ok() {
                "127.0.0.1:0".to_owned()
            } else if name == "EXPOSURE_PUBLISH_TO" {
                format!("file://{}", root.join("bucket").display())
            } else if let Some(relative) = value.strip_prefix('/') {
                root.join(relative).display().to_string()
            } else {
                value.to_owned()
            };
            (name.to_owned(), value)
        })
        .collect()
}

/// A server started from a container's declaration.
struct Running {
    server: ServerProcess,
    ca: TestCa,
    /// The declared port of each listener and the loopback address it bound.
    ports: BTreeMap<u16, SocketAddr>,
    /// An upload token for [`REGION`], when asked for.
    token: Option<String>,
    /// The bearer token of `EXPOSURE_METRICS_TOKEN_FILE`, when the deployment mounts one.
    metrics_token: Option<String>,
    _root: tempfile::TempDir,
}

/// Starts the server binary with `container`'s environment remapped, its arguments and then
/// `extra`; with an authority for [`REGION`] created first when `authority` is set.
fn launch(container: &Container, extra: &[&str], authority: bool) -> Running {
    let root = tempfile::tempdir().expect("tempdir");
    let env = remap(&container.env, root.path());
    let ca = TestCa::new("deploy test CA");
    let issued = ca.issue_server();
    for (name, pem) in [
        ("EXPOSURE_TLS_CERT", &issued.cert_pem),
        ("EXPOSURE_TLS_KEY", &issued.key_pem),
    ] {
        if let Some(path) = env.get(name) {
            let path = PathBuf::from(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mount folder");
            std::fs::write(&path, pem).expect("write TLS file");
        }
    }
    // The scrape credential the deployment mounts (`--metrics-token-file`), which the test's
    // scrapes send as Prometheus does with `authorization: credentials_file`.
    let metrics_token = env.get("EXPOSURE_METRICS_TOKEN_FILE").map(|path| {
        let path = PathBuf::from(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mount folder");
        let token = "deploy-test-scrape-token".to_owned();
        std::fs::write(&path, format!("{token}\n")).expect("write metrics token");
        token
    });
    let token = authority.then(|| {
        let data_dir = PathBuf::from(env.get("EXPOSURE_DATA_DIR").expect("a data dir"));
        add_authority(&data_dir, &[REGION])
    });
    let mut command = Command::new(binary::path("exposure-server", "exposure-server"));
    command
        .env_clear()
        .envs(&env)
        .args(&container.args)
        .args(extra)
        .stdin(Stdio::null());
    let server = ServerProcess::spawn(command);
    let ports = declared_listeners(&container.env)
        .into_iter()
        .map(|(port, listener)| (port, server.listener(&listener)))
        .collect();
    Running {
        server,
        ca,
        ports,
        token,
        metrics_token,
        _root: root,
    }
}

impl Running {
    fn addr(&self, declared_port: u16) -> Result<SocketAddr, String> {
        self.ports
            .get(&declared_port)
            .copied()
            .ok_or_else(|| format!("no listener is declared on port {declared_port}"))
    }

    /// Runs `probe` once.
    async fn probe(&self, probe: &Probe) -> Result<(), String> {
        let addr = self.addr(probe.port())?;
        let attempt = async {
            match probe {
                Probe::HttpGet { https, path, .. } => {
                    let (status, _) = self.get(addr, *https, path).await?;
                    if (200..400).contains(&status) {
                        Ok(())
                    } else {
                        Err(format!("status {status}"))
                    }
                }
                Probe::TcpSocket { .. } => tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string()),
                Probe::GrpcHealth { .. } => {
                    let channel = tls_channel(addr, &self.ca.pem(), None)
                        .await
                        .map_err(|error| error.to_string())?;
                    let status = tonic_health::pb::health_client::HealthClient::new(channel)
                        .check(tonic_health::pb::HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .map_err(|status| status.to_string())?
                        .into_inner()
                        .status;
                    if status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                    {
                        Ok(())
                    } else {
                        Err(format!("health status {status}"))
                    }
                }
            }
        };
        tokio::time::timeout(probe.timeout(), attempt)
            .await
            .map_err(|_| format!("no answer within {:?}", probe.timeout()))?
    }

    /// Tries `probe` every 100 ms until it passes; panics with the last failure after 30 s.
    async fn until_passes(&self, name: &str, probe: &Probe) {
        let deadline = Instant::now() + PROBE_DEADLINE;
        loop {
            match self.probe(probe).await {
                Ok(()) => return,
                Err(error) if Instant::now() > deadline => panic!(
                    "{name} ({probe:?}) still fails: {error}\nserver log:\n{}",
                    self.server.log()
                ),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// GETs `path` over one HTTP/1.1 connection (TLS verified against the test CA when
    /// `https`); returns the status and the body.
    async fn get(
        &self,
        addr: SocketAddr,
        https: bool,
        path: &str,
    ) -> Result<(u16, Vec<u8>), String> {
        let failed = |error: std::io::Error| error.to_string();
        // Only the scraper holds the metrics credential; phones and probes send none.
        let bearer = if path == "/metrics" {
            self.metrics_token.as_deref()
        } else {
            None
        };
        if https {
            let (stream, _) = handshake(addr, &self.ca.pem(), b"http/1.1")
                .await
                .map_err(failed)?;
            exchange(stream, path, bearer).await
        } else {
            exchange(
                tokio::net::TcpStream::connect(addr).await.map_err(failed)?,
                path,
                bearer,
            )
            .await
        }
    }

    /// Returns the server's metrics, scraped from its declared metrics port.
    async fn scrape(&self, https: bool, port: u16) -> Scrape {
        let (status, body) = self
            .get(self.addr(port).expect("metrics port"), https, "/metrics")
            .await
            .expect("scrape");
        assert_eq!(status, 200);
        Scrape::parse(std::str::from_utf8(&body).expect("utf-8 metrics"))
    }
}

/// Sends a `Connection: close` GET of `path` on `stream` and reads the answer to its end.
async fn exchange(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    path: &str,
    bearer: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let authorization = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: deploy-test\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    // A peer that closes without TLS's close_notify ends the read with UnexpectedEof after the
    // whole answer: what was read is kept.
    if let Err(error) = stream.read_to_end(&mut answer).await
        && error.kind() != std::io::ErrorKind::UnexpectedEof
    {
        return Err(error.to_string());
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body_start = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(answer.len(), |at| at + 4);
    Ok((status, answer.split_off(body_start)))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kubernetes_pod_becomes_ready_and_live_as_declared() {
    let pod = kubernetes();
    let kinds: Vec<&str> = pod.checks.iter().map(|(name, _)| name.as_str()).collect();
    assert!(
        kinds.contains(&"readinessProbe") && kinds.contains(&"livenessProbe"),
        "{kinds:?}"
    );
    let running = launch(&pod, &[], false);
    for (name, probe) in &pod.checks {
        running.until_passes(name, probe).await;
    }
    // The opposite protocol fails on the same port, so the checks above tell the two apart.
    for (name, probe) in &pod.checks {
        if let Probe::HttpGet {
            https, path, port, ..
        } = probe
        {
            let addr = running.addr(*port).expect("declared");
            let other = running.get(addr, !https, path).await;
            assert!(
                !matches!(other, Ok((200..400, _))),
                "{name} also passes in the other scheme: {other:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_container_answers_on_every_exposed_port() {
    let container = compose();
    let running = launch(&container, &[], false);
    for (name, probe) in &container.checks {
        running.until_passes(name, probe).await;
    }
}

#[test]
fn the_image_alone_refuses_plaintext_on_all_interfaces() {
    // The Dockerfile's own environment with its addresses as declared (the refusal comes
    // before any listener is bound); only the data dir is remapped.
    let root = tempfile::tempdir().expect("tempdir");
    let image = image();
    let remapped = remap(&image.env, root.path());
    let env = image.env.iter().map(|(name, value)| match name.as_str() {
        "EXPOSURE_DATA_DIR" => (name, &remapped[name]),
        _ => (name, value),
    });
    let output = Command::new(binary::path("exposure-server", "exposure-server"))
        .env_clear()
        .envs(env)
        .args(&image.args)
        .stdin(Stdio::null())
        .output()
        .expect("run exposure-server");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("--grpc-addr") && stderr.contains("--insecure-plaintext"),
        "{stderr}"
    );
}

/// Returns Debian's nginx; without it, fails under `CI` and skips loudly elsewhere.
fn nginx_or_skip(test: &str) -> Option<PathBuf> {
    let installed = Path::new("/usr/sbin/nginx");
    if installed.exists() {
        return Some(installed.to_owned());
    }
    let why = "nginx is not installed at /usr/sbin/nginx (apt-get install nginx; .ci/run does)";
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    eprintln!("\n!!! SKIPPED {test}: {why} !!!\n");
    None
}

/// Debian's nginx with `deploy/nginx-cache.conf`, as the current user, everything it writes in
/// a temporary folder.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Nginx {
    /// Starts nginx with `deploy/nginx-cache.conf`, in which exactly the deployment's own
    /// values are replaced: the cache folder and the CA file move into a temporary folder, the
    /// upstream server becomes `origin`, and it listens on a free loopback port. The file goes
    /// into an `http` block as compose's nginx image includes `conf.d/default.conf`.
    fn start(binary: &Path, origin: SocketAddr, ca_pem: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).expect("CA file");
        let site = replace_arguments(
            &read_deploy("nginx-cache.conf"),
            &[
                (
                    "proxy_cache_path",
                    dir.path().join("cache").display().to_string(),
                ),
                ("server", origin.to_string()),
                ("proxy_ssl_trusted_certificate", ca.display().to_string()),
                ("listen", format!("127.0.0.1:{port}")),
            ],
        );
        std::fs::write(dir.path().join("site.conf"), site).expect("site.conf");
        let folder = dir.path().display();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {folder}/nginx.pid;\n\
             error_log {folder}/error.log info;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log {folder}/access.log;\n\
             client_body_temp_path {folder}/body;\n  proxy_temp_path {folder}/proxy;\n\
             fastcgi_temp_path {folder}/fastcgi;\n  uwsgi_temp_path {folder}/uwsgi;\n\
             scgi_temp_path {folder}/scgi;\n  include {folder}/site.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).expect("nginx.conf");
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = || std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            if let Ok(Some(status)) = child.try_wait() {
                panic!("nginx exited with {status}: {}", log());
            }
            assert!(Instant::now() < deadline, "nginx did not listen: {}", log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replaces the first argument of each directive in `conf`, each of which must occur exactly
/// once (a block opener such as `server {` is not the directive).
fn replace_arguments(conf: &str, replacements: &[(&str, String)]) -> String {
    let mut seen = vec![0; replacements.len()];
    let lines: Vec<String> = conf
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let mut words = line.trim_start().splitn(2, char::is_whitespace);
            let (directive, rest) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let Some(at) = replacements.iter().position(|(name, _)| *name == directive) else {
                return line.to_owned();
            };
            let argument_end = rest
                .find(|c: char| c.is_whitespace() || c == ';')
                .unwrap_or(rest.len());
            if rest.starts_with('{') || argument_end == 0 {
                return line.to_owned();
            }
            seen[at] += 1;
            format!(
                "{indent}{directive} {}{}",
                replacements[at].1,
                &rest[argument_end..]
            )
        })
        .collect();
    for ((name, _), count) in replacements.iter().zip(seen) {
        assert_eq!(count, 1, "nginx-cache.conf gives {name} {count} times");
    }
    lines.join("\n") + "\n"
}

/// A GAEN key valid yesterday, so it is accepted and (with no embargo) published at once.
fn yesterdays_key() -> exposure_proto::v1::DiagnosisKey {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    gaen(
        key16(0x42),
        u32::try_from((now / 86_400 - 1) * 144).expect("interval"),
        144,
    )
}

fn counter(scrape: &Scrape, route: &str, status: &str) -> f64 {
    scrape
        .value(
            "exposure_http_requests_total",
            &[("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_cache_conf_serves_batches_from_its_cache_and_revalidates_the_index() {
    let test = "nginx_cache_conf_serves_batches_from_its_cache_and_revalidates_the_index";
    let Some(nginx_binary) = nginx_or_skip(test) else {
        return;
    };
    // The compose server, with a publisher that runs at once instead of hourly.
    let container = compose();
    let running = launch(
        &container,
        &[
            "--publish-interval",
            "300ms",
            "--release-delay",
            "0s",
            "--pad-min-keys",
            "0",
        ],
        true,
    );
    let listeners = declared_listeners(&container.env);
    let port_of = |name: &str| {
        *listeners
            .iter()
            .find(|(_, listener)| listener.as_str() == name)
            .expect("declared listener")
            .0
    };
    let (grpc, http, metrics) = (port_of("grpc"), port_of("http"), port_of("metrics"));

    let channel = tls_channel(running.addr(grpc).expect("gRPC"), &running.ca.pem(), None)
        .await
        .expect("TLS channel");
    let mut request = tonic::Request::new(upload("deploy-nginx", vec![yesterdays_key()]));
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", running.token.as_deref().expect("token"))
            .parse()
            .expect("ascii"),
    );
    KeyUploadClient::new(channel)
        .upload_diagnosis_keys(request)
        .await
        .expect("upload");
    let index_path = format!("/v1/regions/{REGION}/index");
    let origin = running.addr(http).expect("HTTP listener");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(running.get(origin, true, &index_path).await, Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "no batch: {}",
            running.server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let nginx = Nginx::start(&nginx_binary, origin, &running.ca.pem());
    let cache = HttpClient::new(&nginx.url);
    let before = running.scrape(true, metrics).await;

    let first = cache.get(&index_path).await;
    let index_stored = Instant::now();
    assert_eq!(first.status, 200, "{}", nginx.error_log());
    assert_eq!(first.header("x-cache-status"), "MISS");
    let index = RegionIndex::decode(first.body.clone()).expect("RegionIndex");
    let day = *index.days.last().expect("a day with a batch");
    let listing = cache.get(&format!("/v1/regions/{REGION}/days/{day}")).await;
    assert_eq!(listing.status, 200);
    let batches = ListBatchesResponse::decode(listing.body).expect("ListBatchesResponse");
    let batch_path = format!("/v1/batches/{}", batches.batches[0].batch_id);
    let miss = cache.get(&batch_path).await;
    let hit = cache.get(&batch_path).await;
    assert_eq!(
        (miss.status.as_u16(), miss.header("x-cache-status")),
        (200, "MISS")
    );
    assert_eq!(
        (hit.status.as_u16(), hit.header("x-cache-status")),
        (200, "HIT")
    );
    assert!(!miss.body.is_empty());
    assert_eq!(hit.body, miss.body, "the cached batch is the origin's");
    assert_eq!(cache.get(&index_path).await.header("x-cache-status"), "HIT");
    let served = running.scrape(true, metrics).await;
    assert_eq!(
        counter(&served, "batch", "200") - counter(&before, "batch", "200"),
        1.0,
        "two batch requests, one origin fetch"
    );
    assert_eq!(
        counter(&served, "index", "200") - counter(&before, "index", "200"),
        1.0,
        "two index requests, one origin fetch"
    );

    // The index's max-age is 60 s: past it, nginx asks again with If-None-Match and the
    // origin's 304 refreshes the cached copy.
    let expired = index_stored + Duration::from_secs(62);
    tokio::time::sleep(expired.saturating_duration_since(Instant::now())).await;
    let again = cache.get(&index_path).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-cache-status"), "REVALIDATED");
    assert_eq!(again.body, first.body);
    let revalidated = running.scrape(true, metrics).await;
    assert_eq!(
        counter(&revalidated, "index", "304") - counter(&before, "index", "304"),
        1.0,
        "the origin answered nginx's conditional request with 304"
    );
    assert_eq!(
        counter(&revalidated, "index", "200"),
        counter(&served, "index", "200"),
        "and sent no new body"
    );
}
