//! `strata storage format`, as `kafka-storage format`: writes `meta.properties`
//! (cluster id, node id) into the log dirs and the metadata dir, and records the first
//! SCRAM users (`--add-scram 'SCRAM-SHA-512=[name=admin,password=admin-secret]'`) for
//! the quorum to apply at first start. Never required (a fresh node formats itself),
//! never prints a password, and refuses a directory already formatted unless
//! `--ignore-formatted`.

use std::path::{Path, PathBuf};

use crate::config::BrokerConfig;
use crate::log::manager::METADATA_DIR_PREFIX;
use crate::metadata::MetadataRecord;
use crate::scram::{Mechanism, MAX_ITERATIONS, MIN_ITERATIONS};

/// Records a formatted node's quorum applies once at first start.
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";
const META_PROPERTIES: &str = "meta.properties";

#[derive(clap::Args, Debug)]
pub struct StorageArgs {
    #[command(subcommand)]
    pub command: StorageCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StorageCommand {
    /// Formats the log dirs and the metadata dir of the broker configured by
    /// --config / --override.
    Format(FormatArgs),
}

#[derive(clap::Args, Debug)]
pub struct FormatArgs {
    /// A SCRAM user to create: 'SCRAM-SHA-512=[name=admin,password=admin-secret]'
    /// (optionally iterations=8192). Repeatable.
    #[arg(long = "add-scram", value_name = "CREDENTIAL")]
    pub add_scram: Vec<String>,
    /// The cluster id (generated when absent); the same on every node of a cluster.
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Formats again a directory that already holds meta.properties.
    #[arg(long)]
    pub ignore_formatted: bool,
}

/// Parses `SCRAM-SHA-512=[name=admin,password=admin-secret,iterations=8192]`.
fn parse_scram(text: &str) -> Result<MetadataRecord, String> {
    let (mechanism, rest) = text
        .split_once('=')
        .ok_or_else(|| "expected MECHANISM=[name=...,password=...]".to_string())?;
    let mechanism = Mechanism::from_name(mechanism.trim()).ok_or_else(|| {
        format!(
            "'{}' is not SCRAM-SHA-256 or SCRAM-SHA-512",
            mechanism.trim()
        )
    })?;
    let inner = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| "the credential must be in [...]".to_string())?;
    let (mut name, mut password, mut iterations) = (None, None, MIN_ITERATIONS);
    for part in inner.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| "expected key=value inside [...]".to_string())?;
        let v = v.trim().trim_matches('"').to_string();
        match k.trim() {
            "name" => name = Some(v),
            "password" => password = Some(v),
            "iterations" => {
                iterations = v
                    .parse()
                    .ok()
                    .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
                    .ok_or_else(|| {
                        format!("iterations must be {MIN_ITERATIONS}..={MAX_ITERATIONS}")
                    })?
            }
            other => return Err(format!("unknown attribute '{other}'")),
        }
    }
    let user = name.filter(|n| !n.is_empty()).ok_or("name is missing")?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or("password is missing")?;
    Ok(MetadataRecord::SetScramCredential {
        user,
        mechanism: mechanism.name().to_string(),
        credential: mechanism.credential_for_password(&password, iterations),
    })
}

fn metadata_dir(config: &BrokerConfig) -> PathBuf {
    config
        .metadata_log_dir
        .join(format!("{METADATA_DIR_PREFIX}-0"))
}

/// Formats; returns what to print (never a password).
pub fn format(config: &BrokerConfig, args: &FormatArgs) -> Result<String, String> {
    let records = args
        .add_scram
        .iter()
        .map(|s| parse_scram(s).map_err(|e| format!("--add-scram: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut dirs: Vec<PathBuf> = config.log_dirs.clone();
    if !dirs.contains(&config.metadata_log_dir) {
        dirs.push(config.metadata_log_dir.clone());
    }
    for dir in &dirs {
        if dir.join(META_PROPERTIES).exists() && !args.ignore_formatted {
            return Err(format!(
                "{} is already formatted (meta.properties exists); use --ignore-formatted to format it again",
                dir.display()
            ));
        }
    }
    let cluster_id = args.cluster_id.clone().unwrap_or_else(new_cluster_id);
    let text = format!(
        "#\n# Written by strata storage format.\nversion=1\ncluster.id={cluster_id}\nnode.id={}\n",
        config.node_id
    );
    for dir in &dirs {
        write(dir, META_PROPERTIES, text.as_bytes())?;
    }
    let meta = metadata_dir(config);
    let json = serde_json::to_vec_pretty(&records).map_err(|e| e.to_string())?;
    write(&meta, BOOTSTRAP_FILE, &json)?;
    let mut out = format!(
        "Formatted {} with cluster id {cluster_id} (node {}).\n",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        config.node_id
    );
    for r in &records {
        if let MetadataRecord::SetScramCredential {
            user, mechanism, ..
        } = r
        {
            out.push_str(&format!("SCRAM credential for user {user} ({mechanism}) recorded; applied at first start.\n"));
        }
    }
    Ok(out)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding.
pub fn new_cluster_id() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().into_bytes())
}

/// The bootstrap records a formatted node left for its first start, if any.
pub fn take_bootstrap(config: &BrokerConfig) -> Option<(PathBuf, Vec<MetadataRecord>)> {
    let path = metadata_dir(config).join(BOOTSTRAP_FILE);
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(records) => Some((path, records)),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable bootstrap records; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_parses_like_kafka_storage() {
        let r = parse_scram("SCRAM-SHA-512=[name=admin,password=admin-secret]").unwrap();
        let MetadataRecord::SetScramCredential {
            user,
            mechanism,
            credential,
        } = r
        else {
            panic!()
        };
        assert_eq!(
            (user.as_str(), mechanism.as_str()),
            ("admin", "SCRAM-SHA-512")
        );
        assert!(Mechanism::Sha512.password_matches("admin-secret", &credential));
        assert!(parse_scram("SCRAM-SHA-256=[name=\"a\",password=\"b\",iterations=8192]").is_ok());
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-512=name=a",
            "SCRAM-SHA-512=[name=a]",
            "SCRAM-SHA-512=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-512=[name=a,password=b,colour=red]",
        ] {
            assert!(parse_scram(bad).is_err(), "{bad}");
        }
        assert_eq!(new_cluster_id().len(), 22);
    }
}
