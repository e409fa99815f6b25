//! Source text of a product file and the mapping between byte offsets and line:column positions.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A byte range in a source file.
pub type Span = Range<usize>;

/// A 1-based line and column (the column counts characters, as editors do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct LineColumn {
    pub line: usize,
    pub column: usize,
}

/// A product file's path and text, with a line index for position lookups.
#[derive(Debug, Clone)]
pub struct SourceFile {
    path: PathBuf,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        // `\n`, `\r\n` and a lone `\r` each end a line, as in YAML.
        let bytes = text.as_bytes();
        let line_starts = std::iter::once(0)
            .chain(bytes.iter().enumerate().filter_map(|(i, &byte)| {
                let ends = byte == b'\n' || (byte == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
                ends.then_some(i + 1)
            }))
            .collect();
        Self {
            path: path.into(),
            text,
            line_starts,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The position of a byte offset (clamped to the text).
    pub fn line_column(&self, offset: usize) -> LineColumn {
        let offset = self.floor_char_boundary(offset.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let column = self.text[self.line_starts[line]..offset].chars().count() + 1;
        LineColumn { line: line + 1, column }
    }

    /// The byte offset of a 1-based line and a 0-based character column (clamped to the line).
    pub fn offset(&self, line: usize, char_column: usize) -> usize {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let line_text = self.line_text(line);
        let within = line_text
            .char_indices()
            .nth(char_column)
            .map_or(line_text.len(), |(i, _)| i);
        start + within
    }

    /// The text of a 1-based line, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
            return "";
        };
        let end = self.line_starts.get(line).map_or(self.text.len(), |&next| next - 1);
        self.text[start..end].trim_end_matches('\r')
    }

    /// The text with each lone `\r` turned into `\n`, byte for byte, so that tools which only
    /// know `\n` (the snippet renderer) see the same lines at the same offsets.
    pub fn text_with_newlines(&self) -> std::borrow::Cow<'_, str> {
        let bytes = self.text.as_bytes();
        let lone = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
        if !(0..bytes.len()).any(lone) {
            return std::borrow::Cow::Borrowed(&self.text);
        }
        let replaced: Vec<u8> = (0..bytes.len())
            .map(|i| if lone(i) { b'\n' } else { bytes[i] })
            .collect();
        std::borrow::Cow::Owned(String::from_utf8(replaced).expect("only ASCII bytes were replaced"))
    }

    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    fn floor_char_boundary(&self, mut offset: usize) -> usize {
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let file = SourceFile::new("p.yaml", "name: x\ntasks:\n  - id: é1\n");
        assert_eq!(file.line_column(0), LineColumn { line: 1, column: 1 });
        assert_eq!(file.line_column(8), LineColumn { line: 2, column: 1 });
        let offset = file.offset(3, 9);
        assert_eq!(&file.text()[offset..offset + 1], "1");
        assert_eq!(file.line_column(offset), LineColumn { line: 3, column: 10 });
        assert_eq!(file.line_text(2), "tasks:");
        assert_eq!(file.line_text(9), "");
    }

    #[test]
    fn offsets_past_the_end_are_clamped() {
        let file = SourceFile::new("p.yaml", "a: 1");
        assert_eq!(file.offset(7, 0), 4);
        assert_eq!(file.offset(1, 99), 4);
        assert_eq!(file.line_column(99), LineColumn { line: 1, column: 5 });
    }

    #[test]
    fn every_line_break_ends_a_line() {
        let file = SourceFile::new("p.yaml", "a: 1\rb: 2\r\nc: 3\nd: 4");
        assert_eq!(file.line_count(), 4);
        assert_eq!(
            (1..=4).map(|line| file.line_text(line)).collect::<Vec<_>>(),
            ["a: 1", "b: 2", "c: 3", "d: 4"]
        );
        assert_eq!(file.line_column(file.offset(4, 3)), LineColumn { line: 4, column: 4 });
        assert_eq!(file.line_column(5), LineColumn { line: 2, column: 1 });
        assert_eq!(file.text_with_newlines(), "a: 1\nb: 2\r\nc: 3\nd: 4");
    }
}
