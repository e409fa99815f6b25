//! The documents of one write: a document per distinct key, each named by [`super::id`].

use std::collections::HashMap;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use tokio_util::sync::CancellationToken;

use super::id::{FullId, MAX_ID_BYTES, full_id, generated_id};
use crate::table::Table;

/// Why the documents of a write could not be named.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdError {
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

/// The documents of one write: a row per distinct id, in the order the ids first appear; where
/// rows share a key, the last of them is the one written, as a rerun would leave it.
#[derive(Debug, Default)]
pub(crate) struct Documents {
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
    pub(crate) fn of(key: &[String], seed: &str, rows: &Table, stop: &CancellationToken) -> Result<Self, IdError> {
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
}
