//! Response bodies into rows: JSON (records as an array of objects, or columnar as an object of equal-length
//! arrays such as Open-Meteo's `hourly`), NDJSON and CSV. JSON is walked without building a tree of values
//! for the records: each value goes straight into its Arrow column.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

mod seeds;

use self::seeds::{CellSeed, ColumnSeed, KeySeed, RecordSeed, RecordsSeed, array_len};
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

/// A decoded page: how many records it held and the values found at the requested paths.
#[derive(Debug)]
pub(crate) struct Page {
    pub records: usize,
    pub found: Vec<Option<Value>>,
}

/// What to take out of each response.
pub(crate) struct Shape<'a> {
    pub format: Format,
    pub records: Option<&'a str>,
    pub include: &'a [String],
    /// Dot paths whose values pagination needs (a cursor, a next URL).
    pub lookups: &'a [&'a str],
}

/// Decodes `body` into `builder`. The body is dropped as soon as the records are out of it, before
/// `include` fields are copied onto every row, so a large page is not held twice.
pub(crate) fn decode(body: Vec<u8>, shape: &Shape<'_>, builder: &mut RowsBuilder) -> Result<Page, DecodeError> {
    let first = builder.rows();
    let result = match shape.format {
        Format::Json => json(&body, shape, builder),
        Format::Ndjson => ndjson(&body, builder).map(|page| (page, Vec::new())),
        Format::Csv => csv(&body, builder).map(|page| (page, Vec::new())),
    };
    drop(body);
    let (page, include) = result.map_err(|error| match (builder.take_conflict(), error) {
        (Some(conflict), _) => DecodeError::Conflict(conflict),
        (None, _) if builder.stopped() => DecodeError::Stopped,
        (None, error) => error,
    })?;
    for (field, cell) in include {
        builder.fill(&field, first, &cell).map_err(DecodeError::Conflict)?;
    }
    Ok(page)
}

