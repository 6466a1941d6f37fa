//! The operator token: `TARN_ADMIN_TOKEN`, or one generated into `<data_dir>/_admin_token`
//! (mode 0600). `tarn token rotate` replaces that file; a running server reads it again when
//! it changes, so the old token stops working at once, with no restart.
//! Invariant: the token never reaches logs or `Debug`; comparisons are constant-time.

use crate::config::Secret;
use crate::store::random_secret;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// The shortest operator token accepted.
pub const MIN_LEN: usize = 16;

/// Why the operator token cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "TARN_ADMIN_TOKEN is shorter than {MIN_LEN} characters: use a long random one, or unset it to have one generated"
    )]
    Weak,
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0} has no generated operator token (is TARN_ADMIN_TOKEN set for the server?)")]
    Missing(PathBuf),
}

/// Where the generated token lives in a data dir.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("_admin_token")
}

/// Writes a new random token to `path` (0600, replaced whole) and returns it.
fn write_new(path: &Path) -> Result<String, TokenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let token = random_secret("tarn_admin_");
    let tmp = path.with_extension("new");
    let io = |e| TokenError::Io(path.to_path_buf(), e);
    let mut file = std::fs::File::options()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(token.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(token)
}

fn read(path: &Path) -> Option<(SystemTime, String)> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| (modified, text.to_owned()))
}

/// The generated token of a data dir (`tarn token show`).
pub fn show(data_dir: &Path) -> Result<String, TokenError> {
    read(&path(data_dir))
        .map(|(_, t)| t)
        .ok_or_else(|| TokenError::Missing(path(data_dir)))
}

/// Replaces the generated token of a data dir (`tarn token rotate`); returns the new one.
pub fn rotate(data_dir: &Path) -> Result<String, TokenError> {
    write_new(&path(data_dir))
}

/// The token a server checks operator requests against.
pub enum OperatorToken {
    /// Given by `TARN_ADMIN_TOKEN`.
    Fixed(Secret),
    /// Generated into the data dir; read again whenever the file changes.
    File {
        path: PathBuf,
        current: Mutex<(SystemTime, Secret)>,
    },
}

impl OperatorToken {
    /// The configured token, else the one saved in the data dir, else a new one saved there.
    /// A configured token shorter than `MIN_LEN` is refused, unless the server listens only
    /// on loopback (`local_only`: a machine's own benchmark or test), where it is warned of.
    pub fn load(
        configured: Option<&Secret>,
        data_dir: &Path,
        local_only: bool,
    ) -> Result<Self, TokenError> {
        if let Some(token) = configured {
            if token.expose().trim().chars().count() < MIN_LEN {
                if !local_only {
                    return Err(TokenError::Weak);
                }
                tracing::warn!(
                    "TARN_ADMIN_TOKEN is shorter than {MIN_LEN} characters: accepted only because the server listens on loopback alone"
                );
            }
            return Ok(OperatorToken::Fixed(token.clone()));
        }
        let path = path(data_dir);
        let (modified, token) = match read(&path) {
            Some(saved) => {
                tracing::info!(path = %path.display(), "using the saved operator token");
                saved
            }
            None => {
                let token = write_new(&path)?;
                tracing::info!(path = %path.display(), "generated an operator token (TARN_ADMIN_TOKEN was unset)");
                read(&path).unwrap_or((SystemTime::UNIX_EPOCH, token))
            }
        };
        Ok(OperatorToken::File {
            path,
            current: Mutex::new((modified, Secret::new(token))),
        })
    }

    /// Whether `given` is the operator token now.
    pub fn matches(&self, given: &str) -> bool {
        let same = |s: &Secret| bool::from(s.expose().as_bytes().ct_eq(given.as_bytes()));
        match self {
            OperatorToken::Fixed(s) => same(s),
            OperatorToken::File { path, current } => {
                let mut cur = current.lock().unwrap_or_else(|p| p.into_inner());
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified.is_some_and(|m| m != cur.0)
                    && let Some((m, t)) = read(path)
                {
                    tracing::info!(path = %path.display(), "the operator token changed on disk; using the new one");
                    *cur = (m, Secret::new(t));
                }
                same(&cur.1)
            }
        }
    }
}
