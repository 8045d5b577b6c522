//! The node's local store: an SQLite database in the data directory that logs every
//! allocation (a compute provider's share of a job) and every deployment (a service
//! provider's job), and each of their transitions, so that a node restarted after a crash
//! finds what it had accepted.
//!
//! Every change is one transaction: a record and its first transition, or a state change
//! and its transition. The database runs in WAL mode with `synchronous = FULL`, so a change
//! that returned is on disk. The schema carries its version in `PRAGMA user_version`; an
//! older database is upgraded in place, a newer one (written by a later release) is refused
//! untouched, so nothing stored is lost by running an older binary.
//!
//! The store also holds the provider's [`Onboarding`]: its registered capacity and the share
//! onboarded, one row (schema version 2).
//!
//! States are the state machines' own names (`pending`, `running`, ...): the store records,
//! the state machines decide which transitions are legal.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::onboarding::Onboarding;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

/// How long a write waits for another process's (a running node's, or the CLI's).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Schema version 1: records and their transitions.
const SCHEMA_V1: &str = "BEGIN;
     CREATE TABLE IF NOT EXISTS record (
         kind TEXT NOT NULL,
         id TEXT NOT NULL,
         peer TEXT,
         spec TEXT NOT NULL,
         state TEXT NOT NULL,
         created_at_us INTEGER NOT NULL,
         updated_at_us INTEGER NOT NULL,
         PRIMARY KEY (kind, id)
     );
     CREATE INDEX IF NOT EXISTS record_state ON record (kind, state);
     CREATE TABLE IF NOT EXISTS transition (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         kind TEXT NOT NULL,
         id TEXT NOT NULL,
         at_us INTEGER NOT NULL,
         from_state TEXT,
         to_state TEXT NOT NULL,
         detail TEXT NOT NULL,
         FOREIGN KEY (kind, id) REFERENCES record (kind, id)
     );
     CREATE INDEX IF NOT EXISTS transition_record ON transition (kind, id, seq);
     PRAGMA user_version = 1;
     COMMIT;";

/// Version 1 to 2: the onboarding row (registered and onboarded capacity as JSON).
const MIGRATE_V2: &str = "BEGIN;
     CREATE TABLE IF NOT EXISTS onboarding (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         registered TEXT NOT NULL,
         onboarded TEXT NOT NULL,
         updated_at_us INTEGER NOT NULL
     );
     PRAGMA user_version = 2;
     COMMIT;";

/// The file name of the store in the data directory.
pub const STORE_FILE: &str = "node.sqlite";

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A compute provider's allocation: resources it runs a job with.
    Allocation,
    /// A service provider's deployment: a job it placed on providers.
    Deployment,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Allocation => "allocation",
            Kind::Deployment => "deployment",
        }
    }
}

/// One allocation or deployment as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// What it is.
    pub kind: Kind,
    /// Its id.
    pub id: String,
    /// The other side: the requesting service provider of an allocation, or empty.
    pub peer: Option<String>,
    /// The job and whatever the state machine needs to resume it, as JSON.
    pub spec: String,
    /// The current state.
    pub state: String,
    /// Created, microseconds since the Unix epoch.
    pub created_at_us: u64,
    /// Last changed, microseconds since the Unix epoch.
    pub updated_at_us: u64,
}

/// A record to store with [`Store::insert`].
#[derive(Clone, Copy, Debug)]
pub struct NewRecord<'a> {
    /// What it is.
    pub kind: Kind,
    /// Its id, unique within its kind.
    pub id: &'a str,
    /// The other side, if any.
    pub peer: Option<&'a str>,
    /// The job and what is needed to resume it, as JSON.
    pub spec: &'a str,
    /// Its first state.
    pub state: &'a str,
    /// Why it was created.
    pub detail: &'a str,
    /// When, microseconds since the Unix epoch.
    pub at_us: u64,
}

/// One logged transition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    /// When, microseconds since the Unix epoch.
    pub at_us: u64,
    /// The state before (none for the first).
    pub from: Option<String>,
    /// The state after.
    pub to: String,
    /// Why, in words (an exit status, an error, a request).
    pub detail: String,
}

