//! Where each node of a YAML document sits in its file, by JSON pointer, and how a position inside
//! a scalar's content maps to the file.

use std::collections::HashMap;

use crate::spec::source::{SourceFile, Span};

/// How a scalar was written, which decides how positions inside it map to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
    Collection,
}

/// Where one node sits in the file.
#[derive(Debug, Clone)]
pub struct NodeSpan {
    /// The key that introduces the node, when it is a mapping value.
    pub key: Option<Span>,
    pub value: Span,
    pub style: Style,
}

/// The spans of every node of a document, by JSON pointer (`/tasks/0/params/query`).
#[derive(Debug, Default)]
pub struct SpanMap(HashMap<String, NodeSpan>);

impl SpanMap {
    /// The node at `pointer`, or its nearest ancestor that has a span.
    pub fn node(&self, pointer: &str) -> Option<&NodeSpan> {
        let mut pointer = pointer;
        loop {
            if let Some(node) = self.0.get(pointer) {
                return Some(node);
            }
            let (parent, _) = pointer.rsplit_once('/')?;
            pointer = parent;
        }
    }

    /// The span of the value at `pointer` (or its nearest ancestor; the file start if none).
    pub fn value(&self, pointer: &str) -> Span {
        self.node(pointer).map_or(0..0, |node| node.value.clone())
    }

    /// The span of the key introducing `pointer`, else of its value.
    pub fn key(&self, pointer: &str) -> Span {
        self.node(pointer)
            .map_or(0..0, |node| node.key.clone().unwrap_or(node.value.clone()))
    }

    /// Records where the node at `pointer` sits.
    pub(super) fn insert(&mut self, pointer: String, node: NodeSpan) {
        self.0.insert(pointer, node);
    }

    /// The exact node at `pointer`, without falling back to an ancestor.
    pub fn exact(&self, pointer: &str) -> Option<&NodeSpan> {
        self.0.get(pointer)
    }
}

/// Appends one reference token to a JSON pointer.
pub fn pointer_push(pointer: &str, token: &str) -> String {
    let escaped = token.replace('~', "~0").replace('/', "~1");
    format!("{pointer}/{escaped}")
}

/// The byte offset in the file of the 1-based `line` and `column` inside a scalar's `content`,
/// so that an error inside a value (a SQL syntax error, a bad reference) points at the exact
/// character in the file. Exact for literal blocks and single-line scalars; folded and
/// multi-line scalars are mapped by walking their lines.
pub fn content_offset(source: &SourceFile, node: &NodeSpan, content: &str, line: usize, column: usize) -> usize {
    let start = source.line_column(node.value.start);
    let offset = match node.style {
        Style::Literal => source.offset(start.line + line.max(1) - 1, start.column - 1 + column.max(1) - 1),
        _ => {
            let quote = usize::from(matches!(node.style, Style::SingleQuoted | Style::DoubleQuoted));
            let mut remaining: usize = content
                .split('\n')
                .take(line.max(1) - 1)
                .map(|l| l.chars().count() + 1)
                .sum::<usize>()
                + column.max(1)
                - 1;
            let mut file_line = start.line;
            let mut begin = start.column - 1 + quote;
            loop {
                let text = source.line_text(file_line);
                let length = text.chars().count().saturating_sub(begin);
                if remaining <= length || file_line >= source.line_count() {
                    break source.offset(file_line, begin + remaining);
                }
                remaining -= length + 1;
                file_line += 1;
                begin = source.line_text(file_line).chars().take_while(|c| *c == ' ').count();
            }
        }
    };
    offset.clamp(node.value.start, node.value.end.max(node.value.start))
}
