//! Compares a bucket (a local folder or moto) with what the server's HTTP listener serves: the
//! same paths (batches and their indexes, GAEN zips and their index), the same bytes and, where
//! the store keeps them, the same Cache-Control and Content-Type (DESIGN.md sections 10, 11).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use exposure_proto::v1::{ListBatchesResponse, RegionIndex};
use http::StatusCode;
use prost::Message as _;

use crate::REGION;
use crate::http_client::HttpClient;
use crate::s3::Moto;

/// One object: body, Cache-Control and Content-Type (empty where the store keeps none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// The bytes.
    pub body: Vec<u8>,
    /// `Cache-Control`.
    pub cache_control: String,
    /// `Content-Type`.
    pub content_type: String,
}

/// The layout by path (relative to the root).
pub type Layout = BTreeMap<String, Object>;

/// Where a layout was published.
pub enum Target<'a> {
    /// A `file://` folder (no attributes).
    Folder(PathBuf),
    /// A bucket and prefix on moto.
    S3 {
        /// The server.
        moto: &'a Moto,
        /// Bucket name.
        bucket: String,
        /// Key prefix, no trailing `/`.
        prefix: String,
    },
}

/// Returns the layout the HTTP listener at `http_url` serves for [`REGION`].
pub async fn served(http_url: &str) -> Layout {
    let client = HttpClient::new(http_url);
    let mut layout = Layout::new();
    let mut get = async |path: String| -> Option<Vec<u8>> {
        let answer = client.get(&format!("/{path}")).await;
        if answer.status == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(answer.status, StatusCode::OK, "GET {path}");
        let object = Object {
            body: answer.body.to_vec(),
            cache_control: answer.header("cache-control").to_owned(),
            content_type: answer.header("content-type").to_owned(),
        };
        layout.insert(path, object);
        Some(answer.body.to_vec())
    };
    get("v1/signing-keys".into()).await;
    // GAEN exports (DESIGN section 11): the index and every zip it names.
    if let Some(text) = get(format!("v1/regions/{REGION}/gaen/index.txt")).await {
        for line in String::from_utf8(text).expect("index.txt is UTF-8").lines() {
            get(line.to_owned())
                .await
                .expect("a zip gaen/index.txt names is served");
        }
    }
    let Some(index) = get(format!("v1/regions/{REGION}/index")).await else {
        return layout;
    };
    let index = RegionIndex::decode(index.as_slice()).expect("region index");
    for day in index.days {
        let listing = get(format!("v1/regions/{REGION}/days/{day}"))
            .await
            .expect("a listed day has an index");
        let listing = ListBatchesResponse::decode(listing.as_slice()).expect("day index");
        for info in listing.batches {
            get(format!("v1/batches/{}", info.batch_id))
                .await
                .expect("a listed batch is served");
        }
    }
    layout
}

impl Target<'_> {
    /// Returns every object of the target.
    pub async fn layout(&self) -> Layout {
        let mut layout = Layout::new();
        match self {
            Target::Folder(root) => {
                let mut folders = vec![root.clone()];
                while let Some(folder) = folders.pop() {
                    let Ok(entries) = std::fs::read_dir(&folder) else {
                        continue;
                    };
                    for entry in entries {
                        let path = entry.expect("folder entry").path();
                        if path.is_dir() {
                            folders.push(path);
                        } else if let Ok(body) = std::fs::read(&path) {
                            let relative = path.strip_prefix(root).expect("under the root");
                            let object = Object {
                                body,
                                cache_control: String::new(),
                                content_type: String::new(),
                            };
                            layout.insert(relative.to_string_lossy().into_owned(), object);
                        }
                    }
                }
            }
            Target::S3 {
                moto,
                bucket,
                prefix,
            } => {
                for key in moto.keys(bucket, &format!("{prefix}/")).await {
                    let answer = moto.http().get(&format!("/{bucket}/{key}")).await;
                    if answer.status != StatusCode::OK {
                        continue; // deleted since the listing
                    }
                    let header = |name: &str| {
                        answer
                            .headers
                            .get(name)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let object = Object {
                        body: answer.body.to_vec(),
                        cache_control: header("cache-control"),
                        content_type: header("content-type"),
                    };
                    let relative = key.strip_prefix(&format!("{prefix}/")).unwrap_or(&key);
                    layout.insert(relative.to_owned(), object);
                }
            }
        }
        layout
    }

    /// Waits (30 s at most) until the target holds exactly the layout the listener serves
    /// (attributes compared where the target keeps them); returns that layout.
    pub async fn wait_until_matches(&self, http_url: &str) -> Layout {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let expected = served(http_url).await;
            let found = self.layout().await;
            if self.matches(&expected, &found) {
                return expected;
            }
            if tokio::time::Instant::now() > deadline {
                let expected_paths: Vec<&String> = expected.keys().collect();
                let found_paths: Vec<&String> = found.keys().collect();
                panic!(
                    "bucket never matched the listener: expected {expected_paths:?}, found {found_paths:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns whether `found` holds exactly `expected`.
    pub fn matches(&self, expected: &Layout, found: &Layout) -> bool {
        expected.len() == found.len()
            && expected.iter().all(|(path, object)| {
                found.get(path).is_some_and(|held| match self {
                    Target::Folder(_) => held.body == object.body,
                    Target::S3 { .. } => held == object,
                })
            })
    }
}
