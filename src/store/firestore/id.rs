//! Document ids: one per distinct key tuple, stable across runs, valid for Firestore.
//!
//! An id is the key values joined with `|`, each value made safe first: `%` and `/` are
//! percent-encoded (`%25`, `%2F`), and so is `|` when the key has more than one column (`%7C`). A
//! null is the bare word `null`; the text `"null"` is written `%6Eull`, its first letter encoded. An
//! id that Firestore reserves (`.`, `..`, `__…__`) gets the prefix `id`, and an id that would read
//! like such a prefixed one starts with `%69` (`i`) instead. Percent-decoding any of these gives
//! the joined values back, so two key tuples never share an id. An id longer than Firestore's
//! 1,500 bytes keeps its first 1,466 bytes and ends in `%~` and 128 bits of its SHA-256; `%~`
//! appears in no other id, and an empty id (one empty value) is `%~` alone.
//!
//! Keys are scalar values (text, numbers, booleans, dates, times): a list, struct or map column
//! is refused as a key, since its text form can be the same for different values.
//!
//! An id is the same as earlier versions of dpf gave it unless the key has a value holding `|`
//! (with more than one column) or the text `"null"`, the joined id reads like a prefixed reserved
//! one (`id..`, `id__a|b__`), it is over 1,500 bytes, or it is one empty value (which Firestore
//! refuses): the keys that could share an id before, or had no valid one. So existing collections
//! keep their documents' ids.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::table::Table;
use tokio_util::sync::CancellationToken;

/// Firestore's limit on a document id, in bytes.
const MAX_ID_BYTES: usize = 1500;
/// Marks a shortened id (followed by a hash) or the empty one; no escaped value contains it.
const MARK: &str = "%~";
/// Hex digits of the hash that ends a shortened id.
const HASH_DIGITS: usize = 32;

/// Why the documents of a write could not be named.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("key column `{column}` is not a column of the rows; they have: {columns}")]
    MissingKey { column: String, columns: String },
    #[error("cannot format key column `{column}`")]
    Format {
        column: String,
        #[source]
        source: ArrowError,
    },
    #[error(
        "two different keys map to one document id `{id}`: {first} and {second}; nothing was written (shorten \
         the key)"
    )]
    Collision { id: String, first: String, second: String },
    #[error("key column `{column}` is {kind}; a key is made of scalar values (text, numbers, booleans, dates, times)")]
    NotScalar { column: String, kind: String },
    #[error("stopped before anything was written")]
    Stopped,
}

/// An id before shortening: the joined, escaped values.
struct FullId(String);

impl FullId {
    fn into_id(self) -> String {
        let FullId(id) = self;
        if id.is_empty() {
            return MARK.to_owned();
        }
        if id.len() <= MAX_ID_BYTES {
            return id;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let mut cut = MAX_ID_BYTES - MARK.len() - HASH_DIGITS;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut short = String::with_capacity(MAX_ID_BYTES);
        short.push_str(&id[..cut]);
        short.push_str(MARK);
        for byte in &digest.as_ref()[..HASH_DIGITS / 2] {
            short.push_str(&format!("{byte:02x}"));
        }
        short
    }
}

fn full_id(values: &[Option<&str>]) -> FullId {
    let several = values.len() > 1;
    let mut joined = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            joined.push('|');
        }
        match value {
            None => joined.push_str("null"),
            Some("null") => joined.push_str("%6Eull"),
            Some(text) => {
                for c in text.chars() {
                    match c {
                        '%' => joined.push_str("%25"),
                        '/' => joined.push_str("%2F"),
                        '|' if several => joined.push_str("%7C"),
                        c => joined.push(c),
                    }
                }
            }
        }
    }
    if reserved(&joined) {
        joined.insert_str(0, "id");
    } else if joined.strip_prefix("id").is_some_and(reserved) {
        joined.replace_range(..1, "%69");
    }
    FullId(joined)
}

/// Whether Firestore reserves `id` for itself.
fn reserved(id: &str) -> bool {
    // `__` alone counts too, as it did in earlier versions: a prefix more than needed is harmless.
    id == "." || id == ".." || (id.starts_with("__") && id.ends_with("__"))
}

