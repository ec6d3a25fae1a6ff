//! The master key: encrypts signing keys and personal-data keys at rest.
//! Given in the configuration, read from a file, or generated on first start
//! into `{data_dir}/master.key` with mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;

use commands::crypto::MASTER_KEY_LEN as KEY_LEN;
pub use commands::crypto::MasterKey;

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be {} hex characters", KEY_LEN * 2)]
    Malformed,
    #[error("master key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn from_hex(text: &str) -> Result<MasterKey, MasterKeyError> {
    let bytes = hex::decode(text.trim()).map_err(|_| MasterKeyError::Malformed)?;
    let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| MasterKeyError::Malformed)?;
    Ok(MasterKey::from_bytes(arr))
}

/// The key the configuration names, or the one in the data directory,
/// generated there if it does not exist yet. Returns where it came from.
pub fn load_or_create(config: &Config) -> Result<(MasterKey, String), MasterKeyError> {
    if let Some(hex) = &config.master_key {
        return Ok((from_hex(hex)?, "IDP_MASTER_KEY".to_owned()));
    }
    let (path, create) = match &config.master_key_file {
        Some(p) => (p.clone(), false),
        None => (config.data_dir.join("master.key"), true),
    };
    let io = |source| MasterKeyError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            warn_if_readable_by_others(&path);
            Ok((from_hex(&text)?, path.display().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = MasterKey::from_bytes(rand::random());
            write_private(&path, &hex::encode(key.bytes())).map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new master key");
            Ok((key, path.display().to_string()))
        }
        Err(e) => Err(io(e)),
    }
}

/// Creates `path` with mode 0600 (failing if it exists) and writes `text`.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "the master key file is readable by others than its owner");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let (a, _) = load_or_create(&config).unwrap();
        let (b, _) = load_or_create(&config).unwrap();
        assert_eq!(a, b, "the second start reads the same key");
        assert_ne!(a.bytes(), &[0u8; KEY_LEN]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!format!("{a:?}").contains(&hex::encode(a.bytes())));
    }

    #[test]
    fn a_given_key_is_used_and_checked() {
        let config = Config {
            master_key: Some("ab".repeat(32)),
            ..Config::default()
        };
        let (k, from) = load_or_create(&config).unwrap();
        assert_eq!(k.bytes(), &[0xab; 32]);
        assert_eq!(from, "IDP_MASTER_KEY");
        let bad = Config {
            master_key: Some("xyz".into()),
            ..Config::default()
        };
        assert!(matches!(
            load_or_create(&bad),
            Err(MasterKeyError::Malformed)
        ));
    }
}
