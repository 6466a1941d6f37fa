//! The tenant store: validated tenant ids, where their files live, how a SQLite file is
//! opened and migrated, and the LRU pool of open tenants.
//! Invariant: a `TenantId` is validated before it can become a path, and this module imports
//! nothing from `http`, `channel` or `parser`.

pub mod changeset;
mod id;
mod lane;
pub mod memo;
pub mod migrate;
pub mod pool;
pub mod session;
pub mod sqlite;

pub use id::{InvalidTenantId, TenantId};
pub use pool::{PoolConfig, PoolStats, TenantHandle, TenantPool};

use std::path::{Path, PathBuf};

/// Errors of the storage layer (tenant files, control database, migrations).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("tenant {0} not found")]
    NotFound(TenantId),
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantId),
    #[error(
        "database {path} has schema version {found}, newer than this binary supports ({supported}); upgrade tarn"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("migration {version} ({name}) failed on {path}: {source}")]
    Migration {
        path: PathBuf,
        version: i64,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("timed out waiting for tenant {0} to be released")]
    Busy(TenantId),
    #[error("tenant {0} is moving to another machine; retry shortly")]
    Moving(TenantId),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("io on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl StoreError {
    /// Wraps an IO error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The on-disk layout of a data directory.
///
/// Tenant files fan out over 4,096 folders named by the first three hex digits of the
/// SHA-256 of the id, so a million tenants put about 250 files in each folder.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// A layout rooted at `root` (the data dir).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The data dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The shared control database.
    pub fn control_db(&self) -> PathBuf {
        self.root.join("_control.db")
    }

    /// Scratch space for snapshots being streamed (emptied at start).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("_tmp")
    }

    /// Where deleted tenants' files are moved.
    pub fn trash_dir(&self) -> PathBuf {
        self.root.join("_trash")
    }

    /// The fan-out folder of a tenant.
    pub fn tenant_dir(&self, id: &TenantId) -> PathBuf {
        self.root.join(id.shard())
    }

    /// The SQLite file of a tenant: `<root>/<shard>/<id>.db`.
    pub fn tenant_db(&self, id: &TenantId) -> PathBuf {
        self.tenant_dir(id).join(format!("{}.db", id.as_str()))
    }
}

/// Creates `dir` and any missing parents, each with mode 0700: a shop's data is readable by
/// the server's user alone.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io(dir, e))
}

/// Creates an empty file with mode 0600 unless it exists. SQLite gives a database's `-wal`
/// and `-shm` files the mode of the database, so they are private too.
pub fn create_private_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Litestream's state for a database it replicates (its folder beside the file): stale once
/// the file is moved away or replaced, so it goes with it.
pub fn forget_replica_state(db: &Path) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (db.parent(), db.file_name()) else {
        return Ok(());
    };
    let mut meta = std::ffi::OsString::from(".");
    meta.push(name);
    meta.push("-litestream");
    match std::fs::remove_dir_all(dir.join(meta)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The `-wal` and `-shm` companions of a SQLite file, with the file itself first.
pub fn db_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}
