//! Shards: one run of a fan-out product as several processes (`--shard I/N`, Cloud Run task and
//! Kubernetes completion indexes), each on its share of the items, together storing exactly what
//! one process stores, on the local target and against the emulators.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::server::{Reply, Server};
use crate::util::{Dpf, ProductYaml, Run, Workspace, bigquery, dpf, gcp, new_project, receipt, task};

/// A server of each city's three hourly readings.
fn readings() -> Server {
    Server::start(|seen, _| {
        let city: i64 = seen.query("city").unwrap().parse().unwrap();
        let rows: Vec<Value> = (0..3)
            .map(|hour| json!({"city_id": city, "hour": hour, "temperature": city * 10 + hour}))
            .collect();
        Reply::json(json!({ "data": rows }).to_string())
    })
}

/// `cities` over ten cities, declared as `shards: 3`: merged into `weather.readings` on
/// (city_id, hour), appended to `weather.log`, and kept in the `readings` documents.
fn product(url: &str) -> String {
    let items: Vec<String> = (0..10).map(|i| format!("{{ id: {i}, name: city{i} }}")).collect();
    ProductYaml::new("cities")
        .set("shards", "3")
        .task(&format!(
            "  - id: fetch\n    function: extract_http\n    for_each: [{}]\n    include_item: [name]\n    params:\n      \
             url: {url}/readings\n      query: {{ city: \"{{{{ item.id }}}}\" }}\n      records: data\n",
            items.join(", ")
        ))
        .store_warehouse("dataset: weather, table: readings, write: merge, key: [city_id, hour]")
        .task("  - id: to_log\n    function: store_to_bigquery\n    params: { dataset: weather, table: log }\n")
        .store_documents("collection: readings, key: [city_id, hour]")
        .to_string()
}

/// Runs `commands` at once and waits for all of them; each must exit 0.
fn all_at_once(commands: Vec<Dpf>) -> Vec<Run> {
    let children: Vec<_> = commands.into_iter().map(Dpf::spawn).collect();
    children
        .into_iter()
        .map(|child| {
            let run = child.wait();
            assert_eq!(run.code, 0, "{run}");
            run
        })
        .collect()
}

/// The three shards of the tick of 2025-01-01: by `--shard`, by Cloud Run's task index and by a
/// Kubernetes completion index (with the product's `shards: 3`).
fn shards(command: impl Fn() -> Dpf) -> Vec<Dpf> {
    vec![
        command().args(["--shard", "0/3"]),
        command()
            .env("CLOUD_RUN_TASK_INDEX", "1")
            .env("CLOUD_RUN_TASK_COUNT", "3"),
        command().env("JOB_COMPLETION_INDEX", "2"),
    ]
}

#[test]
fn local_shards_together_store_what_one_run_stores() {
    let server = readings();
    let ws = Workspace::new();
    let file = ws.product("cities", &product(&server.url));
    let at = ["--at", "2025-01-01T00:00:00Z"];
    let runs = all_at_once(shards(|| ws.run(&file).args(at)));
    let shares: Vec<(Value, Value, Value)> = runs
        .iter()
        .map(|run| {
            let receipt = receipt(run);
            (
                receipt["shard"].clone(),
                receipt["run_id"].clone(),
                task(&receipt, "fetch")["items"]["total"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shares,
        [
            (
                json!({"index": 0, "count": 3}),
                json!("cities-20250101T000000Z-shard-0-of-3"),
                json!(3)
            ),
            (
                json!({"index": 1, "count": 3}),
                json!("cities-20250101T000000Z-shard-1-of-3"),
                json!(3)
            ),
            (
                json!({"index": 2, "count": 3}),
                json!("cities-20250101T000000Z-shard-2-of-3"),
                json!(4)
            ),
        ]
    );
    // A shard run again writes what it wrote before, once.
    ws.run(&file).args(at).args(["--shard", "1/3"]).expect(0);

    let whole = Workspace::new();
    let file = whole.product("cities", &product(&server.url));
    let run = whole.run(&file).args(at).expect(0);
    assert!(receipt(&run).get("shard").is_none());
    for table in ["weather.readings", "weather.log"] {
        let sql = format!("SELECT * FROM {table} ORDER BY city_id, hour");
        let rows = ws.query(&sql);
        assert_eq!(rows.len(), 30, "{table}");
        assert_eq!(rows, whole.query(&sql), "{table}");
    }
    assert_eq!(ws.documents("readings"), whole.documents("readings"));
}

/// Every row of `table` in `project`, in order.
fn rows(project: &str, table: &str) -> Vec<BTreeMap<String, Value>> {
    bigquery(
        project,
        &format!("SELECT city_id, hour, name, temperature FROM {table} ORDER BY city_id, hour"),
    )
}

#[test]
fn shards_on_the_gcp_target_store_what_one_run_stores() {
    let server = readings();
    let ws = Workspace::new();
    let file = ws.product("cities", &product(&server.url));
    let at = ["--at", "2025-01-01T00:00:00Z"];
    let (sharded, whole) = (new_project("shards"), new_project("whole"));
    all_at_once(shards(|| gcp(ws.run(&file).args(at), &sharded)));
    gcp(ws.run(&file).args(at).args(["--shard", "2/3"]), &sharded).expect(0);
    gcp(ws.run(&file).args(at), &whole).expect(0);
    for table in ["weather.readings", "weather.log"] {
        let stored = rows(&sharded, table);
        assert_eq!(stored.len(), 30, "{table}");
        assert_eq!(stored, rows(&whole, table), "{table}");
    }
    let count = |project: &str| bigquery(project, "SELECT COUNT(*) AS n FROM weather.readings")[0]["n"].clone();
    assert_eq!(count(&sharded), json!("30"));
}

#[test]
fn a_product_without_a_fan_out_is_not_sharded() {
    let server = readings();
    let ws = Workspace::new();
    let plain = ProductYaml::new("plain")
        .extract(
            "fetch",
            &format!("{}/readings?city=1", server.url),
            "      records: data",
        )
        .store_warehouse("dataset: weather, table: plain, write: append")
        .to_string();
    let file = ws.product("plain", &plain);
    let run = ws.run(&file).args(["--shard", "0/2"]).expect(2);
    assert!(
        run.stderr.contains("has no `for_each` extract to share between shards"),
        "{run}"
    );
    // A Cloud Run Job of one task is one process.
    ws.run(&file)
        .env("CLOUD_RUN_TASK_INDEX", "0")
        .env("CLOUD_RUN_TASK_COUNT", "1")
        .expect(0);
    let run = ws.run(&file).args(["--shard", "2/2"]).expect(2);
    assert!(run.stderr.contains("shards count from 0 to 1"), "{run}");

    let file = ws.product(
        "plain",
        &plain
            .replace("name: plain\n", "name: plain\nshards: 2\n")
            .replace("write: append", "write: replace"),
    );
    let run = dpf().args(["validate".as_ref(), file.as_os_str()]).expect(1);
    assert!(run.stdout.contains("`shards: 2` without a `for_each` extract"), "{run}");
    assert!(
        run.stdout.contains("each shard would replace the rows of the others"),
        "{run}"
    );
}
