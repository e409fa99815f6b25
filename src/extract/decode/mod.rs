//! Response bodies into rows: JSON (records as an array of objects, or columnar as an object of equal-length
//! arrays such as Open-Meteo's `hourly`), NDJSON and CSV. JSON is walked without building a tree of values
//! for the records: each value goes straight into its Arrow column.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

mod scan;
mod seeds;

pub(crate) use self::scan::lookup;

use self::seeds::{CellSeed, KeySeed, RecordSeed, RecordsSeed, Slot};
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

/// A decoded page.
#[derive(Debug)]
pub(crate) struct Page {
    pub records: usize,
}

/// What to take out of each response.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub format: Format,
    pub records: Option<String>,
    pub include: Vec<String>,
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
    for (field, cell) in include {
        builder.fill(&field, first, &cell).map_err(DecodeError::Conflict)?;
    }
    Ok(page)
}

/// The page, and the `include` fields with their values.
type WithIncludes = (Page, Vec<(String, Cell<'static>)>);

/// One pass over the body: the records are decoded into `builder` as they are read, the top-level
/// fields that `include` looks up are kept as raw JSON, and everything else is skipped. (Pagination
/// finds its cursor or link with [`lookup`], before the page is decoded.)
fn json(body: &[u8], shape: &Shape, builder: &mut RowsBuilder) -> Result<WithIncludes, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty("JSON"));
    }
    let first = builder.rows();
    let heads: Vec<&str> = shape
        .include
        .iter()
        .map(|path| path.split('.').next().unwrap_or(path))
        .collect();
    if let Some(path) = shape.records.as_deref()
        && let Some(decoded) = columns_in_parallel(body, path, &heads, shape, builder)
    {
        return decoded;
    }
    let mut slot = Slot {
        path: shape.records.as_deref().unwrap_or("the body"),
        problem: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let walked = match shape.records.as_deref() {
        None => RecordsSeed {
            builder: &mut *builder,
            slot: &mut slot,
        }
        .deserialize(&mut de)
        .map(|()| None),
        Some(path) => TopSeed {
            builder: &mut *builder,
            slot: &mut slot,
            path,
            heads: &heads,
            records_elsewhere: false,
        }
        .deserialize(&mut de)
        .map(Some),
    };
    let top = walked
        .and_then(|top| de.end().map(|()| top))
        .map_err(|error| slot.problem.take().unwrap_or(DecodeError::Json(error)))?;
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
    let page = Page {
        records: builder.rows() - first,
    };
    Ok((page, includes(&kept, shape)?))
}

