//! The local target's state: `<data-dir>/state.db`, SQLite. A table `products` (the cursors and the
//! last success of each product) and a table `runs` (the capped history); each commit is one
//! transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

use super::{HISTORY, ProductState, RunRecord, StateError, json, latest_success, merged};

/// `<data-dir>/state.db`.
pub(crate) fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("state.db")
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| StateError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

fn open(path: &Path) -> Result<Connection, StateError> {
    crate::sqlite::open(
        path,
        "CREATE TABLE IF NOT EXISTS products (
             product TEXT PRIMARY KEY,
             cursors TEXT NOT NULL DEFAULT '{}',
             last_success TEXT
         );
         CREATE TABLE IF NOT EXISTS runs (
             product TEXT NOT NULL,
             started_at TEXT NOT NULL,
             run_id TEXT NOT NULL,
             record TEXT NOT NULL,
             PRIMARY KEY (product, started_at, run_id)
         );",
    )
    .map_err(sqlite(path))
}

/// Creates the state file and its tables unless they are there.
pub(super) fn prepare(path: &Path) {
    let _ = open(path);
}

fn record(text: &str) -> Result<RunRecord, StateError> {
    serde_json::from_str(text).map_err(StateError::Record)
}

/// The stored cursors and last success of `product`.
fn stored(
    connection: &Connection,
    path: &Path,
    product: &str,
) -> Result<(BTreeMap<String, Value>, Option<RunRecord>), StateError> {
    let row: Option<(String, Option<String>)> = connection
        .query_row(
            "SELECT cursors, last_success FROM products WHERE product = ?1",
            params![product],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sqlite(path))?;
    let Some((cursors, last_success)) = row else {
        return Ok((BTreeMap::new(), None));
    };
    let cursors = serde_json::from_str(&cursors).map_err(StateError::Record)?;
    let last_success = last_success.as_deref().map(record).transpose()?;
    Ok((cursors, last_success))
}

pub(super) fn read(path: &Path, product: &str) -> Result<ProductState, StateError> {
    if !path.exists() {
        return Ok(ProductState::default());
    }
    let connection = open(path)?;
    let (cursors, last_success) = stored(&connection, path, product)?;
    let last_run = connection
        .query_row(
            "SELECT record FROM runs WHERE product = ?1 ORDER BY started_at DESC LIMIT 1",
            params![product],
            |row| row.get::<_, String>(0),
        )
        .optional()
        .map_err(sqlite(path))?
        .as_deref()
        .map(record)
        .transpose()?;
    Ok(ProductState {
        cursors,
        last_run,
        last_success,
    })
}

pub(super) fn commit(
    path: &Path,
    product: &str,
    cursors: &BTreeMap<String, Value>,
    mut run: RunRecord,
) -> Result<RunRecord, StateError> {
    let mut connection = open(path)?;
    // IMMEDIATE: the read of the stored cursors and the write of the new ones are one step.
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite(path))?;
    let (stored_cursors, last_success) = stored(&transaction, path, product)?;
    let saved = merged(&stored_cursors, cursors);
    run.cursors = cursors
        .keys()
        .filter_map(|task| Some((task.clone(), saved.get(task)?.clone())))
        .collect();
    let last_success = latest_success(last_success.iter().chain([&run])).cloned();
    transaction
        .execute(
            "INSERT INTO products (product, cursors, last_success) VALUES (?1, ?2, ?3)
             ON CONFLICT (product) DO UPDATE SET cursors = excluded.cursors, last_success = excluded.last_success",
            params![product, json(&saved), last_success.as_ref().map(json)],
        )
        .map_err(sqlite(path))?;
    transaction
        .execute(
            "INSERT OR REPLACE INTO runs (product, started_at, run_id, record) VALUES (?1, ?2, ?3, ?4)",
            params![product, run.started_at, run.run_id, json(&run)],
        )
        .map_err(sqlite(path))?;
    transaction
        .execute(
            "DELETE FROM runs WHERE product = ?1 AND rowid NOT IN
                 (SELECT rowid FROM runs WHERE product = ?1 ORDER BY started_at DESC LIMIT ?2)",
            params![product, HISTORY as i64],
        )
        .map_err(sqlite(path))?;
    transaction.commit().map_err(sqlite(path))?;
    Ok(run)
}

pub(super) fn reset(path: &Path, product: &str, task: Option<&str>) -> Result<Vec<String>, StateError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut connection = open(path)?;
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sqlite(path))?;
    let (mut cursors, _) = stored(&transaction, path, product)?;
    let forgotten: Vec<String> = match task {
        Some(task) => cursors.remove(task).map(|_| task.to_owned()).into_iter().collect(),
        None => std::mem::take(&mut cursors).into_keys().collect(),
    };
    transaction
        .execute(
            "UPDATE products SET cursors = ?2 WHERE product = ?1",
            params![product, json(&cursors)],
        )
        .map_err(sqlite(path))?;
    transaction.commit().map_err(sqlite(path))?;
    Ok(forgotten)
}

pub(super) fn history(path: &Path, product: &str) -> Result<Vec<RunRecord>, StateError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let connection = open(path)?;
    let mut statement = connection
        .prepare("SELECT record FROM runs WHERE product = ?1 ORDER BY started_at DESC")
        .map_err(sqlite(path))?;
    let texts: Vec<String> = statement
        .query_map(params![product], |row| row.get(0))
        .map_err(sqlite(path))?
        .collect::<Result<_, _>>()
        .map_err(sqlite(path))?;
    texts.iter().map(|text| record(text)).collect()
}
