//! Secrets a server keeps in files or takes from its configuration: the server key (generated
//! on first start, mode 0600), random strings for generated credentials, and a string type
//! that never prints itself.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::ServerKey;
use crate::session::ShortKey;

/// A secret setting (password, key, database URL with a password) that `Debug` never shows.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Letters and digits, the alphabet of generated keys.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A uniformly random string over `alphabet` (rejection sampling, no modulo bias).
pub fn random_string(len: usize, alphabet: &[u8]) -> String {
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf).expect("the OS random source is available");
        for &b in &buf {
            if usize::from(b) < limit && out.len() < len {
                out.push(char::from(alphabet[usize::from(b) % alphabet.len()]));
            }
        }
    }
    out
}

/// Writes a new file only its owner can read (mode 0600), creating its directory.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// A server key that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The key file could not be read or written.
    #[error("server key file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key is too short.
    #[error("server key file {path}: {source}")]
    Short {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ShortKey,
    },
}

/// Loads a server key from `file`, or from `generated`, creating that one (mode 0600) on
/// first start. Replicas must share one key file, so only the default is ever generated.
pub fn load_server_key(file: Option<&Path>, generated: &Path) -> Result<ServerKey, KeyFileError> {
    let path = file.unwrap_or(generated).to_path_buf();
    let file_err = |source| KeyFileError::File {
        path: path.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => {
            let text = random_string(64, ALNUM);
            write_private(&path, &text).map_err(file_err)?;
            text
        }
        Err(e) => return Err(file_err(e)),
    };
    ServerKey::new(text.trim().as_bytes()).map_err(|source| KeyFileError::Short {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn server_key_generated_once_private_or_read() {
        let dir = std::env::temp_dir().join(random_string(12, ALNUM));
        let generated = dir.join("server-key");
        let first = load_server_key(None, &generated).unwrap();
        let again = load_server_key(None, &generated).unwrap();
        assert_eq!(first.kid(), again.kid());
        let mode = std::fs::metadata(&generated).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let short = dir.join("short");
        std::fs::write(&short, "too short\n").unwrap();
        assert!(matches!(
            load_server_key(Some(&short), &generated),
            Err(KeyFileError::Short { .. })
        ));
        assert!(matches!(
            load_server_key(Some(&dir.join("missing")), &generated),
            Err(KeyFileError::File { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn random_strings_use_the_alphabet() {
        let s = random_string(200, b"ab");
        assert_eq!(s.len(), 200);
        assert!(s.bytes().all(|b| b == b'a' || b == b'b'));
        assert!(s.contains('a') && s.contains('b'));
        assert!(!format!("{:?}", Secret::from("hunter2".to_owned())).contains("hunter2"));
    }
}
