//! Work queued for one tenant's connection, and group commit: a tenant's queued writes run in
//! one transaction, each in a savepoint of its own, and share its commit.
//! Invariants: a grouped job's result is handed over only once its effects have committed
//! (or, if they never will, as an error); a job that fails, panics or leaves synced changes
//! unrecorded is rolled back alone; a group whose transaction fails gives every member an error.

use super::sqlite::Cached;
use super::{StoreError, session};
use rusqlite::Connection;
use std::collections::VecDeque;
use std::time::Instant;

/// What a job is handed: the tenant's connection, or the reason there is none.
pub(super) type Handed<'a> = Result<&'a mut Connection, StoreError>;

/// A grouped job's body: runs and says how to hand over its result.
type GroupedRun = Box<dyn FnOnce(Handed<'_>) -> Member + Send>;

/// One job for a tenant's connection.
pub(super) struct Job {
    pub run: Run,
    pub queued: Instant,
}

/// How a job runs.
pub(super) enum Run {
    /// On its own; it hands over its result itself.
    Alone(Box<dyn FnOnce(Handed<'_>) + Send>),
    /// A write that may share its commit with the tenant's other queued writes.
    Grouped(GroupedRun),
}

/// A grouped job that has run: whether it succeeded, and how to hand over its result once
/// its group's commit is known.
pub(super) struct Member {
    ok: bool,
    deliver: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

impl Member {
    /// Hands over the job's result: as it is when its effects committed (`Ok`) or when it
    /// failed anyway; else the commit's error.
    fn deliver(self, committed: Result<(), StoreError>) {
        (self.deliver)(committed)
    }
}

impl Job {
    /// A job that runs `f` alone and sends its result to `tx`.
    pub fn alone<T, E>(
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        tx: tokio::sync::oneshot::Sender<Result<T, E>>,
    ) -> Job
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        Job {
            run: Run::Alone(Box::new(move |conn| {
                let _ = tx.send(call(f, conn));
            })),
            queued: Instant::now(),
        }
    }

    /// A job that runs `f` in its tenant's group and sends its result to `tx` once the
    /// group's commit is known.
    pub fn grouped<T, E>(
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        tx: tokio::sync::oneshot::Sender<Result<T, E>>,
    ) -> Job
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        Job {
            run: Run::Grouped(Box::new(move |conn| {
                let result = call(f, conn);
                Member {
                    ok: result.is_ok(),
                    deliver: Box::new(move |committed| {
                        let _ = tx.send(match (result, committed) {
                            (Ok(_), Err(e)) => Err(E::from(e)),
                            (result, _) => result,
                        });
                    }),
                }
            })),
            queued: Instant::now(),
        }
    }
}

/// `f` on the connection, or the reason there is none as its error.
fn call<T, E: From<StoreError>>(
    f: impl FnOnce(&mut Connection) -> Result<T, E>,
    conn: Handed<'_>,
) -> Result<T, E> {
    match conn {
        Ok(conn) => f(conn),
        Err(e) => Err(E::from(e)),
    }
}

/// A tenant's queue of jobs and how many threads are draining it (at most its connection
/// count): work for a busy tenant waits here, not on a thread blocked on its connection,
/// and the thread that holds the connection runs it next.
#[derive(Default)]
pub(super) struct Lane {
    pub queue: VecDeque<Job>,
    pub draining: u32,
}

/// The grouped jobs run on one connection since its group's transaction began, waiting for
/// its commit.
#[derive(Default)]
pub(super) struct Group {
    members: Vec<Member>,
    open: bool,
}

impl Group {
    /// Whether the group's transaction is open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Gives a grouped job that cannot run the reason.
    pub fn fail(run: GroupedRun, why: StoreError) {
        run(Err(why)).deliver(Ok(()));
    }

    /// Runs a grouped job on its own (no group is open and no other job waits): its own
    /// transaction commits it, so its result is handed over at once.
    pub fn run_alone(conn: &mut Connection, run: GroupedRun) {
        run(Ok(conn)).deliver(Ok(()));
    }

    /// Runs a grouped job inside the group's transaction (beginning it first), in a
    /// savepoint of its own that is rolled back when the job fails or leaves synced changes
    /// unrecorded. A panic rolls it back too, and is passed on.
    pub fn run(&mut self, conn: &mut Connection, run: GroupedRun) {
        if !self.open {
            if conn.exec("BEGIN IMMEDIATE", []).is_err() {
                // Its own transaction will meet the same trouble and report it.
                return Self::run_alone(conn, run);
            }
            self.open = true;
        }
        if let Err(e) = conn.exec("SAVEPOINT member", []) {
            self.abort(conn, &e);
            return Self::run_alone(conn, run);
        }
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(Ok(&mut *conn))));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an interrupt, a full disk, an I/O
            // error): the earlier members' effects are gone with this one's.
            let gone = gone();
            self.open = false;
            self.abort(conn, &gone);
            match ran {
                Ok(member) => member.deliver(Err(StoreError::Sqlite(gone))),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            return;
        }
        let member = match ran {
            Ok(member) => member,
            Err(panic) => {
                self.roll_back_member(conn);
                std::panic::resume_unwind(panic);
            }
        };
        match (member.ok, session::pending(conn)) {
            (true, false) => match conn.exec("RELEASE member", []) {
                Ok(_) => self.members.push(member),
                Err(e) => {
                    self.abort(conn, &e);
                    member.deliver(Err(copy_of(&e)));
                }
            },
            (ok, pending) => {
                self.roll_back_member(conn);
                let why = match (ok, pending) {
                    (true, true) => Err(StoreError::Sqlite(unrecorded())),
                    _ => Ok(()),
                };
                member.deliver(why);
            }
        }
    }

    /// Commits the group's transaction, if one is open, and hands each member its result.
    /// Returns how many members it had.
    pub fn commit(&mut self, conn: &mut Connection) -> usize {
        if !self.open {
            return 0;
        }
        self.open = false;
        let members = self.members.len();
        match conn.exec("COMMIT", []) {
            Ok(_) => {
                for m in self.members.drain(..) {
                    m.deliver(Ok(()));
                }
            }
            Err(e) => self.abort(conn, &e),
        }
        members
    }

    /// Rolls the current member back to its savepoint (and forgets what it touched); when
    /// that fails, the whole group goes.
    fn roll_back_member(&mut self, conn: &mut Connection) {
        match conn.execute_batch("ROLLBACK TO member; RELEASE member") {
            Ok(()) => session::forget(conn),
            Err(e) => self.abort(conn, &e),
        }
    }

    /// Rolls back the group's transaction (if SQLite has not already) and gives every member
    /// `why` as its error.
    fn abort(&mut self, conn: &mut Connection, why: &rusqlite::Error) {
        tracing::error!(error = %why, members = self.members.len(), "a group of writes failed; each gets the error");
        if !conn.is_autocommit()
            && let Err(e) = conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %e, "rolling back a group of writes failed");
        }
        session::forget(conn);
        self.open = false;
        for m in self.members.drain(..) {
            m.deliver(Err(copy_of(why)));
        }
    }
}

/// The same error again, for each member of a group that it ended.
fn copy_of(e: &rusqlite::Error) -> StoreError {
    let (code, message) = match e {
        rusqlite::Error::SqliteFailure(code, message) => (*code, message.clone()),
        other => (
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    };
    StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, message))
}

fn gone() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
        Some("the transaction was rolled back by SQLite; nothing in it was written".into()),
    )
}

fn unrecorded() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_COMMITHOOK),
        Some("a write changed synced rows without recording them; rolled back".into()),
    )
}
