//! The rows of several tables as one, typed as one builder would have typed them.

use datafusion::arrow::array::{Array as _, RecordBatch, RecordBatchOptions, new_null_array};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use std::sync::Arc;

use super::Table;

/// A field whose types in two tables do not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub field: String,
    /// The table where the field has the other type, and the table that typed it first.
    pub part: usize,
    pub first: usize,
    /// The kinds, in words: "a number", "text", …
    pub was: &'static str,
    pub found: &'static str,
}

/// The rows of `tables` in order. Columns come in the order they first appear; a column a table
/// lacks is null in its rows. As in one extract: integers meet decimals as decimals, and times or
/// dates that meet text (or other times) become text; any other change is a [`Mismatch`].
pub(crate) fn union(tables: &[&Table]) -> Result<Table, Mismatch> {
    let parts: Vec<(SchemaRef, Vec<bool>)> = tables
        .iter()
        .map(|table| (table.schema.clone(), untyped(&table.schema, &table.batches)))
        .collect();
    let schema = unified(&parts)?;
    let mut batches = Vec::new();
    for table in tables {
        for batch in &table.batches {
            batches.push(conformed(batch, &schema).expect("unified types cast"));
        }
    }
    let batch = concat_batches(&schema, &batches).expect("one schema");
    Ok(Table::from_batch(batch))
}

/// Which columns of `schema` are null in every row of `batches`: they have no type of their own
/// (the builder made them text).
pub(crate) fn untyped(schema: &SchemaRef, batches: &[RecordBatch]) -> Vec<bool> {
    (0..schema.fields().len())
        .map(|position| batches.iter().all(|b| b.column(position).null_count() == b.num_rows()))
        .collect()
}

/// The schema that holds the rows of every part (a schema, and which of its columns are untyped),
/// as [`union`] types it.
pub(crate) fn unified(parts: &[(SchemaRef, Vec<bool>)]) -> Result<SchemaRef, Mismatch> {
    // Name, type, and the part that set the type.
    let mut columns: Vec<(String, DataType, usize)> = Vec::new();
    for (part, (schema, untyped)) in parts.iter().enumerate() {
        for (field, untyped) in schema.fields().iter().zip(untyped) {
            let found = if *untyped { &DataType::Null } else { field.data_type() };
            match columns.iter_mut().find(|(name, ..)| name == field.name()) {
                None => columns.push((field.name().clone(), found.clone(), part)),
                Some((name, was, first)) => {
                    let Some(met) = meet(was, found) else {
                        return Err(Mismatch {
                            field: name.clone(),
                            part,
                            first: *first,
                            was: kind(was),
                            found: kind(found),
                        });
                    };
                    if met != *was {
                        if *was == DataType::Null {
                            *first = part;
                        }
                        *was = met;
                    }
                }
            }
        }
    }
    Ok(Arc::new(Schema::new(
        columns
            .into_iter()
            .map(|(name, data_type, _)| {
                let data_type = if data_type == DataType::Null {
                    DataType::Utf8
                } else {
                    data_type
                };
                Field::new(name, data_type, true)
            })
            .collect::<Vec<_>>(),
    )))
}

/// `batch` in `schema`: columns found by name and cast to its types, missing ones null. A cast that
/// fails is the error (never, when `schema` was [`unified`] from the batch's own).
pub(crate) fn conformed(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let arrays = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(array) if array.data_type() == field.data_type() => Ok(array.clone()),
            Some(array) => cast(array, field.data_type()),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
}

/// The type that holds values of both `a` and `b`, if there is one.
fn meet(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::{Date32, Float64, Int64, Null, Time64, Timestamp, Utf8};
    let textual = |t: &DataType| matches!(t, Utf8 | Date32 | Time64(_) | Timestamp(..));
    match (a, b) {
        _ if a == b => Some(a.clone()),
        (Null, other) | (other, Null) => Some(other.clone()),
        (Int64, Float64) | (Float64, Int64) => Some(Float64),
        _ if textual(a) && textual(b) => Some(Utf8),
        _ => None,
    }
}

fn kind(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int64 | DataType::Float64 => "a number",
        DataType::Boolean => "a boolean",
        DataType::Utf8 => "text",
        DataType::Date32 => "a date",
        DataType::Time64(_) => "a time of day",
        DataType::Timestamp(..) => "a timestamp",
        DataType::Null => "null",
        _ => "a value of another type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Cell, RowsBuilder};

    fn table(rows: &[&[(&str, Cell<'static>)]]) -> Table {
        let mut builder = RowsBuilder::new();
        for row in rows {
            builder.push_record(row.iter().cloned()).unwrap();
        }
        Table::from_batch(builder.finish())
    }

    #[test]
    fn columns_meet_by_name_and_widen_as_one_extract_would() {
        let a = table(&[&[("id", Cell::Int(1)), ("at", Cell::Str("2025-01-01T00:00:00Z".into()))]]);
        let b = table(&[&[
            ("id", Cell::Float(2.5)),
            ("at", Cell::Str("soon".into())),
            ("city", Cell::Str("Oslo".into())),
        ]]);
        let both = union(&[&a, &b]).unwrap();
        let names: Vec<&str> = both.column_names();
        assert_eq!(names, ["id", "at", "city"]);
        let types: Vec<&DataType> = both.schema.fields().iter().map(|f| f.data_type()).collect();
        assert_eq!(types, [&DataType::Float64, &DataType::Utf8, &DataType::Utf8]);
        let lines = crate::table::json_lines(&both.batches[0]).unwrap();
        assert_eq!(
            lines,
            "{\"id\":1.0,\"at\":\"2025-01-01T00:00:00Z\",\"city\":null}\n{\"id\":2.5,\"at\":\"soon\",\"city\":\"Oslo\"}\n"
        );
    }

    #[test]
    fn a_field_of_two_kinds_is_a_mismatch_that_names_both_tables() {
        let a = table(&[&[("id", Cell::Null)]]);
        let b = table(&[&[("id", Cell::Int(1))]]);
        let c = table(&[&[("id", Cell::Bool(true))]]);
        assert_eq!(
            union(&[&a, &b, &c]).unwrap_err(),
            Mismatch {
                field: "id".into(),
                part: 2,
                first: 1,
                was: "a number",
                found: "a boolean",
            }
        );
        assert_eq!(union(&[]).unwrap().rows(), 0);
    }
}
