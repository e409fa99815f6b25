//! The records of a page that are an array of flat objects (the usual API page), read by one loop over
//! their bytes instead of through the parser's per-value calls. Every record is read before any goes
//! into the builder, which then gets exactly the fields and values, in the same order, that the parser
//! would give it; a page with anything else (nested values, escaped text, very long integers, broken
//! JSON) is left whole to the parser.

use std::borrow::Cow;

use super::array::{Number, number, skip_space, string_end};
use super::top::{outside, page_of, without};
use super::{DecodeError, Shape, WithIncludes};
use crate::table::builder::STOP_EVERY;
use crate::table::{Cell, RowsBuilder};

/// Bodies up to this size are read this way: every value of the page is held (borrowed) before the
/// builder takes them, about twice the body.
const MAX_BYTES: usize = 8 << 20;

/// The records at `start`, the value of top-level field `path`, when they are an array of objects
/// whose values are text without escapes, numbers, booleans and nulls. `None` leaves the page to the
/// parser.
pub(super) fn flat_records(
    body: &[u8],
    (path, start): (&str, usize),
    heads: &[&str],
    shape: &Shape,
    builder: &mut RowsBuilder,
) -> Option<Result<WithIncludes, DecodeError>> {
    if body.len() > MAX_BYTES {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let (fields, end) = read(text, start)?;
    let rest = without(body, start..end);
    let top = outside(&rest, path, heads)?;
    let first = builder.rows();
    let mut fields = fields.into_iter().peekable();
    while fields.peek().is_some() {
        let mut record = builder.record();
        // A record's fields run up to the `None` that ends it.
        for (name, cell) in fields.by_ref().map_while(|field| field) {
            if let Err(conflict) = record.field(name, cell) {
                return Some(Err(DecodeError::Conflict(conflict)));
            }
        }
        record.end();
        if (builder.rows() - first).is_multiple_of(STOP_EVERY) && builder.stopped() {
            return Some(Err(DecodeError::Stopped));
        }
    }
    Some(page_of(builder.rows() - first, &top.kept, shape))
}

/// A field of a record, or (`None`) the end of one.
type Field<'a> = Option<(&'a str, Cell<'a>)>;

/// The fields of every record of the array at `start`, each record ended by `None`, and where the
/// array ends.
fn read(text: &str, start: usize) -> Option<(Vec<Field<'_>>, usize)> {
    let bytes = text.as_bytes();
    let mut fields = Vec::with_capacity(bytes.len() / 16);
    if bytes.get(start) != Some(&b'[') {
        return None;
    }
    let mut i = skip_space(bytes, start + 1);
    if bytes.get(i) == Some(&b']') {
        return Some((fields, i + 1));
    }
    loop {
        if bytes.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_space(bytes, i + 1);
        if bytes.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                if bytes.get(i) != Some(&b'"') {
                    return None;
                }
                let name_end = string_end(bytes, i + 1)?;
                let name = &text[i + 1..name_end];
                i = skip_space(bytes, name_end + 1);
                if bytes.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_space(bytes, i + 1);
                let (cell, end) = value(text, i)?;
                fields.push(Some((name, cell)));
                i = skip_space(bytes, end);
                match bytes.get(i)? {
                    b',' => i = skip_space(bytes, i + 1),
                    b'}' => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        fields.push(None);
        i = skip_space(bytes, i);
        match bytes.get(i)? {
            b',' => i = skip_space(bytes, i + 1),
            b']' => return Some((fields, i + 1)),
            _ => return None,
        }
    }
}

/// The scalar value at `start` as the parser gives it, and where it ends.
fn value(text: &str, start: usize) -> Option<(Cell<'_>, usize)> {
    let bytes = text.as_bytes();
    let word =
        |word: &[u8], cell: Cell<'static>| bytes[start..].starts_with(word).then_some((cell, start + word.len()));
    match bytes.get(start)? {
        b'"' => {
            let end = string_end(bytes, start + 1)?;
            Some((Cell::Str(Cow::Borrowed(&text[start + 1..end])), end + 1))
        }
        b'n' => word(b"null", Cell::Null),
        b't' => word(b"true", Cell::Bool(true)),
        b'f' => word(b"false", Cell::Bool(false)),
        b'-' | b'0'..=b'9' => match number(bytes, start)? {
            (Number::Int(v), end) => Some((Cell::Int(v), end)),
            (Number::Float(v), end) => Some((Cell::Float(v), end)),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::decode::decode;
    use crate::extract::http::Format;

    fn shape(include: &[&str]) -> Shape {
        Shape {
            format: Format::Json,
            records: Some("data".to_owned()),
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            constants: Vec::new(),
            follow: Some("next".to_owned()),
        }
    }

    /// The rows (or the error) the one-pass walk makes of `body`, and those of this loop when it
    /// takes the page.
    fn both(body: &str, include: &[&str]) -> (Result<String, String>, Option<Result<String, String>>) {
        let shape = shape(include);
        let rows = |builder: &mut RowsBuilder, page: crate::extract::decode::Page| {
            let batch = builder.finish();
            format!("{page:?} {:?} {batch:?}", batch.schema())
        };
        // A builder that has rows already walks the body with the parser.
        let mut walked = RowsBuilder::new();
        walked.push_record([("seed", Cell::Null)]).unwrap();
        let parsed = decode(body.as_bytes(), &shape, &mut walked)
            .map(|page| rows(&mut walked, page))
            .map_err(|e| e.to_string());
        let mut looped = RowsBuilder::new();
        looped.push_record([("seed", Cell::Null)]).unwrap();
        let heads: Vec<&str> = include.iter().chain(["next"].iter()).copied().collect();
        let start = crate::extract::decode::scan::Fields::of(body.as_bytes(), 0).and_then(|f| f.value_start("data"));
        let fast = start
            .and_then(|start| flat_records(body.as_bytes(), ("data", start), &heads, &shape, &mut looped))
            .map(|result| {
                result.map_err(|e| e.to_string()).and_then(|(page, include)| {
                    for (field, cell) in &include {
                        looped.fill(field, 1, cell).map_err(|e| e.to_string())?;
                    }
                    Ok(rows(&mut looped, page))
                })
            });
        (parsed, fast)
    }

    #[test]
    fn flat_records_read_as_the_parser_reads_them() {
        for body in [
            r#"{"data":[{"id":1,"name":"a","ok":true,"score":1.5,"at":"2025-01-01T00:00:07Z","none":null}], "next":"/p2"}"#,
            r#" { "page" : 1 , "data" : [ { "id" : -0 , "id" : 2 , "x" : 1 } , { } , {"x": 2.5, "y": "é"} ] , "next" : null } "#,
            r#"{"data":[{"a":1},{"a":2.25},{"b":"2025-01-01T00:00"},{"b":"text"},{"c":false}],"meta":{"n":[1,{"x":2}]}}"#,
            r#"{"data":[],"next":"/p2"}"#,
            r#"{"data":[{"n":123456789012345678,"f":1e-3,"g":12345678901234567.5}],"lat":49.2}"#,
        ] {
            let (parsed, fast) = both(body, &["lat", "meta"]);
            assert_eq!(Some(parsed), fast, "{body}");
        }
    }

    #[test]
    fn type_conflicts_are_the_parser_s() {
        let body = r#"{"data":[{"a":1,"b":"x"},{"a":"one","b":2}]}"#;
        let (parsed, fast) = both(body, &[]);
        assert!(
            parsed.as_ref().unwrap_err().contains("field `a` is a string in record"),
            "{parsed:?}"
        );
        assert_eq!(Some(parsed), fast);
    }

    #[test]
    fn anything_else_is_left_to_the_parser() {
        for body in [
            r#"{"data":[{"a":{"b":1}}]}"#,
            r#"{"data":[{"a":[1]}]}"#,
            r#"{"data":[{"a":"x\"y"}]}"#,
            r#"{"data":[{"a\u0062":1}]}"#,
            r#"{"data":[{"a":12345678901234567890}]}"#,
            r#"{"data":[1,2]}"#,
            r#"{"data":{"a":[1,2]}}"#,
            r#"{"data":[{"a":1},]}"#,
            r#"{"data":[{"a":1}],}"#,
            r#"{"data":[{"a":tru}]}"#,
            r#"{"data":[{"a":1 2}]}"#,
            r#"{"other":1}"#,
            r#"[{"a":1}]"#,
        ] {
            let (_, fast) = both(body, &[]);
            assert!(fast.is_none(), "taken: {body}");
        }
    }
}
