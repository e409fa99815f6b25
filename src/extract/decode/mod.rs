//! Response bodies into rows: JSON (records as an array of objects, or columnar as an object of equal-length
//! arrays such as Open-Meteo's `hourly`), NDJSON and CSV. JSON is walked without building a tree of values
//! for the records: each value goes straight into its Arrow column.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::de::{SliceRead, StrRead};
use serde_json::value::RawValue;

mod array;
mod columns;
mod records;
mod scan;
mod seeds;
mod top;

pub(crate) use self::scan::lookup_near_end;

use self::columns::columns_in_parallel;
use self::seeds::{CellSeed, KeySeed, RecordSeed, RecordsSeed, Slot};
use self::top::{Records, page_of, walk};
use super::http::Format;
use crate::table::builder::STOP_EVERY;
use crate::table::{Cell, RowsBuilder, TypeConflict};

/// What a body could not give.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("the response body is empty; expected {0}")]
    Empty(&'static str),
    #[error("{}", json_message(.0))]
    Json(serde_json::Error),
    #[error("the response is not valid CSV: {0}")]
    Csv(csv::Error),
    #[error("line {line} of the NDJSON response: {error}")]
    Ndjson { line: usize, error: serde_json::Error },
    #[error("the response has no `{path}` (the `records` param); its top-level fields are: {fields}")]
    RecordsMissing { path: String, fields: String },
    #[error("`{path}` in the response is {found}, not an array of records or an object of columns")]
    NotRecords { path: String, found: &'static str },
    #[error(
        "the columns of `{path}` have different lengths: `{first}` has {first_len} values, `{other}` has {other_len}"
    )]
    Ragged {
        path: String,
        first: String,
        first_len: usize,
        other: String,
        other_len: usize,
    },
    #[error("{0}")]
    Conflict(TypeConflict),
    #[error("stopped while decoding the response")]
    Stopped,
}

fn json_message(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Data => {
            format!("the response does not hold records of the expected shape: {error}")
        }
        _ => format!("the response is not valid JSON: {error}"),
    }
}

/// A JSON value as a row's value, as a body's value would be: nested values keep their JSON text.
pub(crate) fn cell_of(value: &serde_json::Value) -> Cell<'static> {
    CellSeed.deserialize(value).map_or(Cell::Null, Cell::into_owned)
}

/// A decoded page.
#[derive(Debug)]
pub(crate) struct Page {
    pub records: usize,
    /// The value at [`Shape::follow`], when the body has one there.
    pub follow: Option<serde_json::Value>,
}

/// What to take out of each response.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub format: Format,
    pub records: Option<String>,
    pub include: Vec<String>,
    /// Fields set on every row with one value each (a fan-out's `include_item`).
    pub constants: Vec<(String, Cell<'static>)>,
    /// The dot path of a JSON body's value that leads to the next page (a cursor, a URL), read in
    /// the same pass as the records.
    pub follow: Option<String>,
}

/// Decodes `body` into `builder`. The body is dropped as soon as the records are out of it, before
/// `include` fields are copied onto every row, so a large page is not held twice.
pub(crate) fn decode(body: impl AsRef<[u8]>, shape: &Shape, builder: &mut RowsBuilder) -> Result<Page, DecodeError> {
    let first = builder.rows();
    let result = match shape.format {
        Format::Json => json(body.as_ref(), shape, builder),
        Format::Ndjson => ndjson(body.as_ref(), builder).map(|page| (page, Vec::new())),
        Format::Csv => csv(body.as_ref(), builder).map(|page| (page, Vec::new())),
    };
    drop(body);
    let (page, include) = result.map_err(|error| match (builder.take_conflict(), error) {
        (Some(conflict), _) => DecodeError::Conflict(conflict),
        (None, _) if builder.stopped() => DecodeError::Stopped,
        (None, error) => error,
    })?;
    for (field, cell) in include.iter().chain(&shape.constants) {
        builder.fill(field, first, cell).map_err(DecodeError::Conflict)?;
    }
    Ok(page)
}

