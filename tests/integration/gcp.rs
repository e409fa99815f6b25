//! The gcp target against real emulators: Google's Firestore emulator and bqemulator, which
//! `scripts/test` starts and names in FIRESTORE_EMULATOR_HOST and BIGQUERY_EMULATOR_HOST. Each test
//! writes to a Google Cloud project of its own, so tests run side by side on one pair of emulators.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::util::{
    Dpf, ProductYaml, Workspace, bigquery, dpf, emulators, gcp, http, new_project, receipt, records, replay, serve,
    task, task_error,
};

/// Every document of a Firestore collection: id → fields as Firestore's REST API shows them.
fn documents(project: &str, collection: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut token = String::new();
    loop {
        let url = format!(
            "http://{}/v1/projects/{project}/databases/(default)/documents/{collection}?pageSize=300&pageToken={token}",
            emulators().firestore
        );
        let page = http("GET", &url, None);
        for document in page["documents"].as_array().cloned().unwrap_or_default() {
            let id = document["name"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            out.insert(id, document["fields"].clone());
        }
        match page["nextPageToken"].as_str() {
            Some(next) if !next.is_empty() => token = next.to_owned(),
            _ => return out,
        }
    }
}

/// A local-target value as the BigQuery emulator's REST answer shows it: text.
fn text(value: &Value) -> Value {
    match value {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

/// Microseconds since the epoch of a date or a date-time; UTC unless it says otherwise.
fn instant(text: &str) -> Option<i64> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_micros());
    }
    if let Ok(time) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(time.and_utc().timestamp_micros());
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Numbers compared as numbers (22.3 and "22.3" are the same), and times with a zone as instants:
/// BigQuery's REST API may give a TIMESTAMP as microseconds or seconds since the epoch.
fn same(a: &Value, b: &Value) -> bool {
    let number = |v: &Value| {
        let text = v.as_str()?;
        instant(text)
            .map(|micros| micros as f64)
            .or_else(|| text.parse::<f64>().ok())
    };
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(1.0);
    a == b
        || match (number(a), number(b)) {
            (Some(x), Some(y)) => close(x, y) || close(x, y * 1e6) || close(x * 1e6, y),
            _ => false,
        }
}

/// Runs `product` on the local target and on the emulators from the same fixtures; every BigQuery
/// table and Firestore collection must hold the same rows, also after a second gcp run.
fn same_as_local(product: &str, tables: &[(&str, &str)], collections: &[&str]) {
    let project = new_project(product);
    let local = Workspace::new();
    let remote = Workspace::new();
    let first = replay(&remote, product, Some(&project));
    assert_eq!(first["target"], "gcp", "{first}");
    // A second invocation of the same tick: job ids, MERGE and document ids keep it from
    // duplicating; an incremental extract reads from the cursor the first saved, on both targets.
    replay(&remote, product, Some(&project));
    replay(&local, product, None);
    replay(&local, product, None);
    for (table, order) in tables {
        let sql = format!("SELECT * FROM {table} ORDER BY {order}");
        let expected: Vec<Value> = local.query(&sql);
        let actual = bigquery(&project, &sql);
        assert_eq!(actual.len(), expected.len(), "{table}: row counts differ");
        for (row, (want, got)) in expected.iter().zip(&actual).enumerate() {
            for (column, value) in want.as_object().unwrap() {
                let cell = got.get(column).unwrap_or_else(|| panic!("{table}: no column {column}"));
                assert!(
                    same(&text(value), cell),
                    "{table} row {row} column {column}: local {value}, BigQuery {cell}"
                );
            }
        }
    }
    for collection in collections {
        let expected = local.documents(collection);
        let actual = documents(&project, collection);
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{collection}: document ids differ"
        );
        for (id, fields) in &expected {
            for (name, value) in fields.as_object().unwrap() {
                let stored = &actual[id][name];
                let stored = stored
                    .as_object()
                    .and_then(|v| v.values().next())
                    .unwrap_or_else(|| panic!("{collection}/{id}: no field {name}"));
                let (value, stored) = (text(value), text(stored));
                assert!(
                    same(&value, &stored),
                    "{collection}/{id} field {name}: local {value}, Firestore {stored}"
                );
            }
        }
    }
}

#[test]
fn the_weather_product_stores_the_same_rows_as_on_the_local_target() {
    same_as_local(
        "weather_data_product",
        &[("weather_data.weather_records", "observed_at")],
        &["weather_records"],
    );
}

#[test]
fn the_sales_product_stores_the_same_rows_as_on_the_local_target() {
    same_as_local(
        "sales_data_product",
        &[("sales.orders", "order_id")],
        &["order_summaries"],
    );
}

