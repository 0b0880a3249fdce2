//! What the console tests need besides the server: a cookie-keeping HTTP/1.1 client (hyper's,
//! a second implementation of the protocol beside the server's), readers of the values a page
//! shows, and the test's own RFC 6238 TOTP (HMAC-SHA1 over the time step, RFC 4226's dynamic
//! truncation) with its own RFC 4648 base32 decoder, so the server's TOTP code is never what
//! checks itself; and what both console test files do beside the pages: `exposure-server user
//! add` on the running server, the harness's authority, and a phone's upload with a code.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bytes::Bytes;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use exposure_proto::v1::{DiagnosisKey, UploadDiagnosisKeysResponse};
use exposure_server::admin::user::{Role, UserCommand};
use exposure_server::admin::{AdminError, DataDir};
use exposure_server::storage::Store;
use hmac::{Hmac, Mac};
use http::{Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic::transport::Channel;

use crate::fixtures::{self, gaen, key16};
use crate::{TEST_NOW, TestServer};

pub use crate::http_client::Answer;

/// A browser as far as the console cares: it keeps the cookies the server sets and sends
/// them back, posts forms, and never follows redirects (tests look at them).
pub struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    cookies: BTreeMap<String, String>,
    /// Sent as `Accept-Language` when set.
    pub accept_language: Option<String>,
}

impl Browser {
    /// A browser for the console at `base` (`http://host:port`).
    pub fn new(base: &str) -> Self {
        Self::with_connector(base, HttpConnector::new())
    }

    /// A browser whose connections leave from `local` (another loopback address: another
    /// client network).
    pub fn from_address(base: &str, local: IpAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(Some(local));
        Self::with_connector(base, connector)
    }

    fn with_connector(base: &str, connector: HttpConnector) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_owned(),
            cookies: BTreeMap::new(),
            accept_language: None,
        }
    }

    /// Returns the value of a cookie the browser holds.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    /// Sets a cookie by hand (a stolen or replayed one).
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// GETs `path` (with its query).
    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// POSTs `fields` as a form to `path`.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(Method::POST, path, Some(body)).await
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<String>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let cookies = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header("cookie", cookies);
        }
        if let Some(language) = &self.accept_language {
            request = request.header("accept-language", language);
        }
        let body = match body {
            Some(form) => {
                request = request.header("content-type", "application/x-www-form-urlencoded");
                Full::new(Bytes::from(form))
            }
            None => Full::new(Bytes::new()),
        };
        let response = self
            .client
            .request(request.body(body).expect("request"))
            .await
            .expect("console request");
        let (parts, body) = response.into_parts();
        for value in parts.headers.get_all("set-cookie") {
            let text = value.to_str().expect("ascii set-cookie");
            let first = text.split(';').next().unwrap_or_default();
            let (name, value) = first.split_once('=').expect("cookie name=value");
            let removed = text
                .split(';')
                .any(|attribute| attribute.trim().eq_ignore_ascii_case("max-age=0"));
            if removed {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let body = body.collect().await.expect("console body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }
}

/// Returns the `value` of the form field `name` on a page; panics when there is none.
pub fn field_value(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} on the page: {page}"));
    let rest = &page[at..];
    let start = rest.find("value=\"").expect("field has a value") + "value=\"".len();
    let end = rest[start..].find('"').expect("value ends");
    rest[start..start + end].to_owned()
}

/// Returns the text of the first element with `class` on a page (`<p class="code">…</p>`),
/// or `None`.
pub fn text_of_class(page: &str, class: &str) -> Option<String> {
    let marker = format!("class=\"{class}\"");
    let at = page.find(&marker)?;
    let start = at + page[at..].find('>')? + 1;
    let end = start + page[start..].find('<')?;
    Some(page[start..end].to_owned())
}

/// Decodes RFC 4648 base32 (upper case, spaces and padding ignored).
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits: u64 = 0;
    let mut held = 0;
    let mut out = Vec::new();
    for byte in text
        .bytes()
        .filter(|byte| !byte.is_ascii_whitespace() && *byte != b'=')
    {
        let value = ALPHABET
            .iter()
            .position(|letter| *letter == byte.to_ascii_uppercase())
            .unwrap_or_else(|| panic!("{:?} is not base32", char::from(byte)));
        bits = (bits << 5) | value as u64;
        held += 5;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}

/// Returns the RFC 6238 TOTP of `secret` at Unix time `time` (30-second steps, HMAC-SHA1),
/// `digits` long, zero-padded.
pub fn totp(secret: &[u8], time: u64, digits: u32) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("any key length");
    mac.update(&(time / 30).to_be_bytes());
    let digest = mac.finalize().into_bytes();
    // RFC 4226 section 5.3: dynamic truncation.
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    let code = binary % 10_u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

/// Returns the id of the harness's authority (read beside the running server).
pub fn authority_id(server: &TestServer) -> String {
    let store = Store::open_read_only(server.data_dir()).expect("read-only store");
    let authorities = store.list_authorities().expect("authorities");
    assert_eq!(authorities.len(), 1, "the harness made one authority");
    authorities[0].id.clone()
}

/// Runs `exposure-server user add` on the running server's data directory; returns its report,
/// whose last line is the enrolment link.
pub async fn user_add(
    server: &TestServer,
    authority: String,
    email: &str,
    roles: Vec<Role>,
) -> Result<String, AdminError> {
    // The console answers once the server has opened its store: from then on the command
    // goes through the running server's inbox.
    let answer = Browser::new(&server.console_url).get("/login").await;
    assert_eq!(answer.status, 200);
    let command = UserCommand::Add {
        data: DataDir {
            data_dir: server.data_dir().to_owned(),
        },
        authority,
        email: email.to_owned(),
        roles,
        console_url: server.console_url.clone(),
    };
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        exposure_server::admin::user(command, &mut out)
            .map(|()| String::from_utf8(out).expect("utf-8 report"))
    })
    .await
    .expect("user add task")
}

