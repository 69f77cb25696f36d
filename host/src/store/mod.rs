//! The operator's persistent state: one redb database in the data directory.
//!
//! Everything the operator must not lose (the audit log, and later tickets and actions) lives in
//! `<data_dir>/operator.redb`. redb gives ACID transactions with copy-on-write pages, so a crash at
//! any point leaves the file at the last committed transaction.
//!
//! redb allows one writing process per file, so the daemon holds the data directory for as long as
//! it runs; a second process that tries to open it gets [`StoreError::Locked`], and should talk to
//! the daemon's API instead.
//!
//! # Schema and migrations
//!
//! The `meta` table ([`META`]) holds `schema_version`. [`Store::open`] runs every step of
//! [`MIGRATIONS`] newer than the stored version, all in one write transaction, and then records
//! [`SCHEMA_VERSION`]. A fresh file therefore gets every table of the current schema at once, and
//! a failed migration leaves the file as it was. A file written by a newer operator-host (a
//! schema version this code does not know) is refused rather than guessed at.
//!
//! A module that needs tables of its own defines their [`redb::TableDefinition`]s and adds a step
//! to [`MIGRATIONS`] that creates them, with the next version number.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

/// The name of the database file inside the data directory.
pub const DB_FILE: &str = "operator.redb";

/// redb's page cache for the database, bytes.
///
/// redb keeps every page it writes in this cache until it is full, and its default is 1 GiB: with
/// the audit log appending a few kilobytes a second, a daemon's memory grew by tens of MiB an hour
/// until it reached that. The operator reads little back (recent records, open tickets and
/// actions), and the kernel's page cache still serves re-reads of the file, so a small cache costs
/// nothing measurable and keeps the daemon's memory flat.
pub const CACHE_BYTES: usize = 16 << 20;

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 4;

/// The `meta` table: small named values that describe the database itself (`schema_version`)
/// or that other modules keep next to their tables (e.g. the audit log's `audit_head`).
pub const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// The key in [`META`] that holds the schema version, as a decimal string.
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

/// One step of the schema: what version it brings the database to and how.
///
/// Steps run inside the migration's single write transaction; a step must only create tables or
/// rewrite data, never commit.
pub struct Migration {
    /// The schema version the database has once this step ran. Steps are numbered from 1 with no
    /// gaps, and the last one is [`SCHEMA_VERSION`].
    pub version: u32,
    /// What the step does, for error messages and logs.
    pub description: &'static str,
    /// The step itself.
    pub apply: fn(&WriteTransaction) -> Result<(), redb::Error>,
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Every schema step, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, description: "meta table and the audit log", apply: migrate_v1 },
    Migration { version: 2, description: "tickets", apply: crate::monitor::tickets::create_tables },
    Migration { version: 3, description: "actions", apply: crate::actions::store::create_tables },
    Migration { version: 4, description: "workflow runs", apply: crate::actions::workflow_store::create_tables },
];

fn migrate_v1(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(META)?;
    txn.open_table(crate::audit::AUDIT_RECORDS)?;
    Ok(())
}

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory does not exist and could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the database open (redb allows a single writing process).
    #[error(
        "{path} is in use by another process: another operator-host process (the daemon) holds \
         this data directory; stop it, or run the command through the daemon's API"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The file exists but is not a database redb can open (not a redb file, an old format,
    /// unreadable, ...).
    #[error("cannot open the database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// The database was written by a newer operator-host.
    #[error(
        "the database {path} has schema version {found}, but this operator-host only knows \
         versions up to {supported}; use a newer operator-host (nothing was changed)"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version stored in the file.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
    /// The stored schema version is not a number.
    #[error("the database {path} has an unreadable schema_version {value:?} in its meta table")]
    BadSchemaVersion {
        /// The database file.
        path: PathBuf,
        /// The stored value.
        value: String,
    },
    /// A migration step failed; the database is unchanged.
    #[error(
        "migrating the database {path} to schema version {version} ({description}) failed: \
         {source} (nothing was changed)"
    )]
    Migration {
        /// The database file.
        path: PathBuf,
        /// The version of the failing step.
        version: u32,
        /// The step's description.
        description: &'static str,
        /// What went wrong.
        #[source]
        source: Box<redb::Error>,
    },
    /// A read or write of the database failed.
    #[error("database error: {0}")]
    Db(Box<redb::Error>),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(redb::Error, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// A handle on the operator's database. Cloning is cheap and every clone shares one open
/// database.
#[derive(Clone)]
pub struct Store {
    db: Arc<redb::Database>,
    path: Arc<PathBuf>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `<data_dir>/operator.redb` and brings its schema up to date.
    ///
    /// The data directory is created if missing, with mode 0700 on unix. This does blocking file
    /// I/O; call it before starting async work or from a blocking task.
    ///
    /// # Errors
    /// [`StoreError::Locked`] if another process holds the database, [`StoreError::TooNew`] if it
    /// was written by a newer operator-host, and the other [`StoreError`] variants for I/O,
    /// format and migration failures.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        create_data_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        let db = match redb::Database::builder().set_cache_size(CACHE_BYTES).create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch) => {
                return Err(StoreError::Locked { path });
            }
            Err(source) => return Err(StoreError::Open { path, source }),
        };
        let store = Store { db: Arc::new(db), path: Arc::new(path) };
        store.migrate()?;
        Ok(store)
    }

    /// The open database, for modules that keep their own tables.
    pub fn db(&self) -> &redb::Database {
        &self.db
    }

    /// The path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the database (0 for a database no migration ran on).
    ///
    /// # Errors
    /// A database read failure, or [`StoreError::BadSchemaVersion`].
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let meta = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let value = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value().to_owned());
        self.parse_version(value)
    }

    /// Brings the schema up to [`SCHEMA_VERSION`] in one write transaction; does nothing when it
    /// already is. Called by [`Store::open`].
    ///
    /// # Errors
    /// [`StoreError::TooNew`] for a database from a newer operator-host (left unchanged), or a
    /// failed step ([`StoreError::Migration`], also leaving the database unchanged).
    pub fn migrate(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        let stored = {
            let meta = txn.open_table(META)?;
            let value = meta.get(SCHEMA_VERSION_KEY)?.map(|v| v.value().to_owned());
            self.parse_version(value)?
        };
        if stored > SCHEMA_VERSION {
            txn.abort()?;
            return Err(StoreError::TooNew { path: self.path().to_owned(), found: stored, supported: SCHEMA_VERSION });
        }
        if stored == SCHEMA_VERSION {
            txn.abort()?;
            return Ok(());
        }
        for step in MIGRATIONS.iter().filter(|m| m.version > stored) {
            (step.apply)(&txn).map_err(|source| StoreError::Migration {
                path: self.path().to_owned(),
                version: step.version,
                description: step.description,
                source: Box::new(source),
            })?;
        }
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION.to_string().as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn parse_version(&self, value: Option<String>) -> Result<u32, StoreError> {
        match value {
            None => Ok(0),
            Some(v) => {
                v.trim().parse().map_err(|_| StoreError::BadSchemaVersion { path: self.path().to_owned(), value: v })
            }
        }
    }
}

