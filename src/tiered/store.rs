//! Builds the object store from the broker's `object_store.*` keys and checks at
//! start-up that it answers, so a wrong endpoint or a missing bucket stops the broker
//! with a clear message instead of failing uploads later. Also owns the object layout:
//! `<prefix>/<topic>-<topic id>/<partition>/<base offset>-<segment uuid>.<kind>`.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use uuid::Uuid;

use crate::config::BrokerConfig;

/// Why the object store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid {key} '{url}': {reason}")]
    BadUrl {
        key: &'static str,
        url: String,
        reason: String,
    },
    #[error("cannot configure the object store {url}: {source}")]
    Build {
        url: String,
        source: object_store::Error,
    },
    #[error("the object store {url} did not answer a test write and delete: {source} (check object_store.endpoint, the bucket and the credentials)")]
    Unreachable {
        url: String,
        source: object_store::Error,
    },
    #[error("cannot create the local object store directory {path}: {source}")]
    LocalDir {
        path: String,
        source: std::io::Error,
    },
}

/// The object store plus the key prefix every object lives under.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    pub store: Arc<dyn ObjectStore>,
    /// The same store's low-level multipart calls, where it has them (S3, memory):
    /// the uploader records each upload id, so a restart can abort an upload a crash
    /// cut short instead of leaving its parts in the bucket.
    pub multipart: Option<Multipart>,
    pub prefix: Path,
    /// The URL it was built from, for logs and errors.
    pub url: String,
}

/// A store's [`MultipartStore`] side.
#[derive(Clone)]
pub struct Multipart(pub Arc<dyn MultipartStore>);

impl std::fmt::Debug for Multipart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Multipart")
    }
}

/// The objects a tiered segment is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Log,
    OffsetIndex,
    TimeIndex,
    Epochs,
    /// The idempotent-producer state as of the segment's end.
    ProducerSnapshot,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Log,
        ObjectKind::OffsetIndex,
        ObjectKind::TimeIndex,
        ObjectKind::Epochs,
        ObjectKind::ProducerSnapshot,
    ];

    fn suffix(self) -> &'static str {
        match self {
            ObjectKind::Log => "log",
            ObjectKind::OffsetIndex => "index",
            ObjectKind::TimeIndex => "timeindex",
            ObjectKind::Epochs => "epochs",
            ObjectKind::ProducerSnapshot => "snapshot",
        }
    }

    /// The number the cache keys this object by.
    pub fn cache_tag(self) -> u8 {
        self as u8
    }
}

