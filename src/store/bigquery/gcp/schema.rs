//! Schemas: BigQuery fields for Arrow columns, how a table's schema evolves, rows conformed to
//! a table's types, and BigQuery's DDL names.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::error::BigQueryError;
use super::model::{FieldType, Mode, TableFieldSchema};
use crate::table::Table;

/// BigQuery fields for an Arrow schema.
pub(super) fn schema_of(schema: &Schema) -> Result<Vec<TableFieldSchema>, BigQueryError> {
    schema.fields().iter().map(|field| field_of(field)).collect()
}

fn field_of(field: &Field) -> Result<TableFieldSchema, BigQueryError> {
    let name = field.name();
    let out = match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            if matches!(
                item.data_type(),
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..)
            ) {
                return Err(BigQueryError::ListOfLists { column: name.clone() });
            }
            let mut inner = field_of(&Field::new(name, item.data_type().clone(), true))?;
            inner.mode = Mode::Repeated;
            return Ok(inner);
        }
        DataType::Struct(children) => TableFieldSchema {
            fields: children.iter().map(|child| field_of(child)).collect::<Result<_, _>>()?,
            ..TableFieldSchema::new(name, FieldType::Record)
        },
        other => TableFieldSchema::new(name, type_of(name, other)?),
    };
    Ok(out)
}

fn type_of(name: &str, data_type: &DataType) -> Result<FieldType, BigQueryError> {
    Ok(match data_type {
        DataType::Boolean => FieldType::Boolean,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => FieldType::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => FieldType::Float,
        DataType::Decimal128(precision, scale) if *scale >= 0 && *scale <= 9 && precision - (*scale as u8) <= 29 => {
            FieldType::Numeric
        }
        DataType::Decimal128(..) | DataType::Decimal256(..) => FieldType::Bignumeric,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::String,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => {
            FieldType::Bytes
        }
        DataType::Date32 | DataType::Date64 => FieldType::Date,
        DataType::Timestamp(_, Some(_)) => FieldType::Timestamp,
        DataType::Timestamp(_, None) => FieldType::Datetime,
        DataType::Time32(_) | DataType::Time64(_) => FieldType::Time,
        other => {
            return Err(BigQueryError::Unstorable {
                column: name.to_owned(),
                data_type: other.clone(),
            });
        }
    })
}

/// Whether rows of type `ours` load into a column of type `theirs` without losing anything:
/// the same type, or an integer into FLOAT, NUMERIC or BIGNUMERIC, or NUMERIC into BIGNUMERIC.
fn loads_into(ours: &FieldType, theirs: &FieldType) -> bool {
    use FieldType::{Bignumeric, Float, Integer, Numeric};
    ours == theirs
        || matches!(
            (ours, theirs),
            (Integer, Float | Numeric | Bignumeric) | (Numeric, Bignumeric)
        )
}

/// The table's schema with the columns of `ours` it lacks added, or the first column whose type or
/// mode the table cannot take. Nested records are compared field by field.
pub(super) fn evolve(
    table: &str,
    theirs: &[TableFieldSchema],
    ours: &[TableFieldSchema],
    path: &str,
) -> Result<Option<Vec<TableFieldSchema>>, BigQueryError> {
    let mut evolved = theirs.to_vec();
    let mut changed = false;
    for field in ours {
        let column = format!("{path}{}", field.name);
        let existing = theirs.iter().position(|t| t.name.eq_ignore_ascii_case(&field.name));
        let Some(at) = existing else {
            evolved.push(field.clone());
            changed = true;
            continue;
        };
        let existing = &theirs[at];
        let (ours_type, theirs_type) = (&field.field_type, &existing.field_type);
        if !loads_into(ours_type, theirs_type) {
            return Err(BigQueryError::TypeChanged {
                column,
                table: table.to_owned(),
                theirs: theirs_type.clone(),
                ours: ours_type.clone(),
            });
        }
        if (field.mode == Mode::Repeated) != (existing.mode == Mode::Repeated) {
            return Err(BigQueryError::ModeChanged {
                column,
                table: table.to_owned(),
                theirs: existing.mode,
                ours: field.mode,
            });
        }
        if *ours_type == FieldType::Record {
            let nested = evolve(table, &existing.fields, &field.fields, &format!("{column}."))?;
            if let Some(nested) = nested {
                evolved[at].fields = nested;
                changed = true;
            }
        }
    }
    for existing in theirs {
        if existing.mode == Mode::Required && !ours.iter().any(|f| f.name.eq_ignore_ascii_case(&existing.name)) {
            return Err(BigQueryError::RequiredMissing {
                column: format!("{path}{}", existing.name),
                table: table.to_owned(),
            });
        }
    }
    Ok(changed.then_some(evolved))
}