/// Why the store cannot do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error(
        "cannot open the local store {path}: {cause}; check that the data directory is writable"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: rusqlite::Error,
    },
    /// The database was written by a later release.
    #[error(
        "the local store {path} has schema version {found}, newer than this build's \
         {SCHEMA_VERSION}; run the release that wrote it (the file was left untouched)"
    )]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
    },
    /// A record with this id exists already.
    #[error("{} `{id}` is already stored", .kind.table())]
    Exists {
        /// Its kind.
        kind: Kind,
        /// Its id.
        id: String,
    },
    /// No record with this id.
    #[error("no {} `{id}` is stored", .kind.table())]
    Unknown {
        /// Its kind.
        kind: Kind,
        /// Its id.
        id: String,
    },
    /// The onboarding row is not valid JSON of this build's types.
    #[error(
        "the onboarding stored in the local store is unreadable ({0}); run `flotilla onboard \
         --remeasure` to write it again"
    )]
    Onboarding(serde_json::Error),
    /// Any other database error.
    #[error("local store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The local store; see the module documentation.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |cause| StoreError::Open {
            path: path.to_path_buf(),
            cause,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        Self::init(conn, path)
    }

    /// A store in memory (tests, tools).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?, Path::new(":memory:"))
    }

    fn init(conn: Connection, path: &Path) -> Result<Store, StoreError> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: path.to_path_buf(),
                found,
            });
        }
        if found < 1 {
            conn.execute_batch(SCHEMA_V1)?;
        }
        if found < 2 {
            conn.execute_batch(MIGRATE_V2)?;
        }
        Ok(Store { conn })
    }

    /// Stores a new record with its first transition.
    pub fn insert(&mut self, new: NewRecord<'_>) -> Result<(), StoreError> {
        let NewRecord {
            kind,
            id,
            peer,
            spec,
            state,
            detail,
            at_us,
        } = new;
        let tx = self.conn.transaction()?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM record WHERE kind = ?1 AND id = ?2",
                params![kind.table(), id],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Err(StoreError::Exists {
                kind,
                id: id.to_string(),
            });
        }
        let at = at_us as i64;
        tx.execute(
            "INSERT INTO record (kind, id, peer, spec, state, created_at_us, updated_at_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![kind.table(), id, peer, spec, state, at],
        )?;
        tx.execute(
            "INSERT INTO transition (kind, id, at_us, from_state, to_state, detail)
             VALUES (?1, ?2, ?3, NULL, ?4, ?5)",
            params![kind.table(), id, at, state, detail],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Moves a record to state `to`, logging the transition; returns the state before.
    pub fn transition(
        &mut self,
        kind: Kind,
        id: &str,
        to: &str,
        detail: &str,
        at_us: u64,
    ) -> Result<String, StoreError> {
        let tx = self.conn.transaction()?;
        let from: Option<String> = tx
            .query_row(
                "SELECT state FROM record WHERE kind = ?1 AND id = ?2",
                params![kind.table(), id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(from) = from else {
            return Err(StoreError::Unknown {
                kind,
                id: id.to_string(),
            });
        };
        let at = at_us as i64;
        tx.execute(
            "UPDATE record SET state = ?3, updated_at_us = MAX(updated_at_us, ?4)
             WHERE kind = ?1 AND id = ?2",
            params![kind.table(), id, to, at],
        )?;
        tx.execute(
            "INSERT INTO transition (kind, id, at_us, from_state, to_state, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![kind.table(), id, at, from, to, detail],
        )?;
        tx.commit()?;
        Ok(from)
    }

    /// Replaces what record `id` of `kind` keeps to resume (its `spec` JSON).
    pub fn set_spec(&mut self, kind: Kind, id: &str, spec: &str) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE record SET spec = ?3 WHERE kind = ?1 AND id = ?2",
            params![kind.table(), id, spec],
        )?;
        if changed == 0 {
            return Err(StoreError::Unknown {
                kind,
                id: id.to_string(),
            });
        }
        Ok(())
    }

    /// The record `id` of `kind`, if stored.
    pub fn get(&self, kind: Kind, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, peer, spec, state, created_at_us, updated_at_us FROM record
                 WHERE kind = ?1 AND id = ?2",
                params![kind.table(), id],
                |r| row(kind, r),
            )
            .optional()?)
    }

    /// The records of `kind`, those in one of `states` if given, oldest first (then by id).
    pub fn list(&self, kind: Kind, states: Option<&[&str]>) -> Result<Vec<Record>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, peer, spec, state, created_at_us, updated_at_us FROM record
             WHERE kind = ?1 ORDER BY created_at_us, id",
        )?;
        let rows = stmt.query_map(params![kind.table()], |r| row(kind, r))?;
        let mut out = Vec::new();
        for r in rows {
            let r = r?;
            if states.is_none_or(|s| s.contains(&r.state.as_str())) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The provider's onboarding, if it was ever onboarded.
    pub fn onboarding(&self) -> Result<Option<Onboarding>, StoreError> {
        let row: Option<(String, String)> = self
            .conn
            .query_row(
                "SELECT registered, onboarded FROM onboarding WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((registered, onboarded)) = row else {
            return Ok(None);
        };
        Ok(Some(Onboarding {
            registered: serde_json::from_str(&registered).map_err(StoreError::Onboarding)?,
            onboarded: serde_json::from_str(&onboarded).map_err(StoreError::Onboarding)?,
        }))
    }

    /// Stores the provider's onboarding, replacing the one before; `at_us` is when, in
    /// microseconds since the Unix epoch.
    pub fn set_onboarding(
        &mut self,
        onboarding: &Onboarding,
        at_us: u64,
    ) -> Result<(), StoreError> {
        let registered =
            serde_json::to_string(&onboarding.registered).map_err(StoreError::Onboarding)?;
        let onboarded =
            serde_json::to_string(&onboarding.onboarded).map_err(StoreError::Onboarding)?;
        self.conn.execute(
            "INSERT INTO onboarding (id, registered, onboarded, updated_at_us)
             VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET registered = ?1, onboarded = ?2, updated_at_us = ?3",
            params![registered, onboarded, at_us as i64],
        )?;
        Ok(())
    }

    /// The transitions of record `id`, in the order they were logged.
    pub fn history(&self, kind: Kind, id: &str) -> Result<Vec<Transition>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT at_us, from_state, to_state, detail FROM transition
             WHERE kind = ?1 AND id = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![kind.table(), id], |r| {
            Ok(Transition {
                at_us: r.get::<_, i64>(0)? as u64,
                from: r.get(1)?,
                to: r.get(2)?,
                detail: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

fn row(kind: Kind, r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        kind,
        id: r.get(0)?,
        peer: r.get(1)?,
        spec: r.get(2)?,
        state: r.get(3)?,
        created_at_us: r.get::<_, i64>(4)? as u64,
        updated_at_us: r.get::<_, i64>(5)? as u64,
    })
}

#[cfg(test)]
mod tests;