/// Runs `exposure-server user add` for `authority` on the running server (which applies it)
/// and returns the one-time enrolment link it prints on its last line.
pub async fn enrolment_link(
    server: &TestServer,
    authority: String,
    email: &str,
    roles: Vec<Role>,
) -> String {
    let report = user_add(server, authority, email, roles)
        .await
        .expect("user add");
    assert!(
        report.contains("the running server has applied the change"),
        "{report}"
    );
    let link = report.lines().last().expect("the link is the last line");
    assert!(
        link.starts_with(&format!("{}/enrol?token=", server.console_url)),
        "{report}"
    );
    link.to_owned()
}

/// A GAEN key of the whole UTC day before [`TEST_NOW`], made of `byte`.
pub fn yesterday_key(byte: u8) -> DiagnosisKey {
    const DAY: u64 = 86_400;
    gaen(key16(byte), ((TEST_NOW / DAY - 1) * 144) as u32, 144)
}

/// Uploads `keys` with the upload `code` over the real gRPC API, as a patient's phone does
/// (upload id `id`; no region: the code's).
pub async fn upload_with_code(
    client: &mut KeyUploadClient<Channel>,
    id: &str,
    keys: Vec<DiagnosisKey>,
    code: &str,
) -> Result<UploadDiagnosisKeysResponse, tonic::Status> {
    let mut upload = fixtures::upload(id, keys);
    upload.region = String::new();
    client
        .upload_diagnosis_keys(fixtures::with_code(upload, code))
        .await
        .map(tonic::Response::into_inner)
}

/// Adds the authority `name` for `region` with `exposure-server authority add` on the running
/// server's data directory; returns its id and its upload token.
pub async fn another_authority(server: &TestServer, name: &str, region: &str) -> (String, String) {
    let data_dir = server.data_dir().to_owned();
    let (name, region) = (name.to_owned(), region.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        exposure_server::admin::authority(
            exposure_server::admin::AuthorityCommand::Add {
                data: DataDir {
                    data_dir: data_dir.clone(),
                },
                name: name.clone(),
                regions: vec![region],
                admin: false,
                uploads_per_minute: None,
                keys_per_day: None,
            },
            &mut out,
        )
        .expect("authority add");
        let report = String::from_utf8(out).expect("utf-8 report");
        let token = report.lines().last().expect("token line").to_owned();
        let store = Store::open_read_only(&data_dir).expect("read-only store");
        let id = store
            .list_authorities()
            .expect("authorities")
            .into_iter()
            .find(|authority| authority.name == name)
            .expect("the new authority")
            .id;
        (id, token)
    })
    .await
    .expect("authority add task")
}

