//! Object-storage publishing (DESIGN.md section 10): the same layout the HTTP listener serves,
//! written to S3, GCS, Azure or a local folder through the `object_store` crate, so a CDN can
//! front the bucket while the key server stays private.
//!
//! [`Bucket`] is the target (`--publish-to`), [`sync::Syncer`] writes the layout in the order
//! section 10 requires, and [`drain`] empties the durable outbox (`storage::outbox`) into it.

pub mod drain;
pub mod sync;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt as _,
    ObjectStoreScheme, PutOptions, PutPayload, RetryConfig,
};

/// Errors of the object-storage target.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// `--publish-to` or a `--publish-option` is unusable (the binary exits with 64).
    #[error("--publish-to: {0}")]
    Config(String),
    /// The store refused or failed a request (retried by the caller).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A local file to upload could not be read.
    #[error("{path}: {source}")]
    LocalFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where the layout is written: a store and the prefix of the layout's root in it.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// False for a local folder, which keeps no Content-Type or Cache-Control.
    attributes: bool,
    /// `scheme://bucket/prefix`, for logs (a URL of these schemes carries no credentials).
    description: String,
}

/// Bytes read from a local file at a time by [`Bucket::put_file`].
const UPLOAD_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Parts of one [`Bucket::put_file`] upload in flight at once.
const UPLOAD_PARTS_IN_FLIGHT: usize = 4;

/// Retries inside one request (a dropped connection, a 503); the outbox retries beyond them.
fn retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
    }
}

