//! The local target's SQLite files (`state.db`, `firestore.db`), which several dpf processes may
//! use at once: the shards of one run, or runs of several products on one data dir. Each file is in
//! WAL mode, and a process waits for another to release it instead of failing.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

/// How long a process waits for another to release a file.
const PATIENCE: Duration = Duration::from_secs(30);

/// Opens (creating when needed) the SQLite file at `path` in WAL mode, and runs `schema`, which
/// makes its tables unless they are there, in one transaction that holds the write lock from its
/// start: two processes that both found a table missing would otherwise both try to make it.
pub(crate) fn open(path: &Path, schema: &str) -> rusqlite::Result<Connection> {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let connection = Connection::open(path)?;
    connection.busy_timeout(PATIENCE)?;
    wal(&connection)?;
    // One transaction: one sync, not one per table.
    connection.execute_batch(&format!("BEGIN IMMEDIATE; {schema} COMMIT;"))?;
    Ok(connection)
}

/// Switches the file to WAL. The mode is kept in the file, so only its first opener switches it;
/// SQLite does not wait on a busy lock for the switch, so a switch refused while another process
/// holds the file is tried again until [`PATIENCE`] runs out. A file system without WAL keeps the
/// file in the mode it has.
fn wal(connection: &Connection) -> rusqlite::Result<()> {
    let mode = |row: &rusqlite::Row<'_>| row.get::<_, String>(0);
    if connection
        .pragma_query_value(None, "journal_mode", mode)
        .is_ok_and(|mode| mode.eq_ignore_ascii_case("wal"))
    {
        return Ok(());
    }
    let start = Instant::now();
    loop {
        match connection.pragma_update_and_check(None, "journal_mode", "WAL", mode) {
            Err(error) if error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) && start.elapsed() < PATIENCE => {
                std::thread::sleep(Duration::from_millis(2));
            }
            switched => return switched.map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    #[test]
    fn processes_opening_a_new_file_at_once_all_get_it_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let openers = 12;
        let ready = Barrier::new(openers);
        std::thread::scope(|scope| {
            for n in 0..openers {
                let (path, ready) = (&path, &ready);
                scope.spawn(move || {
                    ready.wait();
                    let connection = super::open(path, "CREATE TABLE IF NOT EXISTS t (n INTEGER);").unwrap();
                    connection.execute("INSERT INTO t VALUES (?1)", [n as i64]).unwrap();
                    let mode: String = connection
                        .pragma_query_value(None, "journal_mode", |row| row.get(0))
                        .unwrap();
                    assert_eq!(mode, "wal");
                });
            }
        });
        let connection = rusqlite::Connection::open(&path).unwrap();
        let rows: i64 = connection
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, openers as i64);
    }
}
