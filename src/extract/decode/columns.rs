//! A large first page whose records are an object of columns (Open-Meteo's `hourly`), decoded a column
//! per core: a vectorised scan finds each column's array, and each core parses whole columns.

use serde::de::DeserializeSeed;

use super::seeds::{CellSeed, ColumnSeed};
use super::top::{outside, page_of, without};
use super::{DecodeError, Shape, WithIncludes, array, scan};
use crate::table::RowsBuilder;

/// Bodies at least this large have their columns decoded in parallel.
const PARALLEL_BYTES: usize = 1 << 20;

/// The records of a large first page that are an object of columns (Open-Meteo's shape) at `start`,
/// the value of top-level field `path`, decoded a column per core. `None` when the body has another
/// shape, is not valid JSON or fails to decode: the one-pass walk then decodes it, or says exactly
/// what is wrong.
pub(super) fn columns_in_parallel(
    body: &[u8],
    (path, start): (&str, usize),
    heads: &[&str],
    shape: &Shape,
    builder: &mut RowsBuilder,
) -> Option<Result<WithIncludes, DecodeError>> {
    if body.len() < PARALLEL_BYTES || !builder.is_empty() {
        return None;
    }
    // The records' fields are found by a vectorised scan, each once: their values are left to the
    // parser on each core.
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
    let rest = without(body, records);
    let top = outside(&rest, path, heads)?;
    let page = builder.page();
    let stop = builder.stop_token();
    let decode_column = |(name, value): &(String, std::ops::Range<usize>)| {
        let mut column = match &stop {
            Some(stop) => RowsBuilder::stopping_on(stop.clone()),
            None => RowsBuilder::new(),
        };
        column.start_page(page);
        if let Some(decoded) = array::column(&body[value.clone()], stop.as_ref()) {
            let written = decoded.len();
            column.decoded_column(name, decoded);
            return Some((column, written));
        }
        let mut de = serde_json::Deserializer::from_slice(&body[value.clone()]);
        let seed = ColumnSeed {
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
    Some(page_of(first_len, &top.kept, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::decode::decode;
    use crate::extract::http::Format;

    fn shape(records: &str, include: &[&str]) -> Shape {
        Shape {
            format: Format::Json,
            records: Some(records.to_owned()),
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            constants: Vec::new(),
            follow: None,
        }
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
        let shape = shape("hourly", &["latitude", "elevation"]);
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
}