/// The page, and the `include` fields with their values.
type WithIncludes = (Page, Vec<(String, Cell<'static>)>);

fn json(body: &[u8], shape: &Shape<'_>, builder: &mut RowsBuilder) -> Result<WithIncludes, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty("JSON"));
    }
    let root: &RawValue = serde_json::from_slice(body).map_err(DecodeError::Json)?;
    // The top level is read once: a large body is not scanned again for each field looked up.
    let top = if kind(root) == "an object" {
        entries(root).map_err(DecodeError::Json)?
    } else {
        Vec::new()
    };
    let first = builder.rows();
    let records = match shape.records {
        None => root,
        Some(path) => match find(&top, path)? {
            Some(found) => found,
            None => {
                let fields = top.iter().map(|(k, _)| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                return Err(DecodeError::RecordsMissing {
                    path: path.to_owned(),
                    fields: if fields.is_empty() { "none".to_owned() } else { fields },
                });
            }
        },
    };
    let path = shape.records.unwrap_or("the body");
    match kind(records) {
        "an array" => {
            let mut de = serde_json::Deserializer::from_str(records.get());
            RecordsSeed { builder }
                .deserialize(&mut de)
                .map_err(DecodeError::Json)?;
        }
        "an object" => {
            let fields = entries(records).map_err(DecodeError::Json)?;
            if fields.iter().any(|(_, v)| kind(v) == "an array") {
                columns(path, &fields, builder)?;
            } else {
                let mut de = serde_json::Deserializer::from_str(records.get());
                RecordSeed { builder }.deserialize(&mut de).map_err(DecodeError::Json)?;
            }
        }
        found => {
            return Err(DecodeError::NotRecords {
                path: path.to_owned(),
                found,
            });
        }
    }
    let mut include = Vec::with_capacity(shape.include.len());
    for field in shape.include {
        let cell = match find(&top, field)? {
            Some(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                CellSeed.deserialize(&mut de).map_err(DecodeError::Json)?.into_owned()
            }
            None => Cell::Null,
        };
        include.push((field.clone(), cell));
    }
    let found = shape
        .lookups
        .iter()
        .map(|path| {
            find(&top, path)?
                .map(|raw| serde_json::from_str::<Value>(raw.get()).map_err(DecodeError::Json))
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    let page = Page {
        records: builder.rows() - first,
        found,
    };
    Ok((page, include))
}

/// Column-wise records: every array is a column; other fields are copied into each row.
fn columns(path: &str, fields: &[(Cow<'_, str>, &RawValue)], builder: &mut RowsBuilder) -> Result<(), DecodeError> {
    let first = builder.rows();
    let mut length: Option<(&str, usize)> = None;
    for (name, raw) in fields.iter().filter(|(_, v)| kind(v) == "an array") {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        // Text in the array is shorter than the array's JSON: a safe size for the column's text.
        let values = length.map_or_else(|| array_len(raw.get()), |(_, len)| len);
        let written = ColumnSeed {
            builder: &mut *builder,
            name,
            first,
            expected: (values, raw.get().len()),
        }
        .deserialize(&mut de)
        .map_err(DecodeError::Json)?;
        match length {
            None => length = Some((name, written)),
            Some((first_name, first_len)) if first_len != written => {
                return Err(DecodeError::Ragged {
                    path: path.to_owned(),
                    first: first_name.to_owned(),
                    first_len,
                    other: name.to_string(),
                    other_len: written,
                });
            }
            Some(_) => {}
        }
    }
    builder.end_columns(first, length.map_or(0, |(_, len)| len));
    for (name, raw) in fields.iter().filter(|(_, v)| kind(v) != "an array") {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        let cell = CellSeed.deserialize(&mut de).map_err(DecodeError::Json)?;
        builder.fill(name, first, &cell).map_err(DecodeError::Conflict)?;
    }
    Ok(())
}

fn ndjson(body: &[u8], builder: &mut RowsBuilder) -> Result<Page, DecodeError> {
    let first = builder.rows();
    for (number, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if (builder.rows() - first + 1).is_multiple_of(STOP_EVERY) && builder.stopped() {
            return Err(DecodeError::Stopped);
        }
        let mut de = serde_json::Deserializer::from_slice(line);
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
        found: Vec::new(),
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
        found: Vec::new(),
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

/// The value at a dot path (`links.next`) below the top-level fields `top`, when every step is an
/// object that has the key.
fn find<'a>(top: &[(Cow<'a, str>, &'a RawValue)], path: &str) -> Result<Option<&'a RawValue>, DecodeError> {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let Some(&(_, mut at)) = top.iter().find(|(name, _)| name == head) else {
        return Ok(None);
    };
    for key in rest.into_iter().flat_map(|rest| rest.split('.')) {
        if kind(at) != "an object" {
            return Ok(None);
        }
        let fields = entries(at).map_err(DecodeError::Json)?;
        match fields.into_iter().find(|(name, _)| name == key) {
            Some((_, value)) => at = value,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
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

    fn shape<'a>(format: Format, records: Option<&'a str>, include: &'a [String], lookups: &'a [&'a str]) -> Shape<'a> {
        Shape {
            format,
            records,
            include,
            lookups,
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
            let page = decode(body.clone().into_bytes(), &shape(format, path, &[], &[]), &mut builder).unwrap();
            assert_eq!(page.records, 100_000);
            stop.cancel();
            let mut builder = RowsBuilder::stopping_on(stop);
            let error = decode(body.into_bytes(), &shape(format, path, &[], &[]), &mut builder).unwrap_err();
            assert!(matches!(error, DecodeError::Stopped), "{format:?} {path:?}: {error}");
        }
    }

    #[test]
    fn open_meteo_columns_become_rows() {
        let body = br#"{"latitude":49.28,"longitude":-123.12,"hourly_units":{"time":"iso8601"},
            "hourly":{"time":["2025-01-01T00:00","2025-01-01T01:00"],"temperature_2m":[3.1,2.9],"precipitation":[0,0.2]}}"#;
        let include = ["latitude".to_owned()];
        let mut builder = RowsBuilder::new();
        let page = decode(
            body.to_vec(),
            &shape(Format::Json, Some("hourly"), &include, &[]),
            &mut builder,
        )
        .unwrap();
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
    fn records_cursor_and_errors() {
        let body = br#"{"data":[{"id":1,"tags":["a"]},{"id":2,"note":"x"}],"meta":{"next":"abc"}}"#;
        let mut builder = RowsBuilder::new();
        let page = decode(
            body.to_vec(),
            &shape(Format::Json, Some("data"), &[], &["meta.next", "meta.none"]),
            &mut builder,
        )
        .unwrap();
        assert_eq!(page.records, 2);
        assert_eq!(page.found, vec![Some(Value::from("abc")), None]);
        let batch = builder.finish();
        assert_eq!(batch.num_columns(), 3);

        let mut builder = RowsBuilder::new();
        let error = decode(
            br#"{"items":[]}"#.to_vec(),
            &shape(Format::Json, Some("data"), &[], &[]),
            &mut builder,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the response has no `data` (the `records` param); its top-level fields are: `items`"
        );
        let error = decode(
            b"{\"data\": [1,".to_vec(),
            &shape(Format::Json, Some("data"), &[], &[]),
            &mut builder,
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("the response is not valid JSON"),
            "{error}"
        );
        let error = decode(b"  ".to_vec(), &shape(Format::Json, None, &[], &[]), &mut builder).unwrap_err();
        assert!(matches!(error, DecodeError::Empty(_)));
        let error = decode(
            br#"[{"a":1},{"a":"x"}]"#.to_vec(),
            &shape(Format::Json, None, &[], &[]),
            &mut builder,
        )
        .unwrap_err();
        assert!(matches!(error, DecodeError::Conflict(_)), "{error}");
        let error = decode(
            br#"{"h":{"a":[1,2],"b":[1]}}"#.to_vec(),
            &shape(Format::Json, Some("h"), &[], &[]),
            &mut builder,
        )
        .unwrap_err();
        assert!(matches!(error, DecodeError::Ragged { .. }), "{error}");
    }

    #[test]
    fn array_lengths_are_counted_without_parsing() {
        assert_eq!(array_len("[]"), 0);
        assert_eq!(array_len(" [ ] "), 0);
        assert_eq!(array_len("[1]"), 1);
        assert_eq!(array_len(r#"["a,b", "c\\\"]", {"x": [1, 2]}, [3, 4], null]"#), 5);
    }

    #[test]
    fn ndjson_and_csv() {
        let mut builder = RowsBuilder::new();
        let page = decode(
            b"{\"a\":1}\n\n{\"a\":2}\n".to_vec(),
            &shape(Format::Ndjson, None, &[], &[]),
            &mut builder,
        )
        .unwrap();
        assert_eq!(page.records, 2);
        let error = decode(
            b"{\"a\":1}\n{oops}\n".to_vec(),
            &shape(Format::Ndjson, None, &[], &[]),
            &mut builder,
        )
        .unwrap_err();
        assert!(
            error.to_string().starts_with("line 2 of the NDJSON response"),
            "{error}"
        );

        let mut builder = RowsBuilder::new();
        let page = decode(
            b"id,zip,amount\n1,02134,9.5\n2,,10\n".to_vec(),
            &shape(Format::Csv, None, &[], &[]),
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