impl RemoteStore {
    /// Builds the store named by `object_store.url` (default: `file://` the
    /// `remote-store` directory under the first log dir) and its other keys.
    pub fn from_config(config: &BrokerConfig) -> Result<RemoteStore, StoreError> {
        let configured = config.get("object_store.url").trim().to_string();
        let url = if configured.is_empty() {
            let dir = config
                .log_dirs
                .first()
                .map(|d| d.join("remote-store"))
                .unwrap_or_else(|| "./data/remote-store".into());
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::LocalDir {
                path: dir.display().to_string(),
                source,
            })?;
            let abs = std::fs::canonicalize(&dir).unwrap_or(dir);
            format!("file://{}", abs.display())
        } else {
            configured
        };
        Self::from_url(config, &url, "object_store.url")
    }

    /// Builds the store at `url` (s3://bucket/prefix, file:///path or memory://), an
    /// S3 one with the `object_store.*` endpoint, region, credential and encryption
    /// keys; `key` names the setting the URL came from in errors.
    pub fn from_url(
        config: &BrokerConfig,
        url: &str,
        key: &'static str,
    ) -> Result<RemoteStore, StoreError> {
        let url = url.to_string();
        let parsed = url::Url::parse(&url).map_err(|e| StoreError::BadUrl {
            key,
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let build_err = |source| StoreError::Build {
            url: url.clone(),
            source,
        };
        let (store, multipart, prefix): (Arc<dyn ObjectStore>, Option<Multipart>, String) =
            match parsed.scheme() {
                "s3" | "s3a" => {
                    let bucket = parsed.host_str().unwrap_or("").to_string();
                    if bucket.is_empty() {
                        return Err(StoreError::BadUrl {
                            key,
                            url,
                            reason: "no bucket (expected s3://bucket/prefix)".into(),
                        });
                    }
                    let s3 = Arc::new(s3_builder(config, &bucket).build().map_err(build_err)?);
                    (
                        s3.clone(),
                        Some(Multipart(s3)),
                        parsed.path().trim_matches('/').to_string(),
                    )
                }
                "file" => {
                    let path = parsed.path().to_string();
                    std::fs::create_dir_all(&path).map_err(|source| StoreError::LocalDir {
                        path: path.clone(),
                        source,
                    })?;
                    (
                        Arc::new(
                            LocalFileSystem::new_with_prefix(FsPath::new(&path))
                                .map_err(build_err)?,
                        ),
                        None,
                        String::new(),
                    )
                }
                "memory" => {
                    let memory = Arc::new(InMemory::new());
                    (memory.clone(), Some(Multipart(memory)), String::new())
                }
                other => {
                    return Err(StoreError::BadUrl {
                        key,
                        url: url.clone(),
                        reason: format!("unsupported scheme '{other}' (use s3, file or memory)"),
                    })
                }
            };
        Ok(RemoteStore {
            store,
            multipart,
            prefix: Path::from(prefix),
            url,
        })
    }

    /// Writes and deletes a small object under the prefix: proves the endpoint,
    /// bucket and credentials work before the broker takes traffic.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let key = self.child(&format!("_strata_probe_{}", Uuid::new_v4()));
        let unreachable = |source| StoreError::Unreachable {
            url: self.url.clone(),
            source,
        };
        self.store
            .put(&key, PutPayload::from(Bytes::from_static(b"strata")))
            .await
            .map_err(unreachable)?;
        self.store.delete(&key).await.map_err(unreachable)
    }

    fn child(&self, part: &str) -> Path {
        if self.prefix.as_ref().is_empty() {
            Path::from(part)
        } else {
            self.prefix.clone().join(part)
        }
    }

    /// The directory of a topic's objects.
    pub fn topic_dir(&self, topic: &str, topic_id: &Uuid) -> Path {
        self.child(&format!("{topic}-{}", topic_id.simple()))
    }

    /// One object of a segment.
    pub fn segment_object(
        &self,
        topic: &str,
        topic_id: &Uuid,
        partition: i32,
        base_offset: i64,
        segment: &Uuid,
        kind: ObjectKind,
    ) -> Path {
        self.topic_dir(topic, topic_id)
            .join(partition.to_string())
            .join(format!(
                "{}-{}.{}",
                crate::log::segment::file_stem(base_offset),
                segment.simple(),
                kind.suffix()
            ))
    }
}

