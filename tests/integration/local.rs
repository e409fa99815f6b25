//! The local target's stores as other tools read them: the warehouse through DuckDB, polars and
//! pyarrow (PyPI, installed by scripts/test), the document store's values as Firestore holds them.

use std::path::Path;

use serde_json::{Value, json};

use crate::server::{Reply, Server};
use crate::util::{ProductYaml, Workspace, check_with, replay, task_error};

/// What DuckDB, polars and pyarrow read from `warehouse`, and from `table` partitioned by `column`
/// into `<column>_date=` folders (see tests/parquet_readers.py).
#[track_caller]
fn readers(warehouse: &Path, table: Option<(&Path, &str)>) -> Value {
    let mut args = vec![warehouse.as_os_str().to_owned()];
    if let Some((table, column)) = table {
        args.extend([table.into(), format!("{column}_date").into(), column.into()]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (ok, said) = check_with("parquet-readers", &args);
    assert!(ok, "{said}");
    serde_json::from_str(&said).unwrap_or_else(|e| panic!("{e}: {said}"))
}

/// The Parquet files under `dir`, relative to it.
fn parquet_files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn duckdb_polars_and_pyarrow_read_each_row_of_the_weather_warehouse_once() {
    let ws = Workspace::new();
    for _ in 0..3 {
        replay(&ws, "weather_data_product", None);
    }
    let warehouse = ws.data().join("warehouse");
    let table = warehouse.join("weather_data/weather_records");
    let seen = readers(&warehouse, Some((&table, "observed_at")));
    let days: Value = (7..=13).map(|d| (format!("2025-07-{d:02}"), json!(24))).collect();
    assert_eq!(seen["duckdb_rows"], 168, "{seen}");
    assert_eq!(seen["polars_rows"], 168, "{seen}");
    for reader in ["duckdb", "polars", "pyarrow"] {
        assert_eq!(seen[format!("{reader}_partitions")], days, "{reader}: {seen}");
    }
    assert_eq!(seen["duckdb_types"], json!(["DATE"]), "{seen}");
    assert_eq!(seen["polars_types"], json!(["Date"]), "{seen}");
    assert_eq!(
        (&seen["duckdb_mismatched"], &seen["polars_mismatched"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(
        ws.query("SELECT COUNT(*) AS n FROM weather_data.weather_records"),
        [json!({"n": 168})]
    );
}

/// `items_product` appending the three records from `first` on, each with an instant `at` (one
/// with an offset whose UTC date is the next day, one in UTC, one null), `partition_by` as given.
fn timed_items(url: &str, first: usize, partition_by: &str) -> String {
    ProductYaml::items(url, &format!("      query: {{ first: {first} }}"))
        .store_warehouse(&format!("dataset: shop, table: items, write: append{partition_by}"))
        .to_string()
}

fn timed_records_server() -> Server {
    Server::start(|seen, _| {
        let first: usize = seen.query("first").unwrap().parse().unwrap();
        let at = ["2025-01-01T23:30:00-02:00", "2025-01-01T10:00:00Z"];
        let rows: Vec<Value> = (first..first + 3)
            .map(|id| json!({"id": id, "at": at.get(id % 3)}))
            .collect();
        Reply::json(Value::Array(rows).to_string())
    })
}

#[test]
fn partitions_are_utc_dates_and_an_append_moves_older_rows_into_a_new_layout() {
    let server = timed_records_server();
    let ws = Workspace::new();
    let flat = ws.product("items_product", &timed_items(&server.url, 0, ""));
    ws.run(&flat).args(["--at", "2025-01-01T00:00:00Z"]).expect(0);
    let table = ws.data().join("warehouse/shop/items");
    assert_eq!(parquet_files(&table), ["part-items_product-20250101T000000Z.parquet"]);

    // The table takes `partition_by` from the next write on, with the rows it already held.
    let daily = ws.product("items_product", &timed_items(&server.url, 3, ", partition_by: at"));
    for _ in 0..2 {
        // The second run of the same tick replaces its own part: no row twice.
        ws.run(&daily).args(["--at", "2025-01-02T00:00:00Z"]).expect(0);
        let seen = readers(&ws.data().join("warehouse"), Some((&table, "at")));
        let days = json!({"2025-01-01": 2, "2025-01-02": 2, "null": 2});
        for reader in ["duckdb", "polars", "pyarrow"] {
            assert_eq!(seen[format!("{reader}_partitions")], days, "{reader}: {seen}");
        }
        assert_eq!((&seen["duckdb_rows"], &seen["polars_rows"]), (&json!(6), &json!(6)));
        assert_eq!(
            (&seen["duckdb_mismatched"], &seen["polars_mismatched"]),
            (&json!(0), &json!(0))
        );
    }
    let files = parquet_files(&table);
    assert!(files.iter().all(|f| f.starts_with("at_date=")), "{files:?}");
    assert_eq!(
        ws.query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM shop.items"),
        [json!({"n": 6, "ids": 6})]
    );
}

#[test]
fn partition_by_a_text_column_is_refused_and_the_table_kept() {
    let server = timed_records_server();
    let ws = Workspace::new();
    let flat = ws.product("items_product", &timed_items(&server.url, 0, ""));
    ws.run(&flat).expect(0);
    let by_id = ws.product("items_product", &timed_items(&server.url, 3, ", partition_by: id"));
    let run = ws.run(&by_id).args(["--at", "2025-01-02T00:00:00Z"]).expect(1);
    let error = task_error(&run, "to_warehouse");
    assert!(error.contains("partition_by: column `id` is Int64"), "{error}");
    assert_eq!(ws.query("SELECT COUNT(*) AS n FROM shop.items"), [json!({"n": 3})]);
    let staging = ws.data().join("warehouse-staging/shop/items");
    let left: Vec<_> = std::fs::read_dir(staging)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["lock"]);
}

#[test]
fn a_table_of_the_older_layout_loses_its_old_versions_at_the_next_write() {
    let server = timed_records_server();
    let ws = Workspace::new();
    let file = ws.product("items_product", &timed_items(&server.url, 0, ""));
    ws.run(&file).args(["--at", "2025-01-01T00:00:00Z"]).expect(0);
    // Earlier dpf versions kept `<dataset>/.versions/<table>/vNNNNNN` and linked the table to one.
    let dataset = ws.data().join("warehouse/shop");
    let versions = dataset.join(".versions/items");
    std::fs::create_dir_all(&versions).unwrap();
    std::fs::rename(dataset.join("items"), versions.join("v000002")).unwrap();
    let copy = |to: &str| {
        std::fs::create_dir(versions.join(to)).unwrap();
        for file in parquet_files(&versions.join("v000002")) {
            std::fs::copy(versions.join("v000002").join(&file), versions.join(to).join(&file)).unwrap();
        }
    };
    copy("v000001");
    std::os::unix::fs::symlink(".versions/items/v000002", dataset.join("items")).unwrap();
    assert_eq!(readers(&ws.data().join("warehouse"), None)["duckdb_rows"], 6);

    ws.run(&file).args(["--at", "2025-01-02T00:00:00Z"]).expect(0);
    assert!(!dataset.join(".versions").exists());
    assert!(dataset.join("items").is_dir() && !dataset.join("items").is_symlink());
    let seen = readers(&ws.data().join("warehouse"), None);
    assert_eq!((&seen["duckdb_rows"], &seen["polars_rows"]), (&json!(6), &json!(6)));
}

#[test]
fn a_table_caught_between_two_renames_is_put_back_by_the_next_write() {
    let server = timed_records_server();
    let ws = Workspace::new();
    let file = ws.product("items_product", &timed_items(&server.url, 0, ""));
    ws.run(&file).args(["--at", "2025-01-01T00:00:00Z"]).expect(0);
    // Where the file system cannot exchange two folders, a commit renames the table away, then the
    // new contents in; a write killed in between leaves the table in the staging folder.
    let staging = ws.data().join("warehouse-staging/shop/items");
    std::fs::rename(ws.data().join("warehouse/shop/items"), staging.join("old")).unwrap();
    ws.run(&file).args(["--at", "2025-01-02T00:00:00Z"]).expect(0);
    assert_eq!(
        ws.query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM shop.items"),
        [json!({"n": 6, "ids": 3})]
    );
}

#[test]
fn the_local_document_store_holds_instants_in_utc_with_z() {
    let server = timed_records_server();
    let ws = Workspace::new();
    let product = ProductYaml::items(&server.url, "      query: { first: 0 }")
        .task(
            r#"  - id: typed
    function: transform_sql
    params:
      query: |
        SELECT id, at,
               to_timestamp('2025-01-01T12:00:00.250') AS naive,
               arrow_cast(at, 'Timestamp(Microsecond, Some("America/Sao_Paulo"))') AS zoned,
               CAST('2025-01-02' AS DATE) AS day
        FROM extract_items
"#,
        )
        .store_documents("collection: timed, key: [id, zoned]")
        .to_string();
    let file = ws.product("items_product", &product);
    ws.run(&file).expect(0);
    let documents: Vec<(String, Value)> = ws.documents("timed").into_iter().collect();
    let ids: Vec<&str> = documents.iter().map(|(id, _)| id.as_str()).collect();
    // Document ids are as they were before the values were encoded in UTC.
    assert_eq!(
        ids,
        ["0|2025-01-01T22:30:00-03:00", "1|2025-01-01T07:00:00-03:00", "2|null"]
    );
    let first = &documents[0].1;
    assert_eq!(first["at"], "2025-01-02T01:30:00Z", "{first}");
    assert_eq!(first["zoned"], "2025-01-02T01:30:00Z", "{first}");
    assert_eq!(first["naive"], "2025-01-01T12:00:00.250Z", "{first}");
    assert_eq!(first["day"], "2025-01-02T00:00:00Z", "{first}");
    assert_eq!(documents[2].1["at"], Value::Null);
}
