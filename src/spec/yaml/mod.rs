//! YAML → JSON with the span of every node, so that any problem found in the JSON (by the schema or
//! by the semantic checks) points back at the exact YAML node, keyed by JSON pointer.

mod scalar;
mod spans;

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span as YamlSpan, Tag};
use serde_json::{Map, Value};

use self::scalar::{Plain, resolve_plain};
pub use self::spans::{NodeSpan, SpanMap, Style, content_offset, pointer_push};
use crate::diagnostic::{Code, Diagnostic};
use crate::spec::source::{SourceFile, Span};

/// Deeper nesting than this is refused: no product needs it, and it bounds recursion.
const MAX_DEPTH: usize = 64;
/// Nodes that aliases may add in all: a few aliases can otherwise stand for billions of nodes…
const MAX_ALIASED_NODES: usize = 100_000;
/// …and text bytes: many aliases of one long text are a bomb too.
const MAX_ALIASED_BYTES: usize = 16 << 20;

/// A loaded YAML document as JSON plus the spans of its nodes.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub spans: SpanMap,
}

/// Loads the single YAML document of a product file. Returns the document (unless the YAML cannot
/// be read at all) and the problems found while loading.
pub fn load(source: &SourceFile) -> (Option<Document>, Vec<Diagnostic>) {
    let mut loader = Loader {
        source,
        events: Parser::new_from_str(source.text()),
        spans: SpanMap::default(),
        anchors: HashMap::new(),
        nodes: 0,
        bytes: 0,
        aliased: (0, 0),
        diagnostics: Vec::new(),
    };
    match loader.stream() {
        Ok(value) => {
            let document = Document {
                value,
                spans: loader.spans,
            };
            (Some(document), loader.diagnostics)
        }
        Err(diagnostic) => {
            loader.diagnostics.push(diagnostic);
            (None, loader.diagnostics)
        }
    }
}

struct Loader<'s> {
    source: &'s SourceFile,
    events: Parser<'s, saphyr_parser::StrInput<'s>>,
    spans: SpanMap,
    /// Each anchor's value and how many nodes and text bytes it holds.
    anchors: HashMap<usize, (Value, usize, usize)>,
    /// Nodes read so far, aliased ones included.
    nodes: usize,
    /// Text bytes (scalars and keys) read so far, aliased ones included.
    bytes: usize,
    /// Nodes and text bytes added by aliases so far.
    aliased: (usize, usize),
    diagnostics: Vec<Diagnostic>,
}

/// A loading step; its error ends loading (at most one per file, so its size does not matter).
type Step<T> = Result<T, Diagnostic>;

#[allow(clippy::result_large_err)]
impl<'s> Loader<'s> {
    fn next(&mut self) -> Step<(Event<'s>, Span)> {
        match self.events.next_event() {
            Some(Ok((event, span))) => Ok((event, self.span(span))),
            Some(Err(error)) => Err(self.syntax_error(&error)),
            None => Err(Diagnostic::new(
                Code::YamlSyntax,
                self.source.text().len()..self.source.text().len(),
                "unexpected end of the YAML stream",
            )),
        }
    }

    fn span(&self, span: YamlSpan) -> Span {
        let start = self.source.offset(span.start.line(), span.start.col());
        let end = self.source.offset(span.end.line(), span.end.col()).max(start);
        start..end
    }

    fn syntax_error(&self, error: &ScanError) -> Diagnostic {
        let marker = error.marker();
        let at = self.source.offset(marker.line(), marker.col());
        let end = self.source.text()[at..]
            .chars()
            .next()
            .map_or(at, |c| at + c.len_utf8());
        Diagnostic::new(Code::YamlSyntax, at..end, format!("invalid YAML: {}", error.info())).label("here")
    }

