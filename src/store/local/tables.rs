//! The warehouse's tables, listed and registered for SQL as `dataset.table` (`dpf query`, and
//! queries with `engine: bigquery` on the local target).

use std::fs;
use std::path::{Path, PathBuf};

/// Registers every table of `warehouse` in `session` as `dataset.table`.
pub(crate) async fn register(
    session: &datafusion::prelude::SessionContext,
    warehouse: &Path,
) -> Result<(), datafusion::error::DataFusionError> {
    use datafusion::catalog::MemorySchemaProvider;
    use datafusion::prelude::ParquetReadOptions;
    use datafusion::sql::TableReference;
    // Partitioned tables keep their parts in a folder per day.
    session
        .state_ref()
        .write()
        .config_mut()
        .options_mut()
        .execution
        .listing_table_ignore_subdirectory = false;
    let tables = tables(warehouse);
    for (dataset, table, path) in &tables {
        let catalog = session.catalog("datafusion").expect("the default catalog exists");
        if catalog.schema(dataset).is_none() {
            catalog.register_schema(dataset, std::sync::Arc::new(MemorySchemaProvider::new()))?;
        }
        let path = format!("{}/", path.display());
        session
            .register_parquet(
                TableReference::partial(dataset.as_str(), table.as_str()),
                &path,
                ParquetReadOptions::default(),
            )
            .await?;
    }
    Ok(())
}

/// The tables of the warehouse as (dataset, table, path).
pub(crate) fn tables(warehouse: &Path) -> Vec<(String, String, PathBuf)> {
    let mut found = Vec::new();
    let Ok(datasets) = fs::read_dir(warehouse) else {
        return found;
    };
    for dataset in datasets.filter_map(Result::ok) {
        let dataset_name = dataset.file_name().to_string_lossy().into_owned();
        if dataset_name.starts_with('.') {
            continue;
        }
        let Ok(entries) = fs::read_dir(dataset.path()) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().is_dir() {
                found.push((dataset_name.clone(), name, entry.path()));
            }
        }
    }
    found.sort();
    found
}