/// The page, and the `include` fields with their values.
pub(super) type WithIncludes = (Page, Vec<(String, Cell<'static>)>);

/// One pass over the body: the records are decoded into `builder` as they are read, the top-level
/// fields that `include` and `follow` look in are kept as raw JSON, and everything else is skipped.
fn json(body: &[u8], shape: &Shape, builder: &mut RowsBuilder) -> Result<WithIncludes, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty("JSON"));
    }
    let first = builder.rows();
    let heads: Vec<&str> = shape
        .include
        .iter()
        .chain(&shape.follow)
        .map(|path| path.split('.').next().unwrap_or(path))
        .collect();
    // Records at a top-level field, found by a scan, go to a fast path when their shape allows.
    if let Some(path) = (shape.records.as_deref()).filter(|path| !path.contains('.') && !heads.contains(path))
        && let Some(start) = scan::Fields::of(body, 0).and_then(|fields| fields.value_start(path))
        && let Some(decoded) = columns_in_parallel(body, (path, start), &heads, shape, builder)
            .or_else(|| records::flat_records(body, (path, start), &heads, shape, builder))
    {
        return decoded;
    }
    let mut slot = Slot {
        path: shape.records.as_deref().unwrap_or("the body"),
        problem: None,
    };
    let records = shape.records.as_deref();
    // A body that is UTF-8 throughout is checked once, not string by string.
    let walked = match std::str::from_utf8(body) {
        Ok(text) => walk(StrRead::new(text), records, builder, &mut slot, &heads),
        Err(_) => walk(SliceRead::new(body), records, builder, &mut slot, &heads),
    };
    let top = walked.map_err(|error| slot.problem.take().unwrap_or(DecodeError::Json(error)))?;
    let kept = match top {
        Some(top) => {
            if let Records::Kept(raw) = top.records {
                RecordsSeed {
                    builder: &mut *builder,
                    slot: &mut slot,
                }
                .deserialize(&mut serde_json::Deserializer::from_str(raw.get()))
                .map_err(|error| slot.problem.take().unwrap_or(DecodeError::Json(error)))?;
            }
            top.kept
        }
        None if heads.is_empty() => Vec::new(),
        // The records are the whole body and `include` names its fields: read it again for them.
        None => {
            let root: &RawValue = serde_json::from_slice(body).map_err(DecodeError::Json)?;
            if kind(root) == "an object" {
                entries(root).map_err(DecodeError::Json)?
            } else {
                Vec::new()
            }
        }
    };
    page_of(builder.rows() - first, &kept, shape)
}

fn ndjson(body: &[u8], builder: &mut RowsBuilder) -> Result<Page, DecodeError> {
    match std::str::from_utf8(body) {
        // A body that is UTF-8 throughout is checked once, not string by string.
        Ok(text) => ndjson_lines(text.split('\n').map(|l| (l.as_bytes(), StrRead::new(l))), builder),
        Err(_) => ndjson_lines(body.split(|&b| b == b'\n').map(|l| (l, SliceRead::new(l))), builder),
    }
}

fn ndjson_lines<'de, R: serde_json::de::Read<'de>>(
    lines: impl Iterator<Item = (&'de [u8], R)>,
    builder: &mut RowsBuilder,
) -> Result<Page, DecodeError> {
    let first = builder.rows();
    for (number, (line, read)) in lines.enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if (builder.rows() - first + 1).is_multiple_of(STOP_EVERY) && builder.stopped() {
            return Err(DecodeError::Stopped);
        }
        let mut de = serde_json::Deserializer::new(read);
        RecordSeed { builder: &mut *builder }
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|error| DecodeError::Ndjson {
                line: number + 1,
                error,
            })?;
    }
    Ok(Page {
        records: builder.rows() - first,
        follow: None,
    })
}

fn csv(body: &[u8], builder: &mut RowsBuilder) -> Result<Page, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty("CSV with a header line"));
    }
    let first = builder.rows();
    let mut reader = csv::ReaderBuilder::new().from_reader(body);
    let headers = reader.headers().map_err(DecodeError::Csv)?.clone();
    let mut record = csv::StringRecord::new();
    for n in 1.. {
        if !reader.read_record(&mut record).map_err(DecodeError::Csv)? {
            break;
        }
        if n % STOP_EVERY == 0 && builder.stopped() {
            return Err(DecodeError::Stopped);
        }
        builder
            .push_record(
                headers
                    .iter()
                    .zip(record.iter())
                    .map(|(name, text)| (name, Cell::from_text(text))),
            )
            .map_err(DecodeError::Conflict)?;
    }
    Ok(Page {
        records: builder.rows() - first,
        follow: None,
    })
}