    fn stream(&mut self) -> Step<Value> {
        let mut value = Value::Null;
        let mut documents = 0;
        loop {
            let (event, span) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart(_) => {
                    documents += 1;
                    let (event, node_span) = self.next()?;
                    if documents == 1 {
                        value = self.node(event, node_span, String::new(), None, 0)?;
                    } else {
                        let marker = if span.is_empty() {
                            node_span.start..node_span.start
                        } else {
                            span.clone()
                        };
                        self.diagnostics.push(
                            Diagnostic::new(
                                Code::UnsupportedYaml,
                                marker,
                                "a product file holds one YAML document; this one has several",
                            )
                            .label("a second document starts here")
                            .help("put each product in its own file"),
                        );
                        return Ok(value);
                    }
                }
                _ => {
                    // Content outside a document cannot happen with a conforming parser.
                    return Err(Diagnostic::new(Code::YamlSyntax, span, "unexpected YAML content"));
                }
            }
        }
        Ok(value)
    }

    fn node(&mut self, event: Event<'s>, span: Span, pointer: String, key: Option<Span>, depth: usize) -> Step<Value> {
        if depth > MAX_DEPTH {
            return Err(Diagnostic::new(
                Code::UnsupportedYaml,
                span,
                format!("the YAML is nested more than {MAX_DEPTH} levels deep"),
            ));
        }
        let first = (self.nodes, self.bytes);
        self.nodes += 1;
        let (value, style, span) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                self.bytes += text.len();
                let value = self.scalar(&text, style, tag.as_deref(), &span)?;
                self.remember(anchor, &value, first);
                (value, scalar_style(style), span)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                let end = loop {
                    let (event, item_span) = self.next()?;
                    if let Event::SequenceEnd = event {
                        break item_span.end;
                    }
                    let item_pointer = pointer_push(&pointer, &items.len().to_string());
                    items.push(self.node(event, item_span, item_pointer, None, depth + 1)?);
                };
                let value = Value::Array(items);
                self.remember(anchor, &value, first);
                (value, Style::Collection, span.start..end.max(span.end))
            }
            Event::MappingStart(anchor, _) => {
                let (map, end) = self.mapping(&pointer, depth)?;
                let value = Value::Object(map);
                self.remember(anchor, &value, first);
                (value, Style::Collection, span.start..end.max(span.end))
            }
            Event::Alias(anchor) => {
                // Counted before the copy is made: a bomb is refused without being built.
                let (nodes, bytes) = self.anchors.get(&anchor).map_or((1, 0), |(_, n, b)| (*n, *b));
                self.aliased = (self.aliased.0 + nodes, self.aliased.1 + bytes);
                self.nodes += nodes - 1;
                self.bytes += bytes;
                if self.aliased.0 > MAX_ALIASED_NODES || self.aliased.1 > MAX_ALIASED_BYTES {
                    return Err(Diagnostic::new(
                        Code::UnsupportedYaml,
                        span,
                        format!(
                            "aliases in this file stand for more than {MAX_ALIASED_NODES} values or {} MB of text in all",
                            MAX_ALIASED_BYTES >> 20
                        ),
                    )
                    .label("this alias passes the limit")
                    .help("aliases that repeat aliases grow exponentially; write the values out or use fewer levels"));
                }
                let value = self
                    .anchors
                    .get(&anchor)
                    .map_or(Value::Null, |(value, ..)| value.clone());
                (value, Style::Collection, span)
            }
            _ => {
                return Err(Diagnostic::new(Code::YamlSyntax, span, "unexpected YAML content"));
            }
        };
        self.spans.insert(
            pointer,
            NodeSpan {
                key,
                value: span,
                style,
            },
        );
        Ok(value)
    }

    /// Reads the entries of a mapping up to its end; returns them and the end offset.
    fn mapping(&mut self, pointer: &str, depth: usize) -> Step<(Map<String, Value>, usize)> {
        let mut map = Map::new();
        let mut key_spans: HashMap<String, Span> = HashMap::new();
        loop {
            let (event, key_span) = self.next()?;
            let key = match event {
                Event::MappingEnd => return Ok((map, key_span.end)),
                Event::Scalar(text, ..) => {
                    self.bytes += text.len();
                    text.into_owned()
                }
                other => {
                    let kind = match other {
                        Event::SequenceStart(..) => "a list",
                        Event::MappingStart(..) => "a mapping",
                        _ => "an alias",
                    };
                    return Err(Diagnostic::new(
                        Code::UnsupportedYaml,
                        key_span,
                        format!("a key must be a plain value, not {kind}"),
                    ));
                }
            };
            let value_pointer = pointer_push(pointer, &key);
            let (event, value_span) = self.next()?;
            let value = self.node(event, value_span, value_pointer, Some(key_span.clone()), depth + 1)?;
            if let Some(first) = key_spans.get(&key) {
                self.diagnostics.push(
                    Diagnostic::new(Code::DuplicateKey, key_span.clone(), format!("duplicate key `{key}`"))
                        .label("repeated here")
                        .related(first.clone(), "first defined here")
                        .help("YAML keeps only the last value; remove one of them"),
                );
            }
            key_spans.insert(key.clone(), key_span);
            map.insert(key, value);
        }
    }

    /// Keeps the value of `anchor`, which began when `first` (nodes, bytes) had been read.
    fn remember(&mut self, anchor: usize, value: &Value, first: (usize, usize)) {
        if anchor > 0 {
            self.anchors
                .insert(anchor, (value.clone(), self.nodes - first.0, self.bytes - first.1));
        }
    }

    /// Resolves a scalar with the YAML 1.2 core schema: quoted scalars are strings unless a core tag
    /// (`!!int`, `!!float`, `!!bool`, `!!null`) says what they are, as other YAML tools read them.
    fn scalar(&mut self, text: &str, style: ScalarStyle, tag: Option<&Tag>, span: &Span) -> Step<Value> {
        let tag = tag
            .filter(|tag| tag.is_yaml_core_schema())
            .map(|tag| tag.suffix.as_str());
        if let Some(kind @ ("int" | "float" | "bool" | "null")) = tag {
            let resolved = match resolve_plain(text.trim()) {
                Plain::Value(value) => Some(value),
                Plain::NonFinite => None,
            };
            let value = match (kind, resolved) {
                ("int", Some(Value::Number(n))) if n.is_i64() || n.is_u64() => Some(Value::Number(n)),
                ("float", Some(Value::Number(n))) => {
                    n.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number)
                }
                ("bool", Some(value @ Value::Bool(_))) | ("null", Some(value @ Value::Null)) => Some(value),
                _ => None,
            };
            return value.ok_or_else(|| {
                Diagnostic::new(
                    Code::UnsupportedYaml,
                    span.clone(),
                    format!("`!!{kind}` on `{text}`, which is not one"),
                )
                .help(format!("write a {kind} after `!!{kind}`, or leave the tag out"))
            });
        }
        if style != ScalarStyle::Plain || tag == Some("str") {
            return Ok(Value::String(text.to_owned()));
        }
        match resolve_plain(text) {
            Plain::Value(value) => Ok(value),
            Plain::NonFinite => Err(Diagnostic::new(
                Code::UnsupportedYaml,
                span.clone(),
                format!("`{text}` is not a finite number"),
            )
            .help("quote it if you mean the text")),
        }
    }
}

