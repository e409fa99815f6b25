//! Data checks in real runs: every kind passing and failing, error against warn, quarantine into
//! `<table>__rejected` on both targets, exit 65 with the stores untouched, and the results in the
//! receipt, the JSON logs and the alerts.

use serde_json::{Value, json};

use crate::util::{ProductYaml, Run, Workspace, bigquery, dpf, gcp, new_project, outbox, receipt, serve, task};

/// The run's logical time: `freshness` measures the newest `at` against it.
const AT: &str = "2025-01-02T06:00:00Z";

/// Six readings that pass every check of [`CHECKS`].
fn good() -> Vec<Value> {
    let regions = ["amer", "emea", "apac"];
    (1..=6)
        .map(|i| {
            json!({
                "id": i,
                "region": regions[i % 3],
                "temp": -5.0 + i as f64 * 4.5,
                "precip": i as f64 * 0.5,
                "at": format!("2025-01-01T{:02}:00:00Z", 5 + i),
            })
        })
        .collect()
}

/// One check of each kind on `clean`; `row_count` is on the extract.
const CHECKS: &str = r#"    checks:
      - not_null: [id, region]
      - unique: id
      - accepted_values: { column: region, values: [amer, emea, apac] }
      - range: { column: temp, min: -60, max: 60 }
        name: temperature is physically possible
      - expect: "precip >= 0"
      - freshness: { column: at, max_age: 1d }
"#;

/// Extracts the readings `server` serves (with `extract_checks` on the extract), cleans them with
/// `checks`, stores them in `shop.items` and, when `alert` is set, alerts on failed checks.
fn product(url: &str, extract_checks: &str, checks: &str, alert: bool) -> String {
    let product = ProductYaml::items(url, "")
        .retries(0)
        .checks(extract_checks)
        .task(CLEAN)
        .checks(checks)
        .store_warehouse("dataset: shop, table: items, write: replace");
    let product = if alert {
        product.task(
            "  - id: checks_alert\n    function: send_alerts\n    params:\n      recipient: ops@example.com\n      when: checks_failed\n",
        )
    } else {
        product
    };
    product.to_string()
}

/// `clean`: the readings, their times as timestamps.
const CLEAN: &str = r#"  - id: clean
    function: transform_sql
    params:
      query: SELECT id, region, temp, precip, CAST("at" AS TIMESTAMP) AS "at" FROM extract_items
"#;

const ROW_COUNT: &str = "    checks:\n      - row_count: { min: 3, max: 100 }\n";

fn run(ws: &Workspace, yaml: &str, code: i32) -> Run {
    let file = ws.product("items_product", yaml);
    ws.run(&file).args(["--at", AT]).expect(code)
}