/// Timeouts of one request, under any the environment or `--publish-option` set (a whole
/// `ClientOptions` would replace those, `AWS_ALLOW_HTTP` included).
fn client_defaults() -> [(ClientConfigKey, &'static str); 2] {
    [
        (ClientConfigKey::ConnectTimeout, "5s"),
        (ClientConfigKey::Timeout, "120s"),
    ]
}

impl Bucket {
    /// Opens `url` (`s3://bucket/prefix`, `gs://…`, `az://container/prefix`, `file:///path`).
    /// Credentials, region and endpoint come from each store's standard environment variables
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`), then from `options` (`key=value` config keys of the
    /// store, e.g. `aws_endpoint=http://127.0.0.1:9000`), which win.
    pub fn open(url: &str, options: &[String]) -> Result<Self, BucketError> {
        // The HTTP client of the cloud stores uses rustls with the process's provider: ring,
        // as everywhere in the server. Installing it twice is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let parsed = url::Url::parse(url)
            .map_err(|error| BucketError::Config(format!("{url:?} is not a URL: {error}")))?;
        let (scheme, path) = ObjectStoreScheme::parse(&parsed)
            .map_err(|error| BucketError::Config(error.to_string()))?;
        let options = parse_options(options)?;
        let config = |error: object_store::Error| BucketError::Config(error.to_string());
        let (store, prefix, attributes): (Arc<dyn ObjectStore>, Path, bool) = match scheme {
            ObjectStoreScheme::Local => {
                if !options.is_empty() {
                    return Err(BucketError::Config(
                        "a file:// target takes no --publish-option".into(),
                    ));
                }
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| BucketError::Config(format!("{url:?} is not a local folder")))?;
                std::fs::create_dir_all(&dir).map_err(|error| {
                    BucketError::Config(format!("cannot create {}: {error}", dir.display()))
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(config)?;
                (Arc::new(store), Path::default(), false)
            }
            ObjectStoreScheme::AmazonS3 => {
                let mut builder = AmazonS3Builder::from_env().with_url(url);
                for (key, value) in client_defaults() {
                    builder = builder.with_config(AmazonS3ConfigKey::Client(key), value);
                }
                for (key, value) in options {
                    builder = builder.with_config(key.parse().map_err(config)?, value);
                }
                let store = builder.with_retry(retry()).build().map_err(config)?;
                (Arc::new(store), path, true)
            }
            ObjectStoreScheme::GoogleCloudStorage => {
                let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url);
                for (key, value) in client_defaults() {
                    builder = builder.with_config(GoogleConfigKey::Client(key), value);
                }
                for (key, value) in options {
                    builder = builder.with_config(key.parse().map_err(config)?, value);
                }
                let store = builder.with_retry(retry()).build().map_err(config)?;
                (Arc::new(store), path, true)
            }
            ObjectStoreScheme::MicrosoftAzure => {
                let mut builder = MicrosoftAzureBuilder::from_env().with_url(url);
                for (key, value) in client_defaults() {
                    builder = builder.with_config(AzureConfigKey::Client(key), value);
                }
                for (key, value) in options {
                    builder = builder.with_config(key.parse().map_err(config)?, value);
                }
                let store = builder.with_retry(retry()).build().map_err(config)?;
                (Arc::new(store), path, true)
            }
            other => {
                return Err(BucketError::Config(format!(
                    "unsupported scheme {other:?}: use s3://, gs://, az:// or file://"
                )));
            }
        };
        Ok(Self {
            store,
            prefix,
            attributes,
            description: format!(
                "{}://{}{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default(),
                parsed.path()
            ),
        })
    }

    /// Returns `scheme://bucket/prefix`, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }

    fn path(&self, relative: &str) -> Path {
        relative
            .split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// Writes one object (whole: a reader sees the old body or the new one, never a part).
    pub async fn put(
        &self,
        relative: &str,
        body: Bytes,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Result<(), BucketError> {
        let mut attributes = Attributes::new();
        if self.attributes {
            attributes.insert(Attribute::ContentType, content_type.into());
            attributes.insert(Attribute::CacheControl, cache_control.into());
        }
        let options = PutOptions {
            attributes,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.path(relative), PutPayload::from(body), options)
            .await?;
        Ok(())
    }

    /// Streams a local file into one object in parts (a large file never sits in memory);
    /// returns its length. The object appears whole when the upload completes.
    pub async fn put_file(
        &self,
        relative: &str,
        file: &std::path::Path,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> Result<u64, BucketError> {
        use std::io::Read as _;
        let local = |source| BucketError::LocalFile {
            path: file.to_owned(),
            source,
        };
        let mut source = std::fs::File::open(file).map_err(local)?;
        let mut attributes = Attributes::new();
        if self.attributes {
            attributes.insert(Attribute::ContentType, content_type.into());
            attributes.insert(Attribute::CacheControl, cache_control.into());
        }
        let options = object_store::PutMultipartOptions {
            attributes,
            ..object_store::PutMultipartOptions::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&self.path(relative), options)
            .await?;
        let mut write = object_store::WriteMultipart::new(upload);
        let mut buffer = vec![0u8; UPLOAD_CHUNK_BYTES];
        let mut length = 0u64;
        loop {
            // A blocking read of one chunk: the uploads of earlier parts go on meanwhile.
            let read = match source.read(&mut buffer) {
                Ok(read) => read,
                Err(error) => {
                    let _ = write.abort().await;
                    return Err(local(error));
                }
            };
            if read == 0 {
                break;
            }
            write.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await?;
            write.write(&buffer[..read]);
            length += read as u64;
        }
        write.finish().await?;
        Ok(length)
    }

    /// Deletes one object; one already gone is fine.
    pub async fn delete(&self, relative: &str) -> Result<(), BucketError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Returns whether an object exists.
    pub async fn exists(&self, relative: &str) -> Result<bool, BucketError> {
        match self.store.head(&self.path(relative)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Returns an object's body, `None` when it does not exist.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>, BucketError> {
        match self.store.get(&self.path(relative)).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Returns the names (last path part) of the objects directly under folder `relative`.
    pub async fn list(&self, relative: &str) -> Result<Vec<String>, BucketError> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.path(relative)))
            .await;
        let listed = match listed {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|object| object.location.filename().map(str::to_owned))
            .collect())
    }

    /// Returns every object path under the layout's root, relative to it (for tests and
    /// checks; one listing of the whole bucket prefix).
    pub async fn all_paths(&self) -> Result<Vec<String>, BucketError> {
        let prefix = self.prefix.as_ref().to_owned();
        let mut paths: Vec<String> = self
            .store
            .list(Some(&self.prefix))
            .map_ok(|object| {
                let full = object.location.as_ref();
                full.strip_prefix(&prefix)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_owned()
            })
            .try_collect()
            .await?;
        paths.sort();
        Ok(paths)
    }
}

/// Splits `key=value` options.
fn parse_options(options: &[String]) -> Result<Vec<(String, String)>, BucketError> {
    options
        .iter()
        .map(|option| match option.split_once('=') {
            Some((key, value)) if !key.is_empty() => {
                Ok((key.trim().to_ascii_lowercase(), value.to_owned()))
            }
            // The option may hold a secret: name its position only, never its text.
            _ => Err(BucketError::Config(
                "a --publish-option is not of the form key=value".into(),
            )),
        })
        .collect()
}