/// Backs up the running server with `exposure-server backup` (sealed with a new backup key,
/// so that it holds the signing keys a restored server starts with), restores it with
/// `exposure-server restore` into a new folder, checks that the restore ended the backup's
/// `sessions` console sessions, stops the server and starts one on the restored folder, with
/// the same clock. Returns the restored server and its folder.
pub async fn backup_and_restore(
    server: TestServer,
    sessions: usize,
) -> (TestServer, tempfile::TempDir) {
    use exposure_server::admin::backup::{BackupCommand, RestoreCommand};
    let root = tempfile::tempdir().expect("backup root");
    let key_file = root.path().join("backup.key");
    std::fs::write(&key_file, rand::random::<[u8; 32]>()).expect("backup key");
    let backup = BackupCommand {
        data: DataDir {
            data_dir: server.data_dir().to_owned(),
        },
        to: Some(root.path().join("backups")),
        verify: None,
        keep: None,
        without_signing_keys: false,
        backup_key_file: Some(key_file.clone()),
        upload_to: None,
        upload_options: Vec::new(),
    };
    let restored = tempfile::tempdir().expect("restore target");
    let restore = RestoreCommand {
        from: root.path().join("backups"),
        data_dir: restored.path().to_owned(),
        sequence_gap: 0,
        backup_key_file: Some(key_file),
        ..RestoreCommand::default()
    };
    let report = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        exposure_server::admin::backup::backup(backup, &mut out)
            .expect("backup of the running server");
        exposure_server::admin::backup::restore(restore, &mut out).expect("restore");
        String::from_utf8(out).expect("utf-8 report")
    })
    .await
    .expect("backup task");
    assert!(
        report.contains(&format!("console: {sessions} sessions of the backup ended")),
        "{report}"
    );
    let clock = server.clock.clone();
    server.stop().await;
    let config = crate::test_config(restored.path());
    let restored_server = TestServer::restart(&restored, String::new(), clock, config).await;
    (restored_server, restored)
}

/// Returns every exported key's `days_since_onset_of_symptoms` (`None` when absent), by key
/// data in hex, as the independent Python decoder reads the region's GAEN zips; waits (at
/// most 20 s) until `count` keys are exported. `None` when the decoder is missing (skipped
/// loudly, or failed under CI, by the decoder).
pub async fn exported_onsets(
    server: &TestServer,
    count: usize,
) -> Option<BTreeMap<String, Option<i64>>> {
    use crate::gaen_python::PythonDecoder;
    use crate::http_client::HttpClient;
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    let decoder = PythonDecoder::find(&protoc)?;
    let dir = tempfile::tempdir().expect("temporary dir");
    let key_path = dir.path().join("signing-key.der");
    let (_, public_key) =
        fixtures::current_signing_key(&mut server.distribution_client().await).await;
    std::fs::write(&key_path, public_key).expect("write key");
    let http = HttpClient::new(&server.http_url);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut onsets = BTreeMap::new();
    let mut decoded_paths = std::collections::BTreeSet::new();
    while onsets.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {onsets:?} exported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let index = http
            .get(&format!("/v1/regions/{}/gaen/index.txt", crate::REGION))
            .await;
        if index.status != 200 {
            continue;
        }
        for path in index.text().lines() {
            if !decoded_paths.insert(path.to_owned()) {
                continue;
            }
            let zip = http.get(&format!("/{path}")).await;
            assert_eq!(zip.status, 200, "{path}");
            let zip_path = dir.path().join(format!("{}.zip", decoded_paths.len()));
            std::fs::write(&zip_path, &zip.body).expect("write zip");
            let decoded = decoder.decode(&zip_path, &[&key_path]);
            if decoded["signature_checks"] != "skipped" {
                assert_eq!(decoded["signature_checks"], serde_json::json!([0]));
            }
            let keys = decoded["export"]["keys"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let hex_keys = decoded["keys_hex"].as_array().expect("keys_hex").clone();
            assert_eq!(keys.len(), hex_keys.len());
            for (key, hex_key) in keys.iter().zip(hex_keys) {
                onsets.insert(
                    hex_key.as_str().expect("hex").to_owned(),
                    key.get("days_since_onset_of_symptoms")
                        .map(|days| days.as_i64().expect("an integer")),
                );
            }
        }
    }
    Some(onsets)
}