/// The `include` fields found among the top-level fields `kept`, null where missing.
fn includes(kept: &[(Cow<'_, str>, &RawValue)], shape: &Shape) -> Result<Vec<(String, Cell<'static>)>, DecodeError> {
    let mut include = Vec::with_capacity(shape.include.len());
    for field in &shape.include {
        let cell = match find(kept, field)? {
            Some(raw) => {
                let mut de = serde_json::Deserializer::from_str(raw.get());
                CellSeed.deserialize(&mut de).map_err(DecodeError::Json)?.into_owned()
            }
            None => Cell::Null,
        };
        include.push((field.clone(), cell));
    }
    Ok(include)
}

/// Bodies at least this large have their columns decoded in parallel.
const PARALLEL_BYTES: usize = 1 << 20;

/// The records of a large first page that are an object of columns (Open-Meteo's shape), decoded a
/// column per core. `None` when the body has another shape, is not valid JSON or fails to decode:
/// the one-pass walk then decodes it, or says exactly what is wrong.
fn columns_in_parallel(
    body: &[u8],
    path: &str,
    heads: &[&str],
    shape: &Shape,
    builder: &mut RowsBuilder,
) -> Option<Result<WithIncludes, DecodeError>> {
    if body.len() < PARALLEL_BYTES || !builder.is_empty() || path.contains('.') || heads.contains(&path) {
        return None;
    }
    // The records' fields are found by a vectorised scan, each once: their values are left to the
    // parser on each core.
    let start = scan::Fields::of(body, 0)?.value_start(path)?;
    let mut fields = scan::Fields::of(body, start)?;
    let (mut arrays, mut others) = (Vec::new(), Vec::new());
    for (name, value) in fields.by_ref() {
        let name: String = serde_json::from_slice(&body[name]).ok()?;
        match body[value.start] {
            b'[' => arrays.push((name, value)),
            _ => others.push((name, value)),
        }
    }
    let records = start..fields.end()?;
    if arrays.len() < 2 {
        return None;
    }
    // The rest of the body, with the records left out, is read as the one-pass walk reads it.
    let rest = [&body[..records.start], b"null", &body[records.end..]].concat();
    let mut slot = Slot { path, problem: None };
    let mut de = serde_json::Deserializer::from_slice(&rest);
    let top = TopSeed {
        builder: &mut RowsBuilder::new(),
        slot: &mut slot,
        path,
        heads,
        records_elsewhere: true,
    }
    .deserialize(&mut de)
    .and_then(|top| de.end().map(|()| top))
    .ok()?;
    let page = builder.page();
    let stop = builder.stop_token();
    let decode_column = |(name, value): &(String, std::ops::Range<usize>)| {
        let mut column = match &stop {
            Some(stop) => RowsBuilder::stopping_on(stop.clone()),
            None => RowsBuilder::new(),
        };
        column.start_page(page);
        let mut de = serde_json::Deserializer::from_slice(&body[value.clone()]);
        let seed = seeds::ColumnSeed {
            builder: &mut column,
            name,
            first: 0,
            expected: 0,
        };
        let written = seed.deserialize(&mut de).and_then(|n| de.end().map(|()| n)).ok()?;
        Some((column, written))
    };
    let columns = crate::parallel::map(&arrays, decode_column)
        .into_iter()
        .collect::<Option<Vec<_>>>()?;
    let (first_name, first_len) = (&arrays[0].0, columns[0].1);
    if let Some(((other, _), (_, other_len))) = arrays.iter().zip(&columns).find(|(_, (_, len))| *len != first_len) {
        return Some(Err(DecodeError::Ragged {
            path: path.to_owned(),
            first: first_name.clone(),
            first_len,
            other: other.clone(),
            other_len: *other_len,
        }));
    }
    for (column, _) in columns {
        builder.adopt(column);
    }
    builder.end_columns(0, first_len);
    for (name, value) in others {
        let cell = CellSeed.deserialize(&mut serde_json::Deserializer::from_slice(&body[value]));
        match cell.map(|cell| builder.fill(&name, 0, &cell)) {
            Ok(Ok(())) => {}
            Ok(Err(conflict)) => return Some(Err(DecodeError::Conflict(conflict))),
            Err(error) => return Some(Err(DecodeError::Json(error))),
        }
    }
    let page = Page { records: first_len };
    Some(includes(&top.kept, shape).map(|include| (page, include)))
}

/// Where a body's records were.
enum Records<'de> {
    Missing,
    /// Decoded while the body was read.
    Decoded,
    /// Kept as raw JSON, to decode after the walk: the records path has several steps, or `include`
    /// looks inside the same field.
    Kept(&'de RawValue),
}

/// The top-level object, as [`TopSeed`] leaves it.
struct Top<'de> {
    records: Records<'de>,
    /// The top-level fields that `include` looks in, unparsed.
    kept: Vec<(Cow<'de, str>, &'de RawValue)>,
}

/// Walks the top-level object of a body whose records sit at the dot path `path`.
struct TopSeed<'b, 'p> {
    builder: &'b mut RowsBuilder,
    slot: &'b mut Slot<'p>,
    path: &'p str,
    /// The first steps of the paths that `include` looks up.
    heads: &'b [&'p str],
    /// The records were taken out of the body and decoded already.
    records_elsewhere: bool,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = Top<'de>;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl TopSeed<'_, '_> {
    /// The records are not in the body, whose top-level fields are `fields`.
    fn missing<E: de::Error>(self, fields: &[Cow<'_, str>]) -> E {
        let fields = fields.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
        self.slot.fail(DecodeError::RecordsMissing {
            path: self.path.to_owned(),
            fields: if fields.is_empty() { "none".to_owned() } else { fields },
        })
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = Top<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (head, nested) = self.path.split_once('.').map_or((self.path, false), |(h, _)| (h, true));
        let mut top = Top {
            records: Records::Missing,
            kept: Vec::new(),
        };
        let mut fields = Vec::new();
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let records_here = name == head && matches!(top.records, Records::Missing) && !self.records_elsewhere;
            let wanted = self.heads.contains(&name.as_ref());
            if records_here && !nested && !wanted {
                let seed = RecordsSeed {
                    builder: &mut *self.builder,
                    slot: &mut *self.slot,
                };
                map.next_value_seed(seed)?;
                top.records = Records::Decoded;
            } else if records_here || wanted {
                let raw: &'de RawValue = map.next_value()?;
                if records_here {
                    top.records = Records::Kept(raw);
                }
                top.kept.push((name.clone(), raw));
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
            fields.push(name);
        }
        if nested && matches!(top.records, Records::Kept(_)) {
            top.records = match find(&top.kept, self.path) {
                Ok(Some(records)) => Records::Kept(records),
                _ => Records::Missing,
            };
        }
        match top.records {
            Records::Missing if !self.records_elsewhere => Err(self.missing(&fields)),
            _ => Ok(top),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(self.missing(&[]))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(self.missing(&[]))
    }
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

    fn shape(format: Format, records: Option<&str>, include: &[&str]) -> Shape {
        Shape {
            format,
            records: records.map(str::to_owned),
            include: include.iter().map(|s| (*s).to_owned()).collect(),
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
    fn large_columns_decoded_in_parallel_match_the_one_pass_walk() {
        let rows = 60_000;
        let column = |f: &dyn Fn(usize) -> String| (0..rows).map(f).collect::<Vec<_>>().join(",");
        let hourly = format!(
            r#"{{"time":[{}],"t":[{}],"unit":"C","n":[{}],"tag":[{}]}}"#,
            column(&|i| format!("\"2020-01-{:02}T{:02}:00\"", 1 + i / 24 % 28, i % 24)),
            column(&|i| if i % 7 == 0 {
                "null".into()
            } else {
                format!("{}.5", i % 40)
            }),
            column(&|i| (i % 1000).to_string()),
            column(&|i| format!("\"s\\u00e9{}\"", i % 3)),
        );
        let body = format!(r#"{{"latitude":49.2,"hourly":{hourly},"elevation":5}}"#);
        assert!(body.len() > PARALLEL_BYTES);
        let shape = shape(Format::Json, Some("hourly"), &["latitude", "elevation"]);
        let mut parallel = RowsBuilder::new();
        let page = decode(body.clone().into_bytes(), &shape, &mut parallel).unwrap();
        assert_eq!(page.records, rows);
        let parallel = parallel.finish();
        // A builder that has a page already walks the body in one pass.
        let mut walked = RowsBuilder::new();
        let small = r#"{"latitude":49.2,"hourly":{"time":["2020-01-01T00:00"],"t":[0.5],"unit":"C","n":[1],"tag":["x"]},"elevation":5}"#;
        decode(small.as_bytes(), &shape, &mut walked).unwrap();
        decode(body.clone().into_bytes(), &shape, &mut walked).unwrap();
        let walked = walked.finish();
        assert_eq!(parallel.schema(), walked.schema());
        assert_eq!(parallel, walked.slice(1, rows));
        let names: Vec<_> = parallel.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, ["time", "t", "n", "tag", "unit", "latitude", "elevation"]);

        // Errors are those of the one-pass walk.
        let error = |body: String| {
            decode(body.into_bytes(), &shape, &mut RowsBuilder::new())
                .unwrap_err()
                .to_string()
        };
        let ragged = body.replacen(r#""n":[0,"#, r#""n":["#, 1);
        assert_eq!(
            error(ragged),
            format!(
                "the columns of `hourly` have different lengths: `time` has {rows} values, `n` has {}",
                rows - 1
            )
        );
        let conflict = body.replacen(r#""n":[0,1,"#, r#""n":[0,"one","#, 1);
        assert!(error(conflict).starts_with("field `n` is a string in record 2 of page 0"));
        let broken = body.replacen(r#""elevation":5"#, r#""elevation":5,"#, 1);
        assert!(error(broken).starts_with("the response is not valid JSON"));
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