/// An id for a row without key columns: 20 letters and digits, like Firestore's own, derived from
/// `seed` (the run and the task) and the row's position, so that a retried run overwrites the
/// documents of its earlier attempt instead of adding new ones.
pub fn generated_id(seed: &str, row: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Two FNV-1a hashes with different offsets: 128 bits, stable across builds and platforms.
    let fnv = |offset: u64| {
        let mut hash = offset;
        for byte in seed.bytes().chain((row as u64).to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    };
    let (mut high, mut low) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142));
    (0..20)
        .map(|i| {
            let half = if i % 2 == 0 { &mut high } else { &mut low };
            let c = ALPHABET[(*half % ALPHABET.len() as u64) as usize];
            *half /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

/// The documents of one write: a row per distinct id, in the order the ids first appear; where
/// rows share a key, the last of them is the one written, as a rerun would leave it.
#[derive(Debug, Default)]
pub struct Documents {
    /// (batch, row within the batch, document id) of each document.
    pub rows: Vec<(usize, usize, String)>,
    /// Rows whose key an earlier row already had: `rows` has one document for each such key.
    pub repeated: usize,
}

/// [`Documents`] being named.
#[derive(Default)]
struct Naming {
    documents: Documents,
    /// Where in `documents.rows` each id is.
    position: HashMap<String, usize>,
    /// The unshortened form of each shortened id, to tell a true repeat from a hash collision.
    shortened: HashMap<String, String>,
}

impl Documents {
    /// Names a document for every row of `rows`: from the `key` columns when there are any, else
    /// [`generated_id`] from `seed` and the row's position. Gives up between batches once `stop`
    /// is cancelled.
    pub fn of(key: &[String], seed: &str, rows: &Table, stop: &CancellationToken) -> Result<Self, IdError> {
        let missing = |column: &String| IdError::MissingKey {
            column: column.clone(),
            columns: rows.column_names().join(", "),
        };
        for column in key {
            let field = rows.schema.field_with_name(column).map_err(|_| missing(column))?;
            if field.data_type().is_nested() {
                return Err(IdError::NotScalar {
                    column: column.clone(),
                    kind: field.data_type().to_string(),
                });
            }
        }
        let mut naming = Naming::default();
        let mut offset = 0;
        for (b, batch) in rows.batches.iter().enumerate() {
            if stop.is_cancelled() {
                return Err(IdError::Stopped);
            }
            if key.is_empty() {
                for row in 0..batch.num_rows() {
                    naming.add(b, row, FullId(generated_id(seed, offset + row)))?;
                }
            } else {
                let columns = key
                    .iter()
                    .map(|column| batch.column_by_name(column).ok_or_else(|| missing(column)))
                    .collect::<Result<Vec<_>, _>>()?;
                naming.add_keyed(key, &columns, b, batch.num_rows())?;
            }
            offset += batch.num_rows();
        }
        Ok(naming.documents)
    }
}

impl Naming {
    /// Adds the `rows` rows of batch `b`, whose key columns are `arrays`.
    fn add_keyed(&mut self, key: &[String], arrays: &[&ArrayRef], b: usize, rows: usize) -> Result<(), IdError> {
        let options = FormatOptions::default().with_null("null");
        let format = |column: &String| {
            let column = column.clone();
            move |source| IdError::Format { column, source }
        };
        let formatters = key
            .iter()
            .zip(arrays)
            .map(|(column, array)| ArrayFormatter::try_new(array.as_ref(), &options).map_err(format(column)))
            .collect::<Result<Vec<_>, IdError>>()?;
        // Logical nulls: a null column, or a dictionary whose value is null, is null too.
        let nulls: Vec<_> = arrays.iter().map(|array| array.logical_nulls()).collect();
        let mut values: Vec<Option<String>> = vec![None; key.len()];
        for row in 0..rows {
            for (((column, nulls), formatter), value) in key.iter().zip(&nulls).zip(&formatters).zip(&mut values) {
                *value = match nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                    true => None,
                    false => Some(formatter.value(row).try_to_string().map_err(format(column))?),
                };
            }
            let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
            self.add(b, row, full_id(&values))?;
        }
        Ok(())
    }

    fn add(&mut self, b: usize, row: usize, full: FullId) -> Result<(), IdError> {
        let long = full.0.len() > MAX_ID_BYTES;
        let unshortened = long.then(|| full.0.clone());
        let id = full.into_id();
        if let Some(unshortened) = unshortened {
            match self.shortened.get(&id) {
                Some(first) if *first != unshortened => {
                    return Err(IdError::Collision {
                        id,
                        first: preview(first),
                        second: preview(&unshortened),
                    });
                }
                Some(_) => {}
                None => {
                    self.shortened.insert(id.clone(), unshortened);
                }
            }
        }
        let documents = &mut self.documents;
        match self.position.get(&id) {
            Some(&at) => {
                documents.rows[at] = (b, row, id);
                documents.repeated += 1;
            }
            None => {
                self.position.insert(id.clone(), documents.rows.len());
                documents.rows.push((b, row, id));
            }
        }
        Ok(())
    }
}

/// The start of a long key, for an error message.
fn preview(key: &str) -> String {
    let mut cut = key.len().min(60);
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("`{}…` ({} bytes)", &key[..cut], key.len())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    /// The document id of one key tuple (`None` is a null value).
    fn document_id(values: &[Option<&str>]) -> String {
        full_id(values).into_id()
    }

    /// The ids of dpf 0.1: values joined with `|`, null as `null`, cut at 1,500 bytes.
    fn earlier_id(values: &[Option<&str>]) -> String {
        let values: Vec<&str> = values.iter().map(|v| v.unwrap_or("null")).collect();
        let joined = values.join("|").replace('%', "%25").replace('/', "%2F");
        let reserved = joined == "." || joined == ".." || (joined.starts_with("__") && joined.ends_with("__"));
        let id = if reserved { format!("id{joined}") } else { joined };
        let mut cut = id.len().min(MAX_ID_BYTES);
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id[..cut].to_owned()
    }

    /// Values chosen to collide under a naive encoding, and ordinary ones.
    fn atoms() -> Vec<Option<String>> {
        let long = "é".repeat(800);
        [
            "",
            "a",
            "b",
            "a|b",
            "b|c",
            "|",
            "||",
            "%",
            "%7C",
            "%25",
            "/",
            "%2F",
            "null",
            "%6Eull",
            ".",
            "..",
            "__x__",
            "id..",
            "id.",
            "idid..",
            "%69d..",
            "_",
            "__",
            "%~",
            "2025-01-01T00:00:00",
            "49.28",
        ]
        .into_iter()
        .map(|s| Some(s.to_owned()))
        .chain([
            None,
            Some(long.clone()),
            Some(format!("{long}x")),
            Some(format!("{long}|")),
        ])
        .collect()
    }

    fn tuples(len: usize) -> Vec<Vec<Option<String>>> {
        if len == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for start in tuples(len - 1) {
            for atom in atoms() {
                let mut tuple = start.clone();
                tuple.push(atom);
                out.push(tuple);
            }
        }
        out
    }

    fn id_of(tuple: &[Option<String>]) -> String {
        let values: Vec<Option<&str>> = tuple.iter().map(Option::as_deref).collect();
        document_id(&values)
    }

    #[test]
    fn distinct_keys_get_distinct_valid_ids() {
        for len in 1..=3 {
            let mut seen: HashMap<String, Vec<Option<String>>> = HashMap::new();
            for tuple in tuples(len) {
                let id = id_of(&tuple);
                assert!(!id.is_empty() && id.len() <= MAX_ID_BYTES, "{tuple:?} → {id}");
                assert!(!id.contains('/') && !reserved(&id), "{tuple:?} → {id}");
                if let Some(other) = seen.insert(id.clone(), tuple.clone()) {
                    panic!("{other:?} and {tuple:?} share the id {id}");
                }
            }
        }
    }

    #[test]
    fn ids_are_the_earlier_ones_except_where_keys_could_collide() {
        let mut same = 0;
        for len in 1..=3 {
            for tuple in tuples(len) {
                let values: Vec<Option<&str>> = tuple.iter().map(Option::as_deref).collect();
                let texts: Vec<&str> = values.iter().map(|v| v.unwrap_or("null")).collect();
                let joined = texts.join("|").replace('%', "%25").replace('/', "%2F");
                let could_collide = values.contains(&Some("null"))
                    || (len > 1 && values.iter().flatten().any(|text| text.contains('|')))
                    || joined.is_empty()
                    || joined.strip_prefix("id").is_some_and(reserved)
                    || joined.len() + 2 > MAX_ID_BYTES;
                if !could_collide {
                    assert_eq!(document_id(&values), earlier_id(&values), "{values:?}");
                    same += 1;
                }
            }
        }
        assert!(same > 10_000, "{same}");
        // The single-column key keeps `|` as it is: no separator to confuse it with.
        assert_eq!(document_id(&[Some("a|b")]), "a|b");
        assert_eq!(document_id(&[Some("a|b"), Some("c")]), "a%7Cb|c");
        assert_eq!(document_id(&[None, Some("n")]), "null|n");
        assert_eq!(document_id(&[Some("null"), Some("n")]), "%6Eull|n");
        assert_eq!(document_id(&[Some("..")]), "id..");
        assert_eq!(document_id(&[Some("id..")]), "%69d..");
    }

    #[test]
    fn long_ids_are_shortened_with_a_hash() {
        let long = "k".repeat(3000);
        let a = document_id(&[Some(&long), Some("1")]);
        let b = document_id(&[Some(&long), Some("2")]);
        assert_ne!(a, b);
        assert_eq!(a.len(), MAX_ID_BYTES);
        assert!(
            a.starts_with("kkk") && a[..MAX_ID_BYTES - HASH_DIGITS].ends_with(MARK),
            "{a}"
        );
        assert_eq!(a, document_id(&[Some(&long), Some("1")]));
    }

    fn table(ids: &[Option<&str>], numbers: &[i64]) -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(numbers.to_vec())),
            ],
        )
        .unwrap();
        Table::new(schema, vec![batch.slice(0, 2), batch.slice(2, ids.len() - 2)])
    }

    #[test]
    fn rows_sharing_a_key_become_one_document_the_last_row_wins() {
        let rows = table(
            &[Some("a|b"), Some("a"), None, Some("null"), Some("a"), Some("a|b")],
            &[1, 2, 3, 4, 2, 1],
        );
        let key = ["name".to_owned(), "n".to_owned()];
        let documents = Documents::of(&key, "seed", &rows, &CancellationToken::new()).unwrap();
        let ids: Vec<&str> = documents.rows.iter().map(|(_, _, id)| id.as_str()).collect();
        assert_eq!(ids, ["a%7Cb|1", "a|2", "null|3", "%6Eull|4"]);
        assert_eq!(documents.repeated, 2);
        assert_eq!((documents.rows[0].0, documents.rows[0].1), (1, 3));
        assert_eq!((documents.rows[1].0, documents.rows[1].1), (1, 2));

        let generated = Documents::of(&[], "seed", &rows, &CancellationToken::new()).unwrap();
        let ids: HashSet<&str> = generated.rows.iter().map(|(_, _, id)| id.as_str()).collect();
        assert_eq!((ids.len(), generated.repeated), (6, 0));
        assert!(ids.contains(generated_id("seed", 5).as_str()));

        let missing = Documents::of(&["region".to_owned()], "seed", &rows, &CancellationToken::new()).unwrap_err();
        let nested = {
            let values = datafusion::arrow::array::ListArray::from_iter_primitive::<
                datafusion::arrow::datatypes::Int64Type,
                _,
                _,
            >([Some([Some(1)])]);
            let schema = Arc::new(Schema::new(vec![Field::new("tags", values.data_type().clone(), true)]));
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap();
            Table::new(schema, vec![batch])
        };
        let error = Documents::of(&["tags".to_owned()], "seed", &nested, &CancellationToken::new()).unwrap_err();
        assert!(matches!(error, IdError::NotScalar { .. }), "{error}");
        let null_column = {
            let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Null, true)]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(datafusion::arrow::array::NullArray::new(2))],
            )
            .unwrap();
            Table::new(schema, vec![batch])
        };
        let documents = Documents::of(&["k".to_owned()], "seed", &null_column, &CancellationToken::new()).unwrap();
        assert_eq!(documents.rows[0].2, "null");
        assert_eq!(
            missing.to_string(),
            "key column `region` is not a column of the rows; they have: name, n"
        );
    }

    #[test]
    fn two_keys_with_one_shortened_id_are_refused() {
        let mut naming = Naming::default();
        let long = "k".repeat(2000);
        naming.add(0, 0, FullId(long.clone())).unwrap();
        naming.add(0, 1, FullId(long.clone())).unwrap();
        assert_eq!(naming.documents.repeated, 1);
        // A hash collision cannot be made on purpose: plant one by naming a different key's id.
        let id = FullId(long.clone()).into_id();
        naming.shortened.insert(id, format!("{long}x"));
        let error = naming.add(0, 2, FullId(long)).unwrap_err();
        assert!(matches!(error, IdError::Collision { .. }), "{error}");
        assert!(error.to_string().contains("nothing was written"), "{error}");
    }

    #[test]
    fn generated_ids_are_stable_and_distinct() {
        let id = generated_id("run_a", 0);
        assert_eq!(id.len(), 20);
        assert_eq!(id, generated_id("run_a", 0));
        assert_ne!(id, generated_id("run_a", 1));
        assert_ne!(id, generated_id("run_b", 0));
    }
}
