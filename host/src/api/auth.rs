//! The API's bearer token: generated at first start, kept in `<data-dir>/api-token` (mode 0600),
//! compared in constant time.
//!
//! Mutating routes always require `Authorization: Bearer <token>`. Reads are open to local peers
//! (a loopback TCP address or the Unix socket) and require the token from anywhere else.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "api-token";

/// Random bytes in a token (its text is twice as many hex digits).
const TOKEN_BYTES: usize = 32;

/// Why the token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading, creating or securing the file failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The token file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The file exists but does not hold a token.
    #[error(
        "{path} does not hold an API token ({reason}); remove it and restart to generate a new one (clients must then use the new token)"
    )]
    Malformed {
        /// The token file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The path exists but is not a regular file.
    #[error("{path} is not a regular file; the API token cannot be kept there")]
    NotAFile {
        /// The token file.
        path: PathBuf,
    },
}

/// The API's bearer token. Its `Debug` form never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    secret: String,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

impl ApiToken {
    /// Where the token of a data directory is kept.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(TOKEN_FILE)
    }

    /// A token from its text (64 lowercase hex digits).
    ///
    /// # Errors
    /// The text is not 64 lowercase hex digits.
    pub fn from_text(text: &str) -> Result<ApiToken, String> {
        let text = text.trim();
        if text.len() != TOKEN_BYTES * 2 {
            return Err(format!("expected {} hex digits, found {} characters", TOKEN_BYTES * 2, text.len()));
        }
        if !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err("expected lowercase hex digits only".into());
        }
        Ok(ApiToken { secret: text.to_owned() })
    }

    /// A new random token (32 bytes from the thread's cryptographically secure generator).
    pub fn generate() -> ApiToken {
        let bytes: [u8; TOKEN_BYTES] = rand::random();
        ApiToken { secret: hex::encode(bytes) }
    }

    /// Loads the token of `data_dir`, generating it on first start.
    ///
    /// A new file is created with mode 0600 (never readable by others, even for an instant). An
    /// existing file readable or writable by group or others is tightened to 0600 with a warning;
    /// if that fails, the token is refused.
    ///
    /// # Errors
    /// The directory or file cannot be created, read or secured, or the file does not hold a token.
    pub fn load_or_create(data_dir: &Path) -> Result<ApiToken, TokenError> {
        let path = Self::path(data_dir);
        let io = |what: &'static str| {
            let path = path.clone();
            move |source| TokenError::Io { path, what, source }
        };
        fs::create_dir_all(data_dir).map_err(io("creating the data directory"))?;
        let token = ApiToken::generate();
        let created = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        match created {
            Ok(mut file) => {
                file.write_all(format!("{}\n", token.secret).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io("writing the new token"))?;
                tracing::info!(path = %path.display(), "generated the API token");
                Ok(token)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(&path),
            Err(e) => Err(io("creating the token file")(e)),
        }
    }

    /// Reads an existing token file, tightening its mode to 0600 if it is wider.
    fn load(path: &Path) -> Result<ApiToken, TokenError> {
        let io = |what: &'static str| {
            let path = path.to_path_buf();
            move |source| TokenError::Io { path, what, source }
        };
        let meta = fs::symlink_metadata(path).map_err(io("reading the token file's metadata"))?;
        if !meta.file_type().is_file() {
            return Err(TokenError::NotAFile { path: path.to_path_buf() });
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600))
                .map_err(io("tightening the token file's mode to 0600 (it was readable by others)"))?;
            tracing::warn!(path = %path.display(), "the API token file had mode {mode:o}; tightened to 600");
        }
        let text = fs::read_to_string(path).map_err(io("reading the token file"))?;
        ApiToken::from_text(&text).map_err(|reason| TokenError::Malformed { path: path.to_path_buf(), reason })
    }

    /// The token's text, for clients of this host (the CLI reads the file instead).
    pub fn as_str(&self) -> &str {
        &self.secret
    }

    /// Whether `candidate` is the token, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        constant_time_eq(self.secret.as_bytes(), candidate.as_bytes())
    }

    /// Checks an `Authorization` header value (`Bearer <token>`).
    ///
    /// # Errors
    /// What is wrong, in words fit for the client: no header, another scheme, a wrong token.
    pub fn check_header(&self, header: Option<&str>) -> Result<(), &'static str> {
        let Some(value) = header else {
            return Err("this route requires `Authorization: Bearer <token>` (the token is in <data-dir>/api-token)");
        };
        let Some(candidate) = bearer(value) else {
            return Err("the Authorization header must be `Bearer <token>`");
        };
        if self.matches(candidate) { Ok(()) } else { Err("the bearer token is wrong") }
    }
}

/// The credentials of a `Bearer` authorization value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Compares two byte strings without an early exit on the first difference. The length is not
/// secret (every token has the same length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let a = ApiToken::generate();
        let b = ApiToken::generate();
        assert_eq!(a.as_str().len(), 64);
        assert!(ApiToken::from_text(a.as_str()).is_ok());
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "ApiToken(<redacted>)");
    }

    #[test]
    fn comparison_and_header_parsing() {
        let token = ApiToken::generate();
        assert!(token.matches(token.as_str()));
        assert!(!token.matches(&token.as_str()[1..]));
        let mut wrong = token.as_str().to_owned();
        wrong.replace_range(63.., if wrong.ends_with('0') { "1" } else { "0" });
        assert!(!token.matches(&wrong));
        assert!(token.check_header(Some(&format!("Bearer {}", token.as_str()))).is_ok());
        assert!(token.check_header(Some(&format!("bearer  {} ", token.as_str()))).is_ok());
        assert!(token.check_header(None).is_err());
        assert!(token.check_header(Some(token.as_str())).is_err());
        assert!(token.check_header(Some(&format!("Basic {}", token.as_str()))).is_err());
        assert!(token.check_header(Some(&format!("Bearer {wrong}"))).is_err());
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b"ab"));
    }

    #[test]
    fn the_file_is_created_0600_reused_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApiToken::load_or_create(dir.path()).unwrap();
        let path = ApiToken::path(dir.path());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(ApiToken::load_or_create(dir.path()).unwrap(), first);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(ApiToken::load_or_create(dir.path()).unwrap(), first);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        fs::write(&path, "not a token").unwrap();
        let error = ApiToken::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(error.contains("does not hold an API token"), "{error}");
    }

    #[test]
    fn a_directory_in_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(ApiToken::path(dir.path())).unwrap();
        let error = ApiToken::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(error, TokenError::NotAFile { .. }), "{error}");
    }
}
