//! The web identity token file: an access token from the App Store's broker, kept fresh on
//! disk for the app's cloud clients.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::output::say;
use crate::settings::{Secret, Settings};

/// How long one token request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the first token may keep failing with server or connection errors.
const FIRST_FETCH_PATIENCE: Duration = Duration::from_secs(30);
/// Pause between tries after a failure.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Shortest wait before a refresh.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// An access token from the broker.
#[derive(Deserialize)]
pub struct Token {
    access_token: String,
    expires_in: u64,
}

impl Token {
    /// How long to wait before fetching the next token: half its lifetime, at least 1 s.
    pub fn refresh_after(&self) -> Duration {
        Duration::from_secs(self.expires_in / 2).max(MIN_REFRESH)
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The broker refused the instance token.
    #[error("the token broker refused the instance token (HTTP {0})")]
    Refused(u16),
    /// The broker failed, or could not be reached, or sent no token.
    #[error("the token broker is unavailable: {0}")]
    Unavailable(String),
    /// The token file could not be written.
    #[error("cannot write the web identity token file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Keeps a token file fresh.
pub struct Keeper {
    client: reqwest::Client,
    broker: Url,
    instance_token: Secret,
    path: PathBuf,
}

impl Keeper {
    /// A keeper of the file at `path`, for the instance of `settings`.
    pub fn new(client: reqwest::Client, settings: &Settings, path: PathBuf) -> Self {
        Keeper {
            client,
            broker: settings.broker_url(),
            instance_token: settings.token.clone(),
            path,
        }
    }

    /// Writes the first token: a refusal fails at once, other failures are retried for 30 s.
    pub async fn first(&self) -> Result<Token, TokenError> {
        let deadline = tokio::time::Instant::now() + FIRST_FETCH_PATIENCE;
        loop {
            match self.fetch().await {
                Ok(token) => {
                    self.store(&token)?;
                    return Ok(token);
                }
                Err(e @ TokenError::Refused(_)) => return Err(e),
                Err(e) if tokio::time::Instant::now() + RETRY_EVERY >= deadline => return Err(e),
                Err(e) => {
                    say(format_args!("{e}; trying again"));
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        }
    }

    /// Refreshes the file for ever, starting from `token`.
    pub async fn refresh_from(&self, token: Token) {
        let mut wait = token.refresh_after();
        loop {
            tokio::time::sleep(wait).await;
            match self.fetch().await {
                Ok(next) => match self.store(&next) {
                    Ok(()) => wait = next.refresh_after(),
                    Err(e) => {
                        say(e);
                        wait = RETRY_EVERY;
                    }
                },
                Err(e) => {
                    say(format_args!("cannot refresh the web identity token: {e}"));
                    wait = RETRY_EVERY;
                }
            }
        }
    }

    /// Asks the broker for a token in exchange for the instance token.
    async fn fetch(&self) -> Result<Token, TokenError> {
        let unavailable = |e: reqwest::Error| TokenError::Unavailable(e.to_string());
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", self.instance_token.expose()),
        ];
        let response = self
            .client
            .post(self.broker.clone())
            .timeout(REQUEST_TIMEOUT)
            .form(&form)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if status.is_client_error() {
            return Err(TokenError::Refused(status.as_u16()));
        }
        if !status.is_success() {
            return Err(TokenError::Unavailable(format!("HTTP {}", status.as_u16())));
        }
        let token: Token = response.json().await.map_err(unavailable)?;
        if token.access_token.is_empty() {
            return Err(TokenError::Unavailable("empty access token".to_owned()));
        }
        Ok(token)
    }

    /// Writes `token` to the file.
    fn store(&self, token: &Token) -> Result<(), TokenError> {
        write_atomically(&self.path, token.access_token.as_bytes()).map_err(|source| {
            TokenError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }
}

/// Replaces the file at `path` with `contents`, readable by its owner only: readers see the
/// old file or the new one, never part of one.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".token-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn file_is_private_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/token");
        write_atomically(&path, b"first").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"first");
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let before = inode(&path);
        write_atomically(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        // A rename puts a new file in place instead of rewriting the old one.
        assert_ne!(inode(&path), before);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn refresh_waits_half_the_lifetime() {
        let token = |expires_in| Token {
            access_token: "t".to_owned(),
            expires_in,
        };
        assert_eq!(token(3600).refresh_after(), Duration::from_secs(1800));
        assert_eq!(token(1).refresh_after(), MIN_REFRESH);
        assert_eq!(token(0).refresh_after(), MIN_REFRESH);
    }

    #[test]
    fn token_parses_from_broker_json() {
        let json = r#"{"access_token":"abc","expires_in":300,"token_type":"Bearer"}"#;
        let token: Token = serde_json::from_str(json).unwrap();
        assert_eq!(
            (token.access_token.as_str(), token.expires_in),
            ("abc", 300)
        );
    }
}