/// A product that extracts from `url` and stores the rows in `shop.items` with `write`, and in
/// the Firestore collection `items` (ids from `id`, or generated when `key` is empty).
fn stores_product(url: &str, write: &str, method: &str, key: &str) -> String {
    ProductYaml::items(url, "")
        .retries(1)
        .store_warehouse(&format!(
            "dataset: shop, table: items, write: {write}, method: {method}, key: id"
        ))
        .store_documents(&format!("collection: items{key}"))
        .to_string()
}

/// The gcp run of `file` for the tick at midnight of January `day`, 2025, expected to exit `code`.
fn run_on(ws: &Workspace, file: &std::path::Path, project: &str, day: u32, code: i32) -> crate::util::Run {
    gcp(ws.run(file), project)
        .args(["--at", &format!("2025-01-{day:02}T00:00:00Z")])
        .expect(code)
}

fn items(first: usize, count: usize) -> Value {
    Value::Array(records(first, count))
}

fn ids(project: &str) -> Vec<i64> {
    ids_in(project, "shop.items")
}

fn ids_in(project: &str, table: &str) -> Vec<i64> {
    bigquery(project, &format!("SELECT id FROM {table} ORDER BY id"))
        .iter()
        .map(|row| row["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn append_loads_each_run_once_and_replace_replaces() {
    let project = new_project("append");
    let server = serve(vec![items(0, 3), items(0, 3), items(10, 2)]);
    let ws = Workspace::new();
    let file = ws.product("items_product", &stores_product(&server.url, "append", "load", ""));
    // The same run twice with the same rows: the second finds their load done and adds nothing
    // (its receipt counts them: they are in place), and the generated document ids of the second
    // attempt are those of the first.
    run_on(&ws, &file, &project, 1, 0);
    let again = run_on(&ws, &file, &project, 1, 0);
    assert_eq!(task(&receipt(&again), "to_warehouse")["rows"], 3, "{again}");
    assert!(again.stderr.contains("already"), "{again}");
    assert_eq!(ids(&project), [0, 1, 2]);
    assert_eq!(documents(&project, "items").len(), 3);
    // The next run appends.
    run_on(&ws, &file, &project, 2, 0);
    assert_eq!(ids(&project), [0, 1, 2, 10, 11]);
    assert_eq!(documents(&project, "items").len(), 5);

    let project = new_project("replace");
    let server = serve(vec![items(0, 3), items(5, 2)]);
    let file = ws.product(
        "items_product",
        &stores_product(&server.url, "replace", "load", ", key: id"),
    );
    run_on(&ws, &file, &project, 1, 0);
    run_on(&ws, &file, &project, 2, 0);
    assert_eq!(ids(&project), [5, 6]);
    // Firestore documents are upserts by id: replace applies to BigQuery tables only.
    let documents = documents(&project, "items");
    assert_eq!(documents.keys().collect::<Vec<_>>(), ["0", "1", "2", "5", "6"]);
    assert_eq!(documents["5"]["price"], json!({"doubleValue": 7.5}));
}

#[test]
fn streaming_inserts_append_rows() {
    let project = new_project("streaming");
    let server = serve(vec![items(0, 4)]);
    let ws = Workspace::new();
    let file = ws.product(
        "items_product",
        &stores_product(&server.url, "append", "streaming", ", key: id"),
    );
    let run = receipt(&gcp(ws.run(&file), &project).expect(0));
    assert_eq!(task(&run, "to_warehouse")["rows"], 4);
    assert_eq!(ids(&project), [0, 1, 2, 3]);
}

#[test]
fn a_new_column_is_added_and_a_changed_type_is_refused() {
    let project = new_project("evolution");
    let server = serve(vec![
        json!([{"id": 1, "price": 1.5}]),
        json!([{"id": 2, "price": 2.5, "colour": "red"}]),
        // Whole prices this time: integers go into the FLOAT column.
        json!([{"id": 4, "price": 3}]),
        json!([{"id": 3, "price": "cheap"}]),
    ]);
    let ws = Workspace::new();
    let file = ws.product(
        "items_product",
        &stores_product(&server.url, "merge", "load", ", key: id"),
    );
    run_on(&ws, &file, &project, 1, 0);
    run_on(&ws, &file, &project, 2, 0);
    let rows = bigquery(&project, "SELECT id, colour FROM shop.items ORDER BY id");
    assert_eq!(rows[0]["colour"], Value::Null);
    assert_eq!(rows[1]["colour"], "red");
    run_on(&ws, &file, &project, 3, 0);
    let prices = bigquery(&project, "SELECT price FROM shop.items WHERE id = 4");
    assert!(same(&prices[0]["price"], &json!("3")), "{prices:?}");
    let run = run_on(&ws, &file, &project, 4, 1);
    let error = task_error(&run, "to_warehouse");
    assert_eq!(
        error,
        format!(
            "column `price` is FLOAT in {project}.shop.items but the rows have STRING; CAST it in SQL, or write to a \
             new table"
        )
    );
    assert_eq!(ids(&project), [1, 2, 4]);
}

#[test]
fn emulators_that_are_down_are_retried_then_the_run_exits_75() {
    let server = serve(vec![items(0, 2)]);
    let ws = Workspace::new();
    let file = ws.product(
        "items_product",
        &stores_product(&server.url, "append", "load", ", key: id"),
    );
    // Port 9 (discard) has no listener on these machines.
    let run = ws
        .run(&file)
        .args(["--target", "gcp"])
        .env("GCP_PROJECT", "t-down-project")
        .env("BIGQUERY_EMULATOR_HOST", "127.0.0.1:9")
        .env("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
        .expect(75);
    let receipt = receipt(&run);
    for store in ["to_warehouse", "to_documents"] {
        assert_eq!(task(&receipt, store)["attempts"], 2, "{receipt}");
        assert_eq!(task(&receipt, store)["error_kind"], "transient", "{receipt}");
    }
    assert!(
        task_error(&run, "to_warehouse").contains("cannot reach BigQuery"),
        "{run}"
    );
    assert!(task_error(&run, "to_documents").contains("Firestore"), "{run}");
}

#[test]
fn plan_shows_the_fully_qualified_destinations() {
    let run = dpf()
        .args(["plan", "weather_data_product", "--target", "gcp", "--format", "json"])
        .env("GCP_PROJECT", "acme-weather")
        .expect(0);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let destinations: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["destination"].as_str())
        .collect();
    assert!(
        destinations.contains(&"bigquery:acme-weather.weather_data.weather_records"),
        "{plan}"
    );
    assert!(
        destinations.contains(&"firestore:projects/acme-weather/databases/(default)/documents/weather_records"),
        "{plan}"
    );
}

/// A gcp run with `env` (and no metadata server): it must exit 2 before the extract asks anything.
fn refused_before_extracting(env: &[(&str, &str)]) -> crate::util::Run {
    let server = serve(vec![items(0, 2)]);
    let ws = Workspace::new();
    let file = ws.product("items_product", &stores_product(&server.url, "append", "load", ""));
    let mut command = ws
        .run(&file)
        .args(["--target", "gcp"])
        .env("HOME", ws.path().to_str().unwrap())
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .env("GCE_METADATA_IP", "127.0.0.1:9");
    for (key, value) in env {
        command = command.env(key, value);
    }
    let run = command.expect(2);
    assert!(server.seen().is_empty(), "the extract ran: {run}");
    run
}

#[test]
fn a_missing_project_is_an_error_before_anything_is_extracted() {
    let emulators = emulators();
    let run = refused_before_extracting(&[
        ("BIGQUERY_EMULATOR_HOST", &emulators.bigquery),
        ("FIRESTORE_EMULATOR_HOST", &emulators.firestore),
    ]);
    assert!(
        run.stderr.contains("task `to_warehouse`: no Google Cloud project"),
        "{run}"
    );
}

#[test]
fn missing_credentials_are_an_error_before_anything_is_extracted() {
    let run = refused_before_extracting(&[("GCP_PROJECT", "t-no-credentials")]);
    assert!(
        run.stderr
            .contains("no Google Cloud credentials for BigQuery and Firestore"),
        "{run}"
    );
    assert!(run.stderr.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{run}");
}

#[test]
fn a_new_table_is_partitioned_and_clustered_and_an_empty_response_stores_nothing() {
    let project = new_project("partition");
    let server = serve(vec![
        json!([]),
        json!([{"id": 1, "sold_on": "2025-01-02", "region": "emea"}]),
    ]);
    let ws = Workspace::new();
    let file = ws.product(
        "items_product",
        &ProductYaml::items(&server.url, "")
            .store_warehouse("dataset: shop, table: sales, partition_by: sold_on, cluster_by: [region, id]")
            .to_string(),
    );
    let empty = receipt(&run_on(&ws, &file, &project, 1, 0));
    assert_eq!(task(&empty, "to_warehouse")["rows"], 0);
    run_on(&ws, &file, &project, 2, 0);
    let url = format!(
        "http://{}/bigquery/v2/projects/{project}/datasets/shop/tables/sales",
        emulators().bigquery
    );
    let table = http("GET", &url, None);
    assert_eq!(
        table["timePartitioning"],
        json!({"type": "DAY", "field": "sold_on"}),
        "{table}"
    );
    assert_eq!(table["clustering"], json!({"fields": ["region", "id"]}), "{table}");
    assert_eq!(ids_in(&project, "shop.sales"), [1]);
}

#[test]
fn keys_that_look_alike_are_distinct_documents_on_both_targets() {
    // Under a plain `|` join, rows 0 and 1, 2 and 3, 4 and 5 would each share a document.
    let long = "k".repeat(2000);
    let rows = json!([
        {"a": "a|b", "b": "c", "v": 0},
        {"a": "a", "b": "b|c", "v": 1},
        {"a": null, "b": "n", "v": 2},
        {"a": "null", "b": "n", "v": 3},
        {"a": long, "b": "1", "v": 4},
        {"a": long, "b": "2", "v": 5},
        {"a": "..", "b": "/", "v": 6},
        {"a": "a", "b": "b|c", "v": 7},
    ]);
    let server = serve(vec![rows]);
    let ws = Workspace::new();
    let product = ProductYaml::items(&server.url, "")
        .retries(1)
        .store_documents("collection: items, key: [a, b]")
        .to_string();
    let file = ws.product("items_product", &product);
    let check = |run: &crate::util::Run| {
        assert_eq!(task(&receipt(run), "to_documents")["rows"], 7, "{run}");
        assert!(run.stderr.contains("1 row(s) had the key of an earlier row"), "{run}");
    };
    check(&ws.run(&file).expect(0));
    let local = ws.documents("items");
    let mut values: Vec<i64> = local.values().map(|fields| fields["v"].as_i64().unwrap()).collect();
    values.sort_unstable();
    // The repeated key holds its last row.
    assert_eq!(values, [0, 2, 3, 4, 5, 6, 7]);
    assert!(
        local.contains_key("a%7Cb|c") && local.contains_key("a|b%7Cc"),
        "{local:?}"
    );
    assert!(
        local.contains_key("null|n") && local.contains_key("%6Eull|n"),
        "{local:?}"
    );
    assert!(local.keys().all(|id| id.len() <= 1500), "{local:?}");

    let project = new_project("lookalike");
    check(&gcp(ws.run(&file), &project).expect(0));
    let remote = documents(&project, "items");
    assert_eq!(remote.keys().collect::<Vec<_>>(), local.keys().collect::<Vec<_>>());
    for (id, fields) in &local {
        assert_eq!(
            remote[id]["v"],
            json!({"integerValue": fields["v"].to_string()}),
            "{id}"
        );
    }
}

#[test]
fn plan_receipt_summary_and_logs_name_each_destination_alike() {
    let server = serve(vec![items(0, 3)]);
    let product = ProductYaml::items(&server.url, "")
        .retries(1)
        .store_warehouse("dataset: shop, table: items, write: merge, key: id")
        .store_documents("collection: items, key: id")
        .task("  - id: notify\n    function: send_alerts\n    params: { recipient: ops@example.com }\n")
        .to_string();
    let ws = Workspace::new();
    let file = ws.product("items_product", &product);
    let project = new_project("destinations");
    for remote in [false, true] {
        let on_target = |command: Dpf| if remote { gcp(command, &project) } else { command };
        let data_dir = ws.data();
        let plan = on_target(dpf().current_dir(ws.path()).args([
            "plan".as_ref(),
            file.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ]))
        .expect(0);
        let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
        let planned = |id: &str| {
            plan["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id)
                .unwrap()["destination"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let run = on_target(ws.run(&file)).expect(0);
        let json = receipt(&run);
        let human = on_target(dpf().current_dir(ws.path()).args([
            "run".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
            "--log-format".as_ref(),
            "off".as_ref(),
        ]))
        .expect(0);
        for store in ["to_warehouse", "to_documents"] {
            let destination = planned(store);
            assert_eq!(task(&json, store)["destinations"], json!([destination]), "{run}");
            assert!(
                human.stdout.contains(&format!("→ {destination}")),
                "{destination}\n{human}"
            );
            if remote {
                assert!(
                    run.stderr.contains(&format!("into {destination} ")),
                    "{destination}\n{run}"
                );
            }
        }
        let alert = &json["alerts"][0];
        assert_eq!(alert["destination"], planned("notify"), "{run}");
        assert!(run.stderr.contains(&format!("sent to {}", planned("notify"))), "{run}");
        assert_eq!(alert["file"].is_string(), !remote, "{alert}");
    }
}
