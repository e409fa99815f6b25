//! Arrow values as Firestore values.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use gcloud_sdk::google::firestore::v1::{ArrayValue, MapValue, Value, value::ValueType};
use gcloud_sdk::prost_types::Timestamp;

/// A field name as a Firestore field path: backquoted unless it is a plain identifier.
pub(super) fn field_path(name: &str) -> String {
    let simple = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if simple {
        name.to_owned()
    } else {
        format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
    }
}

/// A value of a column that Firestore cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("column `{column}`")]
pub(super) struct ColumnError {
    pub(super) column: String,
    #[source]
    pub(super) source: ValueError,
}

/// The fields of row `row` of `batch`.
pub(super) fn fields(batch: &RecordBatch, row: usize) -> Result<HashMap<String, Value>, ColumnError> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            let value = value(column.as_ref(), row).map_err(|source| ColumnError {
                column: field.name().clone(),
                source,
            })?;
            Ok((field.name().clone(), value))
        })
        .collect()
}

fn typed(value: ValueType) -> Value {
    Value {
        value_type: Some(value),
    }
}

fn timestamp(seconds: i64, nanos: i64) -> Value {
    let seconds = seconds + nanos.div_euclid(1_000_000_000);
    let nanos = nanos.rem_euclid(1_000_000_000) as i32;
    typed(ValueType::TimestampValue(Timestamp { seconds, nanos }))
}

/// Why a value cannot become a Firestore value.
#[derive(Debug, thiserror::Error)]
pub(super) enum ValueError {
    #[error("cannot read {0} as a number")]
    NotANumber(String),
    #[error("Firestore arrays cannot hold arrays; unnest the list in SQL first")]
    NestedArray,
    #[error("{0} is larger than Firestore's 64-bit integers")]
    TooLarge(u64),
    #[error("cannot format the value")]
    Format(#[source] datafusion::arrow::error::ArrowError),
}

/// One Arrow value as a Firestore value: timestamps (naive ones read as UTC) and dates (midnight
/// UTC) as timestamp values, decimals as doubles, lists as arrays, structs as maps, and what
/// Firestore has no type for (times, durations) as text.
fn value(array: &dyn Array, row: usize) -> Result<Value, ValueError> {
    if array.is_null(row) {
        return Ok(typed(ValueType::NullValue(0)));
    }
    macro_rules! int {
        ($t:ty) => {
            typed(ValueType::IntegerValue(i64::from(
                array.as_primitive::<$t>().value(row),
            )))
        };
    }
    Ok(match array.data_type() {
        DataType::Boolean => typed(ValueType::BooleanValue(array.as_boolean().value(row))),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            let v = i64::try_from(v).map_err(|_| ValueError::TooLarge(v))?;
            typed(ValueType::IntegerValue(v))
        }
        DataType::Float16 => typed(ValueType::DoubleValue(
            array.as_primitive::<Float16Type>().value(row).to_f64(),
        )),
        DataType::Float32 => typed(ValueType::DoubleValue(f64::from(
            array.as_primitive::<Float32Type>().value(row),
        ))),
        DataType::Float64 => typed(ValueType::DoubleValue(array.as_primitive::<Float64Type>().value(row))),
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let text = display(array, row)?;
            let v: f64 = text.parse().map_err(|_| ValueError::NotANumber(text.clone()))?;
            typed(ValueType::DoubleValue(v))
        }
        DataType::Utf8 => typed(ValueType::StringValue(array.as_string::<i32>().value(row).to_owned())),
        DataType::LargeUtf8 => typed(ValueType::StringValue(array.as_string::<i64>().value(row).to_owned())),
        DataType::Utf8View => typed(ValueType::StringValue(array.as_string_view().value(row).to_owned())),
        DataType::Binary => typed(ValueType::BytesValue(array.as_binary::<i32>().value(row).to_vec())),
        DataType::LargeBinary => typed(ValueType::BytesValue(array.as_binary::<i64>().value(row).to_vec())),
        DataType::Date32 => timestamp(i64::from(array.as_primitive::<Date32Type>().value(row)) * 86_400, 0),
        DataType::Date64 => {
            let ms = array.as_primitive::<Date64Type>().value(row);
            timestamp(ms.div_euclid(1000), ms.rem_euclid(1000) * 1_000_000)
        }
        DataType::Timestamp(unit, _) => {
            let (v, per_second) = match unit {
                TimeUnit::Second => (array.as_primitive::<TimestampSecondType>().value(row), 1),
                TimeUnit::Millisecond => (array.as_primitive::<TimestampMillisecondType>().value(row), 1_000),
                TimeUnit::Microsecond => (array.as_primitive::<TimestampMicrosecondType>().value(row), 1_000_000),
                TimeUnit::Nanosecond => (
                    array.as_primitive::<TimestampNanosecondType>().value(row),
                    1_000_000_000,
                ),
            };
            timestamp(
                v.div_euclid(per_second),
                v.rem_euclid(per_second) * (1_000_000_000 / per_second),
            )
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => {
            let items = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(row),
                DataType::LargeList(_) => array.as_list::<i64>().value(row),
                _ => array.as_fixed_size_list().value(row),
            };
            let values = (0..items.len())
                .map(|i| value(items.as_ref(), i))
                .collect::<Result<Vec<_>, _>>()?;
            if values
                .iter()
                .any(|v| matches!(v.value_type, Some(ValueType::ArrayValue(_))))
            {
                return Err(ValueError::NestedArray);
            }
            typed(ValueType::ArrayValue(ArrayValue { values }))
        }
        DataType::Struct(children) => {
            let array = array.as_struct();
            let fields = children
                .iter()
                .zip(array.columns())
                .map(|(child, column)| Ok((child.name().clone(), value(column.as_ref(), row)?)))
                .collect::<Result<HashMap<_, _>, ValueError>>()?;
            typed(ValueType::MapValue(MapValue { fields }))
        }
        _ => typed(ValueType::StringValue(display(array, row)?)),
    })
}

