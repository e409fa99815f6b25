//! How a write replaces a warehouse table: the new contents are built in the table's staging
//! folder `<data-dir>/warehouse-staging/<dataset>/<table>/next/`, outside the warehouse so that a
//! glob over `warehouse/**` never meets them, then exchanged with the table folder in one rename.
//! A reader sees the old files or the new ones, never a mix.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::error::{WarehouseError, io};

/// The staging folder of one table, locked by its writer.
pub(super) struct Staging {
    /// The table's folder in the warehouse.
    table: PathBuf,
    /// Where the next contents are built; after the swap, what the table held.
    next: PathBuf,
    /// The table's old contents while a swap without exchange is under way.
    old: PathBuf,
    _lock: File,
}

impl Staging {
    /// Locks the staging folder of `table` (one writer per table at a time, across processes) and
    /// clears what a killed write left there, putting back a table caught between two renames.
    pub(super) fn open(table: &Path, staging: PathBuf) -> Result<Self, WarehouseError> {
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        let lock_path = staging.join("lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let staging = Staging {
            table: table.to_owned(),
            next: staging.join("next"),
            old: staging.join("old"),
            _lock: lock,
        };
        if exists(&staging.old)? && !exists(&staging.table)? {
            fs::rename(&staging.old, &staging.table).map_err(io(&staging.table))?;
        }
        remove(&staging.next);
        remove(&staging.old);
        Ok(staging)
    }

    /// The empty folder the new contents go into.
    pub(super) fn next(&self) -> Result<&Path, WarehouseError> {
        fs::create_dir(&self.next).map_err(io(&self.next))?;
        Ok(&self.next)
    }

    /// Makes the built contents the table's: one atomic exchange where the file system offers it,
    /// else two renames (a write killed between them is undone by the next [`Staging::open`]).
    pub(super) fn commit(&self) -> Result<(), WarehouseError> {
        sync_dir(&self.next);
        let dataset = self.table.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dataset).map_err(io(dataset))?;
        if !exists(&self.table)? {
            fs::rename(&self.next, &self.table).map_err(io(&self.table))?;
        } else if let Err(error) = exchange(&self.next, &self.table) {
            if !matches!(error.kind(), ErrorKind::Unsupported | ErrorKind::InvalidInput) {
                return Err(io(&self.table)(error));
            }
            fs::rename(&self.table, &self.old).map_err(io(&self.table))?;
            if let Err(error) = fs::rename(&self.next, &self.table) {
                let _ = fs::rename(&self.old, &self.table);
                return Err(io(&self.table)(error));
            }
        }
        sync_dir(dataset);
        Ok(())
    }
}

impl Drop for Staging {
    /// What the write built and did not commit, or what the table held before it did, goes.
    fn drop(&mut self) {
        remove(&self.next);
        remove(&self.old);
    }
}

/// Swaps two paths in one step.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

fn exists(path: &Path) -> Result<bool, WarehouseError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
        Err(error) => Err(io(path)(error)),
    }
}

/// Removes a folder, or the link that stood for one in warehouses written by dpf 0.1.
fn remove(path: &Path) {
    let _ = fs::remove_dir_all(path).or_else(|_| fs::remove_file(path));
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Removes what dpf 0.1 kept beside a table: `<dataset>/.versions/<table>/` with its old
/// versions, which globs over the warehouse read as rows of their own.
pub(super) fn remove_old_versions(table: &Path) {
    let (Some(dataset), Some(name)) = (table.parent(), table.file_name()) else {
        return;
    };
    let versions = dataset.join(".versions");
    let _ = fs::remove_dir_all(versions.join(name));
    let _ = fs::remove_dir(versions);
}
