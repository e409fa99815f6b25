//! A fan-out extract: the same requests once per item, `concurrency` items at a time, each with its
//! own retries; the rows of all items in item order, with the `include_item` fields on each.

use std::path::Path;

use futures::stream::{self, StreamExt as _};
use serde_json::Value;

use super::fetch::{Context, Extracted};
use super::items::{self, FanOut, ForEach, ItemSource, OnItemError};
use crate::component::Input;
use crate::error::{ErrorKind, TaskError};
use crate::receipt::{FailedItem, ItemsReceipt};
use crate::table::Table;

/// The items of `for_each`: as written, from a file next to `product_file`, or the rows of an
/// upstream task in `input`.
pub(super) fn items(for_each: &ForEach, product_file: &Path, input: &Input<'_>) -> Result<Vec<Value>, TaskError> {
    match for_each {
        ForEach::Items(items) => Ok(items.clone()),
        ForEach::Source(ItemSource::File(file)) => {
            items::from_file(&items::file_path(product_file, file)).map_err(TaskError::caused)
        }
        ForEach::Source(ItemSource::Task(task)) => {
            let table = input
                .tables
                .get(task)
                .ok_or_else(|| TaskError::permanent(format!("the output of `{task}`, its items, is missing")))?;
            items::from_rows(task, table).map_err(TaskError::caused)
        }
    }
}

/// Runs the extract of `params` (JSON, references unresolved) once per item, `concurrency` items at
/// a time, and returns the union of their rows and what became of each item. `items` starts at item
/// `first` of the fan-out (a shard's share): messages number items in the whole list.
pub(super) async fn run(
    fan_out: &FanOut,
    params: &Value,
    (items, first): (&[Value], usize),
    concurrency: usize,
    cx: &Context<'_>,
    attempts: &mut u32,
) -> Result<(Extracted, ItemsReceipt), TaskError> {
    let include = &fan_out.include_item;
    let mut each = stream::iter(items.iter().enumerate())
        .map(|(index, item)| async move {
            let mut attempts = 1;
            let result = async {
                let rendered = crate::plan::template::render_item(params, item)
                    .map_err(|error| TaskError::permanent(error.message))?;
                let constants = include
                    .iter()
                    .map(|field| {
                        (
                            field.clone(),
                            super::decode::cell_of(item.get(field).unwrap_or(&Value::Null)),
                        )
                    })
                    .collect();
                super::one(&rendered, constants, cx, &mut attempts).await
            }
            .await
            .map_err(|error| error.context(items::label(first + index, item, include)));
            (index, result, attempts)
        })
        // The next item starts as soon as any one in flight is done; their rows are put back in
        // item order below.
        .buffer_unordered(concurrency.max(1));
    let mut parts = Vec::with_capacity(items.len());
    let mut failed: Vec<(FailedItem, TaskError)> = Vec::new();
    *attempts = 1;
    while let Some((index, result, tries)) = each.next().await {
        *attempts = (*attempts).max(tries);
        match result {
            Ok(extracted) => parts.push((index, extracted)),
            Err(error) if fan_out.on_item_error == OnItemError::Skip && error.kind != ErrorKind::Interrupted => {
                let message = cx.secrets.redact(&error.message);
                cx.log.warn(Some(cx.task), Some(tries), format!("skipped {message}"));
                let item = FailedItem {
                    item: first + index + 1,
                    label: items::label(first + index, &items[index], include),
                    error: message,
                    error_kind: error.kind,
                };
                failed.push((item, error));
            }
            Err(error) => return Err(error),
        }
    }
    drop(each);
    parts.sort_unstable_by_key(|(index, _)| *index);
    failed.sort_unstable_by_key(|(item, _)| item.item);
    if !items.is_empty() && parts.is_empty() {
        let (_, first) = failed.swap_remove(0);
        return Err(first.context(format!("every one of the {} items failed; the first", items.len())));
    }
    let receipt = ItemsReceipt {
        total: items.len() as u64,
        succeeded: parts.len() as u64,
        failed: failed.into_iter().map(|(item, _)| item).collect(),
    };
    // An item's rows on disk are read back: the union is built in memory.
    let loaded = parts
        .iter()
        .map(|(_, extracted)| extracted.table.in_memory())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TaskError::caused)?;
    let tables: Vec<&Table> = loaded.iter().map(|table| &**table).collect();
    let table = crate::table::union(&tables).map_err(|mismatch| {
        let name = |part: usize| {
            let index = parts[part].0;
            items::label(first + index, &items[index], include)
        };
        TaskError::permanent(format!(
            "field `{}` is {} in {}, but {} in {}: items must give their fields one type",
            mismatch.field,
            mismatch.found,
            name(mismatch.part),
            mismatch.was,
            name(mismatch.first)
        ))
    })?;
    let extracted = Extracted {
        table,
        pages: parts.iter().map(|(_, e)| e.pages).sum(),
    };
    Ok((extracted, receipt))
}
