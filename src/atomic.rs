//! Atomic file writes: a temporary file in the same folder, flushed to disk, then renamed over the
//! destination. A reader sees the old file or the new one, never a part; a run killed midway leaves
//! at most a hidden `.tmp` file behind.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically, creating its folder when missing.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |file| file.write_all(bytes))
}

/// Like [`write`], with the content written by `fill`.
pub(crate) fn write_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(folder)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".part")
        .tempfile_in(folder)?;
    fill(temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    Ok(())
}