fn s3_builder(config: &BrokerConfig, bucket: &str) -> AmazonS3Builder {
    // from_env: AWS_* variables, then web identity, ECS and EC2 instance credentials.
    // Client options first: they replace allow_http, which is one of them.
    let mut b = AmazonS3Builder::from_env()
        .with_client_options(
            ClientOptions::new()
                .with_timeout(Duration::from_secs(60))
                .with_connect_timeout(Duration::from_secs(5)),
        )
        .with_bucket_name(bucket)
        .with_allow_http(config.get("object_store.allow_http") == "true")
        .with_virtual_hosted_style_request(
            config.get("object_store.virtual_hosted_style") == "true",
        )
        .with_retry(RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        });
    let set = |k: &str| Some(config.get(k).trim()).filter(|v| !v.is_empty());
    // Encryption at rest, asked for on every PutObject and CreateMultipartUpload
    // (the config check allows the KMS keys only with aws:kms).
    let sse = set("object_store.sse").map(|v| {
        if v.eq_ignore_ascii_case("AES256") {
            "AES256"
        } else {
            "aws:kms"
        }
    });
    let bucket_key = set("object_store.sse.bucket.key.enabled").map(|v| {
        if v.eq_ignore_ascii_case("true") {
            "true"
        } else {
            "false"
        }
    });
    for (key, value) in [
        ("aws_server_side_encryption", sse),
        ("aws_sse_kms_key_id", set("object_store.sse.kms.key.id")),
        ("aws_sse_bucket_key_enabled", bucket_key),
    ] {
        if let (Some(value), Ok(key)) = (value, key.parse::<AmazonS3ConfigKey>()) {
            b = b.with_config(key, value);
        }
    }
    if let Some(endpoint) = set("object_store.endpoint") {
        b = b.with_endpoint(endpoint);
    }
    let env_region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .is_ok();
    match set("object_store.region") {
        Some(region) => b = b.with_region(region),
        None if !env_region => {
            let region = profile_value("config", "region").unwrap_or_else(|| "us-east-1".into());
            b = b.with_region(region)
        }
        None => {}
    }
    let explicit = set("object_store.access_key_id").zip(set("object_store.secret_access_key"));
    if let Some((key, secret)) = explicit {
        b = b.with_access_key_id(key).with_secret_access_key(secret);
    } else if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        // The standard chain's second source, which object_store does not read: the
        // shared credentials file of AWS_PROFILE. Then object_store's own chain (web
        // identity, ECS, EC2 instance role).
        let key = profile_value("credentials", "aws_access_key_id");
        let secret = profile_value("credentials", "aws_secret_access_key");
        if let (Some(key), Some(secret)) = (key, secret) {
            b = b.with_access_key_id(key).with_secret_access_key(secret);
            if let Some(token) = profile_value("credentials", "aws_session_token") {
                b = b.with_token(token);
            }
        }
    }
    b
}

/// A value of the `AWS_PROFILE` profile (default `default`) in the shared AWS
/// `credentials` or `config` file (`AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`,
/// else `~/.aws/<file>`). In `config`, named profiles are `[profile NAME]` sections.
fn profile_value(file: &str, key: &str) -> Option<String> {
    let override_var = if file == "credentials" {
        "AWS_SHARED_CREDENTIALS_FILE"
    } else {
        "AWS_CONFIG_FILE"
    };
    let path = std::env::var(override_var)
        .ok()
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var("HOME")
                .ok()
                .map(|h| std::path::Path::new(&h).join(".aws").join(file))
        })?;
    let text = std::fs::read_to_string(path).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    profile_value_in(&text, file == "config", &profile, key)
}

fn profile_value_in(text: &str, config_file: bool, profile: &str, key: &str) -> Option<String> {
    let ini = ini::Ini::load_from_str(text).ok()?;
    let section = if config_file && profile != "default" {
        format!("profile {profile}")
    } else {
        profile.to_string()
    };
    ini.section(Some(section))?
        .get(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_profile_files_are_read_like_the_aws_sdk() {
        let creds = "[default]\naws_access_key_id = AK1\naws_secret_access_key = S1\n\n[dev]\naws_access_key_id=AK2\naws_secret_access_key=S2\naws_session_token=T2\n";
        assert_eq!(
            profile_value_in(creds, false, "default", "aws_access_key_id").as_deref(),
            Some("AK1")
        );
        assert_eq!(
            profile_value_in(creds, false, "dev", "aws_session_token").as_deref(),
            Some("T2")
        );
        assert_eq!(
            profile_value_in(creds, false, "nope", "aws_access_key_id"),
            None
        );
        let config = "[default]\nregion = eu-west-1\n[profile dev]\nregion = us-west-2\n";
        assert_eq!(
            profile_value_in(config, true, "default", "region").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            profile_value_in(config, true, "dev", "region").as_deref(),
            Some("us-west-2")
        );
    }

    #[test]
    fn segment_objects_follow_the_documented_layout() {
        let store = RemoteStore {
            store: Arc::new(InMemory::new()),
            multipart: None,
            prefix: Path::from("cluster-1"),
            url: "memory://".into(),
        };
        let topic = Uuid::nil();
        let seg = Uuid::from_u128(7);
        let p = store.segment_object("orders", &topic, 3, 42, &seg, ObjectKind::OffsetIndex);
        assert_eq!(
            p.as_ref(),
            format!(
                "cluster-1/orders-{}/3/00000000000000000042-{}.index",
                topic.simple(),
                seg.simple()
            )
        );
    }
}
