//! A warehouse table's versions: folders `<dataset>/.versions/<table>/vNNNNNN`, the link that makes
//! one current, and the clean-up of the ones no reader needs.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::error::{WarehouseError, io};

/// The version folder the table's link points at, if the table exists.
pub(super) fn current_version(link: &Path) -> Result<Option<PathBuf>, WarehouseError> {
    match fs::symlink_metadata(link) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io(link)(error)),
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(link).map_err(io(link))?;
            Ok(Some(link.parent().expect("a table has a dataset").join(target)))
        }
        Ok(_) => Err(WarehouseError::NotATable {
            path: link.display().to_string(),
        }),
    }
}

pub(super) fn next_version(versions: &Path) -> Result<u64, WarehouseError> {
    let highest = fs::read_dir(versions)
        .map_err(io(versions))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str()?.strip_prefix('v')?.parse::<u64>().ok())
        .max();
    Ok(highest.map_or(1, |n| n + 1))
}

pub(super) fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Points `link` at `version` with one rename, so readers switch from one whole version to the next.
pub(super) fn swap(link: &Path, version: &Path) -> Result<(), WarehouseError> {
    let dataset = link.parent().expect("a table has a dataset");
    let relative = version
        .strip_prefix(dataset)
        .expect("versions live in the dataset folder");
    let temp = dataset.join(format!(
        ".{}.link-{}",
        link.file_name().expect("tables have names").to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(relative, &temp).map_err(io(&temp))?;
    fs::rename(&temp, link).map_err(io(link))?;
    sync_dir(dataset);
    Ok(())
}

/// A version folder being written: removed when dropped unless the write made it current.
pub(super) struct Unfinished<'a>(pub(super) Option<&'a Path>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(version) = self.0 {
            let _ = fs::remove_dir_all(version);
        }
    }
}

/// The number of a version folder (`v000012` → 12).
pub(super) fn version_number(version: &Path) -> Option<u64> {
    version.file_name()?.to_str()?.strip_prefix('v')?.parse().ok()
}

/// Removes the version folders whose number `unwanted` picks. After a write, those before the
/// previous version go: the previous one stays, so a reader that listed its files just before the
/// swap can still open them.
pub(super) fn remove_versions(versions: &Path, unwanted: impl Fn(u64) -> bool) {
    let Ok(entries) = fs::read_dir(versions) else { return };
    for entry in entries.filter_map(Result::ok) {
        if version_number(&entry.path()).is_some_and(&unwanted) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