fn display(array: &dyn Array, row: usize) -> Result<String, ValueError> {
    let options = FormatOptions::default();
    let formatter = ArrayFormatter::try_new(array, &options).map_err(ValueError::Format)?;
    Ok(formatter.value(row).to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Decimal128Array, Int64Array, ListArray, StringArray, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn values_from_arrow() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("at", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
            Field::new("price", DataType::Decimal128(10, 2), true),
            Field::new("s", DataType::Utf8, true),
            Field::new_list("tags", Field::new("item", DataType::Int64, true), true),
        ]));
        let tags = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1), None]), None]);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(-1),
                    Some(1_735_689_600_123_456_789),
                ])),
                Arc::new(
                    Decimal128Array::from(vec![Some(1999), None])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                Arc::new(StringArray::from(vec![Some("<b>"), None])),
                Arc::new(tags),
            ],
        )
        .unwrap();
        let first = fields(&batch, 0).unwrap();
        assert_eq!(first["n"], typed(ValueType::IntegerValue(7)));
        assert_eq!(
            first["at"],
            typed(ValueType::TimestampValue(Timestamp {
                seconds: -1,
                nanos: 999_999_999
            }))
        );
        assert_eq!(first["price"], typed(ValueType::DoubleValue(19.99)));
        assert_eq!(first["s"], typed(ValueType::StringValue("<b>".into())));
        assert_eq!(
            first["tags"],
            typed(ValueType::ArrayValue(ArrayValue {
                values: vec![typed(ValueType::IntegerValue(1)), typed(ValueType::NullValue(0))]
            }))
        );
        let second = fields(&batch, 1).unwrap();
        assert_eq!(second["n"], typed(ValueType::NullValue(0)));
        assert_eq!(
            second["at"],
            typed(ValueType::TimestampValue(Timestamp {
                seconds: 1_735_689_600,
                nanos: 123_456_789
            }))
        );
    }
}
