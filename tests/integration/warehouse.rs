//! `transform_sql` with `engine: bigquery`: SQL that runs where the data is (BigQuery, or the local
//! warehouse), its result merged into a destination, its rows brought back for an alert.

use serde_json::{Value, json};

use crate::server::{Reply, Server};
use crate::util::{
    Dpf, ProductYaml, Workspace, bigquery, dpf, emulators, gcp, http, new_project, outbox, receipt, task,
};

/// Hourly readings of two cities; `hot` makes Lima's hottest hour 35.
fn readings(hot: bool) -> Server {
    Server::start(move |_, _| {
        let mut rows = Vec::new();
        for (city, base) in [("Oslo", 10), ("Lima", 20)] {
            for hour in 0..3 {
                let bump = if hot && city == "Lima" && hour == 2 { 15 } else { hour };
                rows.push(json!({"city": city, "hour": hour, "temperature": base + bump}));
            }
        }
        Reply::json(json!({ "data": rows }).to_string())
    })
}

/// Readings stored in `weather.readings`, then each city's high computed where the table is and
/// merged into `weather.highs`; an alert reads the highs.
fn product(url: &str) -> String {
    ProductYaml::new("highs")
        .extract("readings", &format!("{url}/readings"), "      records: data")
        .store_warehouse("dataset: weather, table: readings, write: merge, key: [city, hour]")
        .task(
            "  - id: daily\n    function: transform_sql\n    params:\n      engine: bigquery\n      query: |\n        \
             SELECT city, MAX(temperature) AS high, COUNT(*) AS hours\n        FROM weather.readings\n        \
             GROUP BY city\n      destination: { dataset: weather, table: highs, write: merge, key: city }\n",
        )
        .task(
            "  - id: hot\n    function: send_alerts\n    input: daily\n    params: { recipient: team@example.com, when: \
             \"high > 30\" }\n",
        )
        .to_string()
}

/// The step `daily` of the JSON plan of `file`, planned by `command` made of
/// `dpf plan FILE --format json`.
fn plan_step(file: &std::path::Path, command: impl FnOnce(Dpf) -> Dpf) -> Value {
    let plan = command(dpf().args(["plan".as_ref(), file.as_os_str(), "--format".as_ref(), "json".as_ref()])).expect(0);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "daily")
        .unwrap()
        .clone()
}

#[test]
fn on_the_local_target_the_query_runs_over_the_warehouse_and_merges_its_result() {
    let ws = Workspace::new();
    let file = ws.product("highs", &product(&readings(false).url));
    let daily = plan_step(&file, |plan| plan);
    // It waits for the store that writes the table it reads, and reads no task's output itself.
    assert_eq!(
        (daily["after"].clone(), daily["reads"].clone()),
        (json!(["to_warehouse"]), json!([]))
    );
    assert_eq!(daily["warehouse"], json!({"pulls_rows": true}));

    let run = ws.run(&file).expect(0);
    assert_eq!(task(&receipt(&run), "daily")["rows"], 2);
    let highs = "SELECT city, high, hours FROM weather.highs ORDER BY city";
    let expected = [
        json!({"city": "Lima", "high": 22, "hours": 3}),
        json!({"city": "Oslo", "high": 12, "hours": 3}),
    ];
    assert_eq!(ws.query(highs), expected);
    assert!(outbox(&ws).is_empty());

    // A hotter day: the highs are merged on the city, and the alert reads the new ones.
    let file = ws.product("highs", &product(&readings(true).url));
    let run = ws.run(&file).args(["--at", "2025-01-02T00:00:00Z"]).expect(0);
    assert_eq!(task(&receipt(&run), "hot")["rows"], 1);
    assert_eq!(ws.query(highs)[0], json!({"city": "Lima", "high": 35, "hours": 3}));
    assert_eq!(ws.query(highs).len(), 2);
    assert_eq!(outbox(&ws).len(), 1);
}

#[test]
fn in_bigquery_the_merge_job_has_the_run_s_id_and_a_rerun_commits_nothing_twice() {
    let project = new_project("pushdown");
    let ws = Workspace::new();
    let file = ws.product("highs", &product(&readings(true).url));
    let at = ["--at", "2025-01-01T00:00:00Z"];
    let run = gcp(ws.run(&file).args(at), &project).expect(0);
    let receipt = receipt(&run);
    assert_eq!(task(&receipt, "daily")["rows"], 2);
    // The alert read the result's rows, brought back from BigQuery.
    assert_eq!(task(&receipt, "hot")["rows"], 1);
    let job = format!(
        "http://{}/bigquery/v2/projects/{project}/jobs/dpf_highs-20250101T000000Z_daily",
        emulators().bigquery
    );
    let job = http("GET", &job, None);
    assert_eq!(job["status"]["state"], "DONE", "{job}");
    assert!(
        job["configuration"]["query"]["query"]
            .as_str()
            .unwrap()
            .starts_with("MERGE"),
        "{job}"
    );
    let highs = || bigquery(&project, "SELECT city, high, hours FROM weather.highs ORDER BY city");
    let first = highs();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["high"], json!("35"));

    let again = gcp(ws.run(&file).args(at), &project).expect(0);
    assert!(again.stderr.contains("already committed"), "{again}");
    assert_eq!(highs(), first);
    assert_eq!(task(&crate::util::receipt(&again), "hot")["rows"], 1);

    // The plan asks BigQuery what the query would read.
    let daily = plan_step(&file, |plan| gcp(plan, &project));
    assert!(daily["warehouse"]["bytes_processed"].is_u64(), "{daily}");
}

#[test]
fn validate_reads_the_query_as_bigquery_sql_and_places_its_errors() {
    let ws = Workspace::new();
    let file = ws.product(
        "highs",
        "name: highs\ntasks:\n  - id: readings\n    function: extract_http\n    params: { url: \"http://x/r\" }\n  \
         - id: daily\n    function: transform_sql\n    params:\n      engine: bigquery\n      query: SELECT * FROM readings\n  \
         - id: broken\n    function: transform_sql\n    params:\n      engine: bigquery\n      query: SELECT FROM WHERE\n      \
         destination: { dataset: weather, table: \"bad.name\" }\n",
    );
    let run = dpf().args(["validate".as_ref(), file.as_os_str()]).expect(1);
    for expected in [
        "`engine: bigquery` without a `destination`",
        "`readings` is a task's output, which BigQuery does not hold",
        "SQL does not parse",
        "table names use letters, digits",
    ] {
        assert!(run.stdout.contains(expected), "no `{expected}` in\n{run}");
    }
}