fn scalar_style(style: ScalarStyle) -> Style {
    match style {
        ScalarStyle::Plain => Style::Plain,
        ScalarStyle::SingleQuoted => Style::SingleQuoted,
        ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
        ScalarStyle::Literal => Style::Literal,
        ScalarStyle::Folded => Style::Folded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_tags_say_what_a_scalar_is() {
        let (document, problems, _) =
            load_str("a: !!int \"3\"\nb: !!float 2\nc: !!bool 'true'\nd: !!str 4\ne: !!null ''\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            document.unwrap().value,
            json!({"a": 3, "b": 2.0, "c": true, "d": "4", "e": null})
        );
        let (_, problems, _) = load_str("a: !!int \"three\"\n");
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].message.contains("`!!int` on `three`"),
            "{}",
            problems[0].message
        );
    }

    fn load_str(text: &str) -> (Option<Document>, Vec<Diagnostic>, SourceFile) {
        let source = SourceFile::new("p.yaml", text);
        let (document, diagnostics) = load(&source);
        (document, diagnostics, source)
    }

    #[test]
    fn resolves_core_schema_scalars() {
        let (document, diagnostics, _) =
            load_str("a: 1\nb: -2.5\nc: true\nd: ~\ne: \"7\"\nf: 2025-01-01\ng: yes\nh: 0x1F\ni: 1e3\n");
        assert!(diagnostics.is_empty());
        assert_eq!(
            document.unwrap().value,
            json!({"a": 1, "b": -2.5, "c": true, "d": null, "e": "7", "f": "2025-01-01", "g": "yes", "h": 31, "i": 1000.0})
        );
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "name: demo\ntasks:\n  - id: one\n    params: {url: 'http://x'}\n";
        let (document, _, source) = load_str(text);
        let spans = document.unwrap().spans;
        let at = |span: Span| source.line_column(span.start);
        assert_eq!(at(spans.key("/name")), source.line_column(0));
        assert_eq!(
            (
                at(spans.value("/tasks/0/id")).line,
                at(spans.value("/tasks/0/id")).column
            ),
            (3, 9)
        );
        let url = spans.value("/tasks/0/params/url");
        assert_eq!(&text[url.clone()], "'http://x'");
        assert_eq!(spans.key("/tasks/0/params/url").start, text.find("url:").unwrap());
        // Missing nodes fall back to their nearest ancestor.
        assert_eq!(spans.value("/tasks/0/params/missing"), spans.value("/tasks/0/params"));
    }

    #[test]
    fn reports_duplicate_keys_and_syntax_errors() {
        let (_, diagnostics, source) = load_str("name: a\nname: b\n");
        assert_eq!(diagnostics.len(), 1);
        assert_eq!(diagnostics[0].code, Code::DuplicateKey);
        assert_eq!(source.line_column(diagnostics[0].span.start).line, 2);

        let (document, diagnostics, source) = load_str("name: a\ntasks: [one\n");
        assert!(document.is_none());
        assert_eq!(diagnostics[0].code, Code::YamlSyntax);
        assert!(source.line_column(diagnostics[0].span.start).line >= 2);
    }

    #[test]
    fn positions_inside_scalars_map_to_the_file() {
        let text = "a:\n  query: |\n    SELECT 1\n    FROM x\n  folded: >-\n    one\n    two\n  quoted: 'q ${x'\n  plain: a b\n";
        let (document, _, source) = load_str(text);
        let document = document.unwrap();
        let at = |pointer: &str, line, column| {
            let node = document.spans.exact(pointer).unwrap();
            let content = document.value.pointer(pointer).unwrap().as_str().unwrap();
            let offset = content_offset(&source, node, content, line, column);
            (
                source.line_column(offset).line,
                source.line_column(offset).column,
                &text[offset..offset + 1],
            )
        };
        assert_eq!(at("/a/query", 2, 6), (4, 10, "x"));
        assert_eq!(at("/a/folded", 1, 5), (7, 5, "t"));
        assert_eq!(at("/a/quoted", 1, 3), (8, 14, "$"));
        assert_eq!(at("/a/plain", 1, 3), (9, 12, "b"));
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let (document, diagnostics, _) = load_str("a: &x {k: 1}\nb: *x\n");
        assert!(diagnostics.is_empty());
        assert_eq!(document.unwrap().value, json!({"a": {"k": 1}, "b": {"k": 1}}));
    }

    #[test]
    fn an_alias_bomb_is_refused_at_the_alias_that_passes_the_limit() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..=9 {
            let previous = format!("*a{}", level - 1);
            text.push_str(&format!("a{level}: &a{level} [{}]\n", vec![previous; 10].join(", ")));
        }
        let started = std::time::Instant::now();
        let (document, diagnostics, source) = load_str(&text);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(document.is_none());
        assert_eq!(diagnostics[0].code, Code::UnsupportedYaml);
        assert!(
            diagnostics[0].message.contains("more than 100000 values or 16 MB"),
            "{:?}",
            diagnostics[0]
        );
        let at = source.line_column(diagnostics[0].span.start);
        assert_eq!(at.line, 5, "{at:?}");
        // Aliases within the limit still copy their anchor.
        let (document, diagnostics, _) = load_str(&text.lines().take(4).collect::<Vec<_>>().join("\n"));
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(document.unwrap().value["a3"][9][9][9][9], "x");
    }

    #[test]
    fn many_aliases_of_one_long_text_are_refused() {
        let text = format!(
            "a: &a \"{}\"\nb: [{}]\n",
            "x".repeat(1 << 20),
            vec!["*a"; 40].join(", ")
        );
        let (document, diagnostics, _) = load_str(&text);
        assert!(document.is_none());
        assert_eq!(diagnostics[0].code, Code::UnsupportedYaml, "{diagnostics:?}");
    }

    #[test]
    fn carriage_returns_alone_end_lines() {
        let (_, diagnostics, source) = load_str("name: a\rowner: b\rname: c\r");
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let at = source.line_column(diagnostics[0].span.start);
        assert_eq!((at.line, at.column), (3, 1));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        for (depth, code) in [(100, Code::UnsupportedYaml), (100_000, Code::YamlSyntax)] {
            let text = format!("a: {}{}", "[".repeat(depth), "]".repeat(depth));
            let (document, diagnostics, _) = load_str(&text);
            assert!(document.is_none());
            assert_eq!(diagnostics[0].code, code);
        }
    }
}