fn create_data_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_to_the_schema_version() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<u32> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }

    #[test]
    fn open_creates_the_directory_and_the_schema() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/data");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.path(), dir.join(DB_FILE));
        assert!(store.path().exists());
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        use redb::ReadableDatabase;
        let txn = store.db().begin_read().unwrap();
        txn.open_table(META).unwrap();
        txn.open_table(crate::audit::AUDIT_RECORDS).unwrap();
    }

    #[test]
    fn reopening_keeps_the_data_and_the_version() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = Store::open(tmp.path()).unwrap();
            let txn = store.db().begin_write().unwrap();
            txn.open_table(META).unwrap().insert("k", "v").unwrap();
            txn.commit().unwrap();
        }
        let store = Store::open(tmp.path()).unwrap();
        use redb::ReadableDatabase;
        let txn = store.db().begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get("k").unwrap().unwrap().value(), "v");
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_second_open_reports_the_lock_and_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let _held = Store::open(tmp.path()).unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&tmp.path().join(DB_FILE).display().to_string()), "{msg}");
        assert!(msg.contains("another operator-host process"), "{msg}");
    }

    const HOLD_ENV: &str = "OPERATOR_STORE_TEST_HOLD_DIR";

    /// Run as a child process by `another_process_holding_the_store_is_reported`: holds the
    /// store until its stdin closes. Does nothing in a normal test run.
    #[test]
    fn child_process_holds_the_store() {
        let Some(dir) = std::env::var_os(HOLD_ENV) else {
            return;
        };
        let _store = Store::open(Path::new(&dir)).unwrap();
        println!("store held");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    }

    #[test]
    fn another_process_holding_the_store_is_reported() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};

        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::child_process_holds_the_store", "--nocapture", "--test-threads=1"])
            .env(HOLD_ENV, tmp.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "child exited early");
            if line.contains("store held") {
                break;
            }
        }

        let err = Store::open(tmp.path()).unwrap_err();
        let msg = err.to_string();

        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
        assert!(msg.contains(&tmp.path().join(DB_FILE).display().to_string()), "{msg}");
        assert!(msg.contains("another operator-host process (the daemon)"), "{msg}");
        // Released with the process.
        Store::open(tmp.path()).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = Store::open(tmp.path()).unwrap();
            let txn = store.db().begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_VERSION_KEY, (SCHEMA_VERSION + 1).to_string().as_str())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(tmp.path()).unwrap_err();
        match &err {
            StoreError::TooNew { found, supported, .. } => {
                assert_eq!(*found, SCHEMA_VERSION + 1);
                assert_eq!(*supported, SCHEMA_VERSION);
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert!(err.to_string().contains("newer operator-host"));
        // Unchanged: the version is still the newer one.
        let db = redb::Database::open(tmp.path().join(DB_FILE)).unwrap();
        use redb::ReadableDatabase;
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let stored = meta.get(SCHEMA_VERSION_KEY).unwrap().unwrap();
        assert_eq!(stored.value(), (SCHEMA_VERSION + 1).to_string());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(DB_FILE), b"not a redb file at all, just some text").unwrap();
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains(DB_FILE));
    }

    #[test]
    fn an_unreadable_schema_version_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = Store::open(tmp.path()).unwrap();
            let txn = store.db().begin_write().unwrap();
            txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, "one").unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StoreError::BadSchemaVersion { .. }), "{err:?}");
    }
}