fn kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// The fields of a JSON object in order, values left unparsed.
fn entries(raw: &RawValue) -> Result<Vec<(Cow<'_, str>, &RawValue)>, serde_json::Error> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(key) = map.next_key_seed(KeySeed)? {
                out.push((key, map.next_value::<&RawValue>()?));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_map(Entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(format: Format, records: Option<&str>, include: &[&str]) -> Shape {
        Shape {
            format,
            records: records.map(str::to_owned),
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            constants: Vec::new(),
            follow: None,
        }
    }

    #[test]
    fn a_stop_ends_decoding_in_every_format() {
        let records: String = (0..100_000)
            .map(|i| format!("{{\"id\":{i}}}"))
            .collect::<Vec<_>>()
            .join(",");
        let columns = format!(
            "{{\"hourly\":{{\"id\":[{}]}}}}",
            (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
        );
        let ndjson = records.replace(",{", "\n{");
        let csv = format!(
            "id\n{}\n",
            (0..100_000).map(|i| i.to_string()).collect::<Vec<_>>().join("\n")
        );
        let bodies = [
            (Format::Json, None, format!("[{records}]")),
            (Format::Json, Some("hourly"), columns),
            (Format::Ndjson, None, ndjson),
            (Format::Csv, None, csv),
        ];
        for (format, path, body) in bodies {
            let stop = tokio_util::sync::CancellationToken::new();
            let mut builder = RowsBuilder::stopping_on(stop.clone());
            let page = decode(body.clone().into_bytes(), &shape(format, path, &[]), &mut builder).unwrap();
            assert_eq!(page.records, 100_000);
            stop.cancel();
            let mut builder = RowsBuilder::stopping_on(stop);
            let error = decode(body.into_bytes(), &shape(format, path, &[]), &mut builder).unwrap_err();
            assert!(matches!(error, DecodeError::Stopped), "{format:?} {path:?}: {error}");
        }
    }

    #[test]
    fn open_meteo_columns_become_rows() {
        let body = br#"{"latitude":49.28,"longitude":-123.12,"hourly_units":{"time":"iso8601"},
            "hourly":{"time":["2025-01-01T00:00","2025-01-01T01:00"],"temperature_2m":[3.1,2.9],"precipitation":[0,0.2]}}"#;
        let include = ["latitude"];
        let mut builder = RowsBuilder::new();
        let page = decode(body, &shape(Format::Json, Some("hourly"), &include), &mut builder).unwrap();
        assert_eq!(page.records, 2);
        let batch = builder.finish();
        let names: Vec<_> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["time", "temperature_2m", "precipitation", "latitude"]);
        assert_eq!(
            batch.schema().field(2).data_type(),
            &datafusion::arrow::datatypes::DataType::Float64
        );
    }

    #[test]
    fn records_and_errors() {
        let body = br#"{"data":[{"id":1,"tags":["a"]},{"id":2,"note":"x"}],"meta":{"next":"abc"}}"#;
        let mut builder = RowsBuilder::new();
        let page = decode(body, &shape(Format::Json, Some("data"), &[]), &mut builder).unwrap();
        assert_eq!(page.records, 2);
        let batch = builder.finish();
        assert_eq!(batch.num_columns(), 3);

        let mut builder = RowsBuilder::new();
        let error = decode(
            br#"{"items":[]}"#,
            &shape(Format::Json, Some("data"), &[]),
            &mut builder,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the response has no `data` (the `records` param); its top-level fields are: `items`"
        );
        let error = decode(
            b"{\"data\": [{\"a\": 1},",
            &shape(Format::Json, Some("data"), &[]),
            &mut builder,
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("the response is not valid JSON"),
            "{error}"
        );
        let error = decode(b"  ", &shape(Format::Json, None, &[]), &mut builder).unwrap_err();
        assert!(matches!(error, DecodeError::Empty(_)));
        let error = decode(br#"[{"a":1},{"a":"x"}]"#, &shape(Format::Json, None, &[]), &mut builder).unwrap_err();
        assert!(matches!(error, DecodeError::Conflict(_)), "{error}");
        let error = decode(
            br#"{"h":{"a":[1,2],"b":[1]}}"#,
            &shape(Format::Json, Some("h"), &[]),
            &mut builder,
        )
        .unwrap_err();
        assert!(matches!(error, DecodeError::Ragged { .. }), "{error}");
    }

    #[test]
    fn records_wherever_they_sit_in_one_pass() {
        let names = |batch: &datafusion::arrow::array::RecordBatch| -> Vec<String> {
            batch.schema().fields().iter().map(|f| f.name().clone()).collect()
        };
        // Records after the fields that `include` copies, nested two deep, and looked into by `include`.
        let body = br#"{"source":{"id":"s1","region":"eu"},"result":{"rows":[{"a":1},{"a":2}],"n":2}}"#;
        for (records, include, expected) in [
            ("result.rows", vec!["source.id"], vec!["a", "source.id"]),
            ("result", vec!["result.n"], vec!["rows", "n", "result.n"]),
            (
                "source",
                vec!["result.n", "source.region"],
                vec!["id", "region", "result.n", "source.region"],
            ),
        ] {
            let mut builder = RowsBuilder::new();
            let page = decode(body, &shape(Format::Json, Some(records), &include), &mut builder).unwrap();
            let batch = builder.finish();
            assert_eq!(names(&batch), expected, "{records}");
            assert_eq!(page.records, batch.num_rows());
        }
        // A columnar object whose scalar fields come first, and a single record.
        let mut builder = RowsBuilder::new();
        let body = br#"{"h":{"unit":"C","t":[1.5,2.5],"nested":{"x":1},"n":[1,2]}}"#;
        decode(body, &shape(Format::Json, Some("h"), &[]), &mut builder).unwrap();
        let batch = builder.finish();
        assert_eq!(names(&batch), ["t", "n", "unit", "nested"]);
        assert_eq!(batch.num_rows(), 2);
        let mut builder = RowsBuilder::new();
        let page = decode(
            br#"{"id":7,"tags":null}"#,
            &shape(Format::Json, None, &["id"]),
            &mut builder,
        )
        .unwrap();
        assert_eq!(page.records, 1);
        assert_eq!(names(&builder.finish()), ["id", "tags"]);
        // Where the records are not, or are not records; trailing text after the body.
        let error = |body: &[u8], records: Option<&str>| {
            decode(body, &shape(Format::Json, records, &[]), &mut RowsBuilder::new())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error(br#"[{"a":1}]"#, Some("data")),
            "the response has no `data` (the `records` param); its top-level fields are: none"
        );
        assert_eq!(
            error(br#"{"r":{"x":1}}"#, Some("r.rows")),
            "the response has no `r.rows` (the `records` param); its top-level fields are: `r`"
        );
        assert_eq!(
            error(br#"{"data":"soon"}"#, Some("data")),
            "`data` in the response is a string, not an array of records or an object of columns"
        );
        assert_eq!(
            error(b"42", None),
            "`the body` in the response is a number, not an array of records or an object of columns"
        );
        assert!(error(br#"{"data":[]} x"#, Some("data")).starts_with("the response is not valid JSON"));
        assert!(error(br#"{"data":[{"a":1}],"next":"#, Some("data")).starts_with("the response is not valid JSON"));
    }

    #[test]
    fn ndjson_and_csv() {
        let mut builder = RowsBuilder::new();
        let page = decode(
            b"{\"a\":1}\n\n{\"a\":2}\n",
            &shape(Format::Ndjson, None, &[]),
            &mut builder,
        )
        .unwrap();
        assert_eq!(page.records, 2);
        let error = decode(b"{\"a\":1}\n{oops}\n", &shape(Format::Ndjson, None, &[]), &mut builder).unwrap_err();
        assert!(
            error.to_string().starts_with("line 2 of the NDJSON response"),
            "{error}"
        );

        let mut builder = RowsBuilder::new();
        let page = decode(
            b"id,zip,amount\n1,02134,9.5\n2,,10\n",
            &shape(Format::Csv, None, &[]),
            &mut builder,
        )
        .unwrap();
        assert_eq!(page.records, 2);
        let batch = builder.finish();
        assert_eq!(
            batch.schema().field(1).data_type(),
            &datafusion::arrow::datatypes::DataType::Utf8
        );
        assert_eq!(
            batch.schema().field(2).data_type(),
            &datafusion::arrow::datatypes::DataType::Float64
        );
    }
}