/// The results of task `id`'s checks by name.
fn checks(receipt: &Value, id: &str) -> serde_json::Map<String, Value> {
    task(receipt, id)["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("task {id} has no checks in {receipt:#}"))
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

fn stored(ws: &Workspace) -> Vec<Value> {
    ws.query("SELECT id, region, temp, precip FROM shop.items ORDER BY id")
}

/// A bad batch: what it changes in [`good`], the check that catches it on which task, the rows it
/// finds failing and a sample it shows.
struct Bad {
    change: fn(&mut Vec<Value>),
    task: &'static str,
    check: &'static str,
    failing_rows: u64,
    sample: Option<Value>,
}

#[test]
fn every_kind_of_check_passes_good_data_and_stops_bad_data_with_exit_65_storing_nothing() {
    let ws = Workspace::new();
    let server = serve(vec![Value::Array(good())]);
    let receipt = receipt(&run(&ws, &product(&server.url, ROW_COUNT, CHECKS, false), 0));
    let results = checks(&receipt, "clean");
    assert_eq!(results.len(), 6, "{results:#?}");
    for (name, result) in &results {
        assert_eq!(result["status"], "passed", "{name}: {result:#}");
        assert_eq!(
            (result["rows"].as_u64(), result["failing_rows"].as_u64()),
            (Some(6), Some(0))
        );
        assert!(result.get("samples").is_none(), "{result:#}");
    }
    let kinds: Vec<&str> = results.values().map(|r| r["check"].as_str().unwrap()).collect();
    for kind in ["not_null", "unique", "accepted_values", "range", "expect", "freshness"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
    assert_eq!(checks(&receipt, "extract_items")["row_count"]["status"], "passed");
    let before = stored(&ws);
    assert_eq!(before.len(), 6);

    let cases = [
        Bad {
            change: |rows| rows[2]["region"] = Value::Null,
            task: "clean",
            check: "not_null(id, region)",
            failing_rows: 1,
            sample: Some(json!({"id": 3, "region": null})),
        },
        Bad {
            change: |rows| rows[3]["id"] = json!(3),
            task: "clean",
            check: "unique(id)",
            failing_rows: 2,
            sample: Some(json!({"id": 3})),
        },
        Bad {
            change: |rows| rows[1]["region"] = json!("mars"),
            task: "clean",
            check: "accepted_values(region)",
            failing_rows: 1,
            sample: Some(json!({"region": "mars"})),
        },
        Bad {
            change: |rows| rows[4]["temp"] = json!(999.0),
            task: "clean",
            check: "temperature is physically possible",
            failing_rows: 1,
            sample: Some(json!({"temp": 999.0})),
        },
        Bad {
            change: |rows| rows[0]["precip"] = json!(-1.0),
            task: "clean",
            check: "precip >= 0",
            failing_rows: 1,
            sample: None,
        },
        Bad {
            change: |rows| {
                for row in rows.iter_mut() {
                    let at = row["at"].as_str().unwrap().replace("2025-01-01", "2024-12-01");
                    row["at"] = json!(at);
                }
            },
            task: "clean",
            check: "freshness(at)",
            failing_rows: 0,
            sample: None,
        },
        Bad {
            change: |rows| rows.truncate(2),
            task: "extract_items",
            check: "row_count",
            failing_rows: 0,
            sample: None,
        },
    ];
    for bad in cases {
        let mut rows = good();
        (bad.change)(&mut rows);
        let server = serve(vec![Value::Array(rows)]);
        let run = run(&ws, &product(&server.url, ROW_COUNT, CHECKS, false), 65);
        let receipt = crate::util::receipt(&run);
        let context = format!("{}\n{run}", bad.check);
        assert_eq!(receipt["status"], "check_failed", "{context}");
        let results = checks(&receipt, bad.task);
        let failed: Vec<&String> = results.keys().filter(|n| results[*n]["status"] == "failed").collect();
        assert_eq!(failed, [bad.check], "{context}");
        let result = &results[bad.check];
        assert_eq!(result["severity"], "error", "{context}");
        assert_eq!(result["failing_rows"], bad.failing_rows, "{context}");
        if let Some(sample) = &bad.sample {
            assert!(
                result["samples"].as_array().unwrap().contains(sample),
                "{context}\n{result:#}"
            );
        }
        assert_eq!(task(&receipt, bad.task)["status"], "failed", "{context}");
        let error = task(&receipt, bad.task)["error"].as_str().unwrap().to_owned();
        assert!(error.contains(bad.check), "{context}");
        assert_eq!(task(&receipt, "to_warehouse")["status"], "skipped", "{context}");
        assert_eq!(stored(&ws), before, "the warehouse is unchanged after {context}");
    }
}

#[test]
fn the_sample_of_an_expect_shows_the_whole_row_and_the_summary_names_the_check() {
    let ws = Workspace::new();
    let mut rows = good();
    rows[0]["precip"] = json!(-1.0);
    let server = serve(vec![Value::Array(rows)]);
    let yaml = product(&server.url, "", CHECKS, false);
    let file = ws.product("items_product", &yaml);
    let human = dpf()
        .current_dir(ws.path())
        .args([
            "run".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            ws.data().as_os_str(),
        ])
        .args(["--at", AT, "--format", "text", "--log-format", "off"])
        .expect(65);
    assert!(human.stdout.contains("check `precip >= 0` failed (error)"), "{human}");
    assert!(
        human
            .stdout
            .contains("1 of 6 rows has a value for which the expectation is false"),
        "{human}"
    );

    let run = run(&ws, &yaml, 65);
    let sample = &checks(&receipt(&run), "clean")["precip >= 0"]["samples"][0];
    assert_eq!(
        (&sample["id"], &sample["region"], &sample["precip"]),
        (&json!(1), &json!("emea"), &json!(-1.0)),
        "{sample:#}"
    );
    assert!(
        sample["at"].as_str().unwrap().starts_with("2025-01-01T06:00:00"),
        "{sample:#}"
    );
}

/// The JSON log lines of `run` for task `id` that carry a `key` field.
fn logged(run: &Run, id: &str, key: &str) -> Vec<Value> {
    run.stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["task"] == id && line.get(key).is_some())
        .collect()
}

#[test]
fn a_warn_check_lets_the_run_go_on_and_alerts_while_an_error_check_stops_it() {
    let ws = Workspace::new();
    let mut rows = good();
    rows[0]["precip"] = json!(-1.0);
    rows[3]["precip"] = json!(-2.5);
    let server = serve(vec![Value::Array(rows)]);
    let warn = CHECKS.replace(
        "      - expect: \"precip >= 0\"\n",
        "      - expect: \"precip >= 0\"\n        name: rain is never negative\n        severity: warn\n",
    );
    let run = run(&ws, &product(&server.url, "", &warn, true), 0);
    let receipt = receipt(&run);
    assert_eq!(receipt["status"], "succeeded", "{run}");
    let result = &checks(&receipt, "clean")["rain is never negative"];
    assert_eq!(
        (&result["status"], &result["severity"]),
        (&json!("failed"), &json!("warn"))
    );
    assert_eq!(result["failing_rows"], 2);
    assert_eq!(result["samples"].as_array().unwrap().len(), 2, "{result:#}");
    assert_eq!(stored(&ws).len(), 6, "warned rows are stored");

    let lines = logged(&run, "clean", "check");
    assert_eq!(lines.len(), 1, "{run}");
    assert_eq!(lines[0]["severity"], "WARNING");
    assert_eq!(lines[0]["check"]["name"], "rain is never negative");
    assert_eq!(lines[0]["check"]["samples"][1]["precip"], -2.5);

    let alert = &receipt["alerts"][0];
    assert_eq!(
        (&alert["task"], &alert["rows"]),
        (&json!("checks_alert"), &json!(1)),
        "{receipt:#}"
    );
    let mail = outbox(&ws).pop().expect("a checks_failed alert");
    assert!(mail.contains("items_product: 1 data checks failed in run"), "{mail}");
    assert!(mail.contains("rain is never negative"), "{mail}");
    assert!(
        mail.contains(r#""precip":-2.5"#),
        "the e-mail shows the samples\n{mail}"
    );

    let run = self::run(&ws, &product(&server.url, "", CHECKS, true), 65);
    let receipt = crate::util::receipt(&run);
    assert_eq!(task(&receipt, "checks_alert")["status"], "skipped");
    let lines = logged(&run, "clean", "check");
    assert_eq!(lines[0]["severity"], "ERROR", "{run}");
}

#[test]
fn checks_that_all_pass_are_one_json_log_line() {
    let ws = Workspace::new();
    let server = serve(vec![Value::Array(good())]);
    let run = run(&ws, &product(&server.url, "", CHECKS, true), 0);
    let lines = logged(&run, "clean", "checks");
    assert_eq!(lines.len(), 1, "{run}");
    assert_eq!(lines[0]["message"], "6 of 6 checks passed");
    assert_eq!(lines[0]["checks"].as_array().unwrap().len(), 6);
    assert!(outbox(&ws).is_empty(), "no check failed, no alert");
    assert_eq!(receipt(&run)["alerts"], json!([]));
}

#[test]
fn a_failed_check_is_in_the_on_failure_email_with_its_samples() {
    let ws = Workspace::new();
    let mut rows = good();
    rows[4]["temp"] = json!(999.0);
    let server = serve(vec![Value::Array(rows)]);
    let alert = "  - id: heat_alert\n    function: send_alerts\n    params:\n      recipient: ops@example.com\n      when: temp > 30\n      on_failure: oncall@example.com\n";
    let yaml = product(&server.url, "", CHECKS, false) + alert;
    let run = run(&ws, &yaml, 65);
    assert_eq!(receipt(&run)["alerts"][0]["trigger"], "failure", "{run}");
    let mail = outbox(&ws).pop().unwrap();
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(mail.contains("temperature is physically possible"), "{mail}");
    assert!(mail.contains(r#"{"temp":999.0}"#), "{mail}");
}

const QUARANTINE: &str = r#"    checks:
      - range: { column: temp, min: -60, max: 60 }
        name: temperature is physically possible
        on_fail: quarantine
      - not_null: region
        on_fail: quarantine
      - row_count: { min: 1 }
"#;

fn glitched() -> Vec<Value> {
    let mut rows = good();
    rows[1]["temp"] = json!(999.0);
    rows[4]["region"] = Value::Null;
    rows
}

#[test]
fn quarantined_rows_go_to_the_rejected_table_and_the_rest_are_stored() {
    let ws = Workspace::new();
    let server = serve(vec![Value::Array(glitched())]);
    let run = run(&ws, &product(&server.url, "", QUARANTINE, false), 0);
    let receipt = receipt(&run);
    let results = checks(&receipt, "clean");
    let range = &results["temperature is physically possible"];
    assert_eq!(
        (&range["status"], &range["quarantined"]),
        (&json!("failed"), &json!(true))
    );
    assert_eq!(task(&receipt, "clean")["rows"], 4);
    assert_eq!(task(&receipt, "to_warehouse")["rows"], 4);
    let destinations = task(&receipt, "to_warehouse")["destinations"].to_string();
    assert!(destinations.contains("items__rejected"), "{destinations}");

    let ids: Vec<Value> = stored(&ws).iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(3), json!(4), json!(6)]);
    let rejected = ws.query("SELECT id, temp, _dpf_check, _dpf_run_id, _dpf_row FROM shop.items__rejected ORDER BY id");
    let run_id = receipt["run_id"].clone();
    assert_eq!(
        rejected,
        [
            json!({"id": 2, "temp": 999.0, "_dpf_check": "temperature is physically possible", "_dpf_run_id": run_id, "_dpf_row": 1}),
            json!({"id": 5, "temp": 17.5, "_dpf_check": "not_null(region)", "_dpf_run_id": run_id, "_dpf_row": 4}),
        ]
    );

    // A rerun of the tick writes its rows once; the next tick quarantines its own beside them.
    let count = || ws.query("SELECT COUNT(*) AS n, COUNT(DISTINCT _dpf_run_id) AS runs FROM shop.items__rejected");
    let again = self::run(&ws, &product(&server.url, "", QUARANTINE, false), 0);
    assert_eq!(count(), [json!({"n": 2, "runs": 1})], "{again}");
    let file = ws.product("items_product", &product(&server.url, "", QUARANTINE, false));
    let next = ws.run(&file).args(["--at", "2025-01-03T06:00:00Z"]).expect(0);
    assert_eq!(count(), [json!({"n": 4, "runs": 2})], "{next}");
}

#[test]
fn on_the_gcp_target_quarantined_rows_land_in_bigquery_and_a_failed_check_leaves_the_tables_as_they_were() {
    let project = new_project("checks");
    let ws = Workspace::new();
    let server = serve(vec![Value::Array(glitched())]);
    let file = ws.product("items_product", &product(&server.url, "", QUARANTINE, false));
    let run = gcp(ws.run(&file), &project).args(["--at", AT]).expect(0);
    let run_id = receipt(&run)["run_id"].as_str().unwrap().to_owned();
    let rows = |sql: &str| -> Vec<String> {
        bigquery(&project, sql)
            .iter()
            .map(|row| {
                row.values()
                    .map(|v| v.as_str().unwrap_or("null").to_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };
    assert_eq!(rows("SELECT id FROM shop.items ORDER BY id"), ["1", "3", "4", "6"]);
    assert_eq!(
        // Columns come back in the order of their names.
        rows("SELECT _dpf_check, _dpf_run_id, id FROM shop.items__rejected ORDER BY id"),
        [
            format!("temperature is physically possible,{run_id},2"),
            format!("not_null(region),{run_id},5")
        ]
    );

    let mut rows_now = good();
    rows_now[0]["id"] = Value::Null;
    let server = serve(vec![Value::Array(rows_now)]);
    let file = ws.product("items_product", &product(&server.url, "", CHECKS, false));
    let failed = gcp(ws.run(&file), &project).args(["--at", AT]).expect(65);
    assert_eq!(receipt(&failed)["status"], "check_failed");
    assert_eq!(
        rows("SELECT id FROM shop.items ORDER BY id"),
        ["1", "3", "4", "6"],
        "{failed}"
    );
    assert_eq!(rows("SELECT COUNT(*) FROM shop.items__rejected"), ["2"]);
}

#[test]
fn checks_that_cannot_run_fail_the_task_before_any_store_and_say_where() {
    let ws = Workspace::new();
    let server = serve(vec![Value::Array(good())]);
    // An extract's columns are known only once it ran: the check names one it does not yield.
    let misspelt = "    checks:\n      - not_null: regoin\n";
    let run = run(&ws, &product(&server.url, misspelt, "", false), 1);
    let error = task(&receipt(&run), "extract_items")["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("check `not_null(regoin)` names column `regoin`") && error.contains("did you mean `region`?"),
        "{error}"
    );
    assert_eq!(task(&receipt(&run), "to_warehouse")["status"], "skipped");

    // An `expect` that does not plan is placed at its line and column in the product file.
    let bad_sql = "    checks:\n      - expect: \"precip >= nope\"\n";
    let yaml = product(&server.url, "", bad_sql, false);
    let run = self::run(&ws, &yaml, 1);
    let error = task(&receipt(&run), "clean")["error"].as_str().unwrap().to_owned();
    let line = yaml.lines().position(|l| l.contains("precip >= nope")).unwrap() + 1;
    let column = yaml.lines().nth(line - 1).unwrap().find("nope").unwrap() + 1;
    assert!(
        error.contains(&format!("items_product.yaml:{line}:{column}:")),
        "{error}"
    );
    assert!(error.contains("check `precip >= nope`"), "{error}");

    // Accepted values of another type than the column's: the check is named at its line.
    let mistyped = "    checks:\n      - accepted_values: { column: region, values: [1, 2] }\n";
    let yaml = product(&server.url, "", mistyped, false);
    let run = self::run(&ws, &yaml, 1);
    let error = task(&receipt(&run), "clean")["error"].as_str().unwrap().to_owned();
    let line = yaml.lines().position(|l| l.contains("accepted_values")).unwrap() + 1;
    assert!(error.contains(&format!("items_product.yaml:{line}:")), "{error}");
    assert!(error.contains("cannot be evaluated"), "{error}");
    assert_eq!(task(&receipt(&run), "to_warehouse")["status"], "skipped");
}

#[test]
fn nulls_pass_unique_freshness_takes_the_newest_instant_and_a_comment_ends_at_its_line() {
    let ws = Workspace::new();
    let mut rows = good();
    // Two rows without a region pass `unique` as under a SQL UNIQUE constraint.
    rows[0]["region"] = Value::Null;
    rows[3]["region"] = Value::Null;
    let server = serve(vec![Value::Array(rows)]);
    // As text, 12:00+09:00 sorts after 11:00Z, the newest instant, yet is 03:00 UTC.
    let clean = r#"  - id: clean
    function: transform_sql
    params:
      query: |
        SELECT id, region, precip,
               CASE WHEN id = 2 THEN '2025-01-01T12:00:00+09:00' ELSE CAST("at" AS VARCHAR) END AS at_text
        FROM extract_items
    checks:
      - unique: [region, id]
      - unique: region
        severity: warn
      - freshness: { column: at_text, max_age: 20h }
      - expect: "precip >= 0 -- never negative"
"#;
    let yaml = ProductYaml::items(&server.url, "")
        .retries(0)
        .task(clean)
        .store_warehouse("dataset: shop, table: items, write: replace")
        .to_string();
    let run = run(&ws, &yaml, 0);
    let results = checks(&receipt(&run), "clean");
    assert_eq!(results["unique(region, id)"]["status"], "passed", "{results:#?}");
    // The four regions left come in pairs.
    assert_eq!(results["unique(region)"]["failing_rows"], 4, "{results:#?}");
    let freshness = &results["freshness(at_text)"];
    assert_eq!(freshness["status"], "passed", "{freshness:#}");
    assert!(
        freshness["message"].as_str().unwrap().contains("2025-01-01T11:00:00"),
        "{freshness:#}"
    );
    assert_eq!(
        results["precip >= 0 -- never negative"]["status"], "passed",
        "{results:#?}"
    );
}
