//! A file that is handed to the disk while it is written. The kernel would otherwise keep every
//! written page in memory until the `fsync` before the commit, which then waits for all of them
//! (about a millisecond per MiB here); started a MiB at a time as the writer goes on, that wait
//! shrinks to the last MiB.

use std::fs::File;
use std::io::{self, Write};

/// How much is gathered before it is written and its writeback started.
const STEP: usize = 1 << 20;

/// A [`File`] written a MiB (or a larger write) at a time, the writeback of each started as soon as
/// it is written.
pub(super) struct Writeback {
    file: File,
    pending: Vec<u8>,
    /// Bytes written to the file so far.
    written: u64,
}

impl Writeback {
    pub(super) fn new(file: File) -> Self {
        Writeback {
            file,
            pending: Vec::with_capacity(STEP),
            written: 0,
        }
    }

    /// Writes what is left and waits until all of it is on disk.
    pub(super) fn sync(mut self) -> io::Result<File> {
        self.flush()?;
        self.file.sync_all()?;
        Ok(self.file)
    }

    /// Writes `bytes` to the file and starts their writeback.
    fn hand_over(file: &mut File, written: &mut u64, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)?;
        start_writeback(file, *written, bytes.len());
        *written += bytes.len() as u64;
        Ok(())
    }
}

impl Write for Writeback {
    /// Small writes are gathered; one that would fill the step goes out with what was gathered,
    /// without being copied.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.pending.len() + bytes.len() < STEP {
            self.pending.extend_from_slice(bytes);
        } else {
            self.flush()?;
            Self::hand_over(&mut self.file, &mut self.written, bytes)?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            Self::hand_over(&mut self.file, &mut self.written, &self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }
}

/// Starts writing `len` bytes of `file` from `offset` to disk, without waiting. Only a head start:
/// the `fsync` that follows is what makes them durable, so a refusal changes nothing.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and the call only reads
    // its arguments.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_: &File, _: u64, _: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_reaches_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        let mut writer = Writeback::new(File::create(&path).unwrap());
        let mut expected = Vec::new();
        // Small writes, one larger than a step, and a tail shorter than one.
        for (k, size) in [3, 8192, STEP + 17, 1000, STEP - 1, 5].into_iter().enumerate() {
            let piece: Vec<u8> = (0..size).map(|i| (i * 31 + k) as u8).collect();
            writer.write_all(&piece).unwrap();
            expected.extend(piece);
        }
        let file = writer.sync().unwrap();
        assert_eq!(file.metadata().unwrap().len(), expected.len() as u64);
        assert!(std::fs::read(&path).unwrap() == expected);
    }
}