/// `rows` with integer columns cast to the FLOAT or NUMERIC type the table has, and timestamps in
/// microseconds, the precision BigQuery keeps.
pub(super) fn conform(rows: &Table, table: &[TableFieldSchema]) -> Result<Table, BigQueryError> {
    let target = |field: &Field| -> DataType {
        let existing = table.iter().find(|t| t.name.eq_ignore_ascii_case(field.name()));
        match (field.data_type(), existing.map(|t| &t.field_type)) {
            (DataType::Timestamp(_, tz), _) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            (t, Some(FieldType::Float)) if t.is_integer() => DataType::Float64,
            (t, Some(FieldType::Numeric)) if t.is_integer() => DataType::Decimal128(38, 9),
            (t, Some(FieldType::Bignumeric)) if t.is_integer() || matches!(t, DataType::Decimal128(..)) => {
                DataType::Decimal256(76, 38)
            }
            (t, _) => t.clone(),
        }
    };
    let fields: Vec<Field> = rows
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(target(f)))
        .collect();
    if fields
        .iter()
        .zip(rows.schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return Ok(rows.clone());
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let batches = rows
        .batches
        .iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(column, field)| cast(column, field.data_type()))
                .collect::<Result<Vec<ArrayRef>, _>>()?;
            RecordBatch::try_new(schema.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(BigQueryError::Convert)?;
    Ok(Table::new(schema, batches))
}

/// A name quoted for BigQuery's standard SQL.
pub(super) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

/// The type of `field` in BigQuery's DDL.
pub(super) fn ddl_type(field: &TableFieldSchema) -> String {
    let base = match &field.field_type {
        FieldType::Record => {
            let children: Vec<String> = field
                .fields
                .iter()
                .map(|child| format!("{} {}", quote(&child.name), ddl_type(child)))
                .collect();
            format!("STRUCT<{}>", children.join(", "))
        }
        other => other.ddl_name().to_owned(),
    };
    if field.mode == Mode::Repeated {
        format!("ARRAY<{base}>")
    } else {
        base
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A nullable field, as BigQuery describes one.
    pub(in crate::store::bigquery::gcp) fn field(name: &str, t: FieldType) -> TableFieldSchema {
        TableFieldSchema::new(name, t)
    }

    #[test]
    fn schemas_from_arrow() {
        let schema = Schema::new(vec![
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new(
                "utc",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("price", DataType::Decimal128(12, 2), true),
            Field::new("big", DataType::Decimal128(38, 20), true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let fields = schema_of(&schema).unwrap();
        let types: Vec<(&str, &str)> = fields
            .iter()
            .map(|f| (f.field_type.as_str(), f.mode.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("DATETIME", "NULLABLE"),
                ("TIMESTAMP", "NULLABLE"),
                ("NUMERIC", "NULLABLE"),
                ("BIGNUMERIC", "NULLABLE"),
                ("STRING", "REPEATED")
            ]
        );
        let nested = Schema::new(vec![Field::new(
            "m",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            ))),
            true,
        )]);
        assert!(schema_of(&nested).unwrap_err().to_string().contains("list of lists"));
    }

    #[test]
    fn schema_evolution() {
        let theirs = vec![field("a", FieldType::Integer), field("b", FieldType::Float)];
        let same = vec![field("A", FieldType::Integer), field("b", FieldType::Integer)];
        assert!(evolve("t", &theirs, &same, "").unwrap().is_none());
        let more = vec![field("a", FieldType::Integer), field("c", FieldType::String)];
        let evolved = evolve("t", &theirs, &more, "").unwrap().unwrap();
        assert_eq!(
            evolved.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let wrong = vec![field("b", FieldType::String)];
        let error = evolve("p.d.t", &theirs, &wrong, "").unwrap_err();
        assert_eq!(
            error.to_string(),
            "column `b` is FLOAT in p.d.t but the rows have STRING; CAST it in SQL, or write to a new table"
        );
        let mut required = field("r", FieldType::String);
        required.mode = Mode::Required;
        assert!(
            evolve("t", &[required], &more, "")
                .unwrap_err()
                .to_string()
                .contains("REQUIRED")
        );
    }
}
