//! One run of a product at a time on a machine: a lock file in the data dir, held for the run and
//! released by the operating system when the process ends, crashes included.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// Held while a run goes on.
#[derive(Debug)]
pub(crate) struct RunLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "another run of `{product}` is still going on (it holds {}); this one does not start",
        path.display()
    )]
    Busy { product: String, path: PathBuf },
    #[error("cannot take the run lock {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the lock of `product` in `data_dir`, or says who has it.
pub(crate) fn acquire(data_dir: &Path, product: &str) -> Result<RunLock, LockError> {
    let dir = data_dir.join("locks");
    let path = dir.join(format!("{product}.lock"));
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(LockError::Busy {
            product: product.to_owned(),
            path,
        }),
        Err(TryLockError::Error(source)) => Err(io(source)),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::acquire(dir.path(), "p").unwrap();
        let error = super::acquire(dir.path(), "p").unwrap_err();
        assert!(
            error.to_string().starts_with("another run of `p` is still going on"),
            "{error}"
        );
        assert!(super::acquire(dir.path(), "q").is_ok());
        drop(first);
        assert!(super::acquire(dir.path(), "p").is_ok());
    }
}
