//! State between runs: incremental cursors, run history, `dpf status` and `dpf state`, on the local
//! target (`state.db`) and on the gcp target (the Firestore emulator).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Reply, Server};
use crate::util::{ProductYaml, Workspace, backfill, dpf, gcp, new_project, receipt, task};

/// An orders API over `count` orders (order `i` updated at minute `i` of 2025-01-01). It answers
/// those updated after `updated_since` when `filters`, else all of them.
fn orders_api(count: Arc<AtomicUsize>, filters: bool) -> Server {
    Server::start(move |seen, _| {
        let since = seen.query("updated_since").unwrap_or_default();
        let orders: Vec<Value> = (0..count.load(Ordering::SeqCst))
            .map(|i| json!({"id": i, "updated_at": updated_at(i), "amount": i}))
            .filter(|order| !filters || since.is_empty() || order["updated_at"].as_str().unwrap() > since.as_str())
            .collect();
        Reply::json(json!({ "data": orders }).to_string())
    })
}

/// When order `i` was last updated: minute `i` from 2025-01-01.
fn updated_at(i: usize) -> String {
    let time = chrono::DateTime::from_timestamp(1_735_689_600 + 60 * i as i64, 0).unwrap();
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `orders_product`: an incremental extract of the orders API and a merge into `shop.orders`,
/// `incremental` and `store` as the inside of their flow mappings.
fn orders_product(url: &str, incremental: &str, store: &str) -> String {
    ProductYaml::new("orders_product")
        .set("schedule", "\"0 * * * *\"")
        .task(&format!(
            "  - id: extract_orders\n    function: extract_http\n    incremental: {{ {incremental} }}\n    params:\n      \
             url: {url}/orders\n      query: {{ updated_since: \"{{{{ cursor }}}}\" }}\n      records: data\n"
        ))
        .store_warehouse(&format!("dataset: shop, table: orders, {store}"))
        .to_string()
}

const FROM_2025: &str = "cursor: updated_at, initial: \"2025-01-01T00:00:00Z\"";
const MERGE: &str = "write: merge, key: id";

/// The `updated_since` of each request the server saw.
fn asked(server: &Server) -> Vec<String> {
    server
        .seen()
        .iter()
        .map(|seen| seen.query("updated_since").unwrap_or_default())
        .collect()
}

/// The orders API over `count` orders (see [`orders_api`]), and a workspace whose product merges
/// them, after its first run.
fn first_run(count: usize, filters: bool, incremental: &str) -> (Arc<AtomicUsize>, Server, Workspace, PathBuf) {
    let count = Arc::new(AtomicUsize::new(count));
    let server = orders_api(count.clone(), filters);
    let ws = Workspace::new();
    let file = ws.product("orders_product", &orders_product(&server.url, incremental, MERGE));
    ws.run(&file).expect(0);
    (count, server, ws, file)
}

fn distinct_orders(ws: &Workspace) -> Value {
    ws.query("SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM shop.orders")[0].clone()
}

/// `dpf state show FILE --format json` in the workspace's data dir.
fn state_show(ws: &Workspace, file: &std::path::Path) -> crate::util::Dpf {
    dpf()
        .args(["state".as_ref(), "show".as_ref(), file.as_os_str()])
        .args(["--format", "json"])
        .args(["--data-dir".as_ref(), ws.data().as_os_str()])
}

/// What `command` (a [`state_show`]) printed.
#[track_caller]
fn shown(command: crate::util::Dpf) -> Value {
    serde_json::from_str(&command.expect(0).stdout).unwrap()
}

/// The product's state on the local target.
#[track_caller]
fn show(ws: &Workspace, file: &std::path::Path) -> Value {
    shown(state_show(ws, file))
}

#[test]
fn a_second_run_reads_from_the_cursor_the_first_saved() {
    let count = Arc::new(AtomicUsize::new(10));
    let server = orders_api(count.clone(), true);
    let ws = Workspace::new();
    let file = ws.product("orders_product", &orders_product(&server.url, FROM_2025, MERGE));
    let first = receipt(&ws.run(&file).expect(0));
    // Order 0 was updated at the initial cursor itself: not after it.
    assert_eq!(task(&first, "extract_orders")["rows"], 9);
    count.store(25, Ordering::SeqCst);
    let second = receipt(&ws.run(&file).expect(0));
    assert_eq!(task(&second, "extract_orders")["rows"], 15);
    assert_eq!(asked(&server), ["2025-01-01T00:00:00Z", &updated_at(9)]);
    assert_eq!(distinct_orders(&ws), json!({"n": 24, "ids": 24}));
    let state = show(&ws, &file);
    assert_eq!(state["cursors"], json!({"extract_orders": updated_at(24)}));
    assert_eq!(state["runs"].as_array().unwrap().len(), 2);
    assert_eq!(state["runs"][0]["cursors"], json!({"extract_orders": updated_at(24)}));

    // A run with nothing new keeps the cursor where it was.
    ws.run(&file).expect(0);
    assert_eq!(show(&ws, &file)["cursors"], json!({"extract_orders": updated_at(24)}));
}

#[test]
fn lookback_reads_a_window_again_and_merge_keeps_each_order_once() {
    let count = Arc::new(AtomicUsize::new(30));
    let server = orders_api(count.clone(), true);
    let ws = Workspace::new();
    let incremental = format!("{FROM_2025}, lookback: 10m");
    let file = ws.product("orders_product", &orders_product(&server.url, &incremental, MERGE));
    ws.run(&file).expect(0);
    count.store(40, Ordering::SeqCst);
    let second = receipt(&ws.run(&file).expect(0));
    // From minute 29 less 10: orders 20..39 again. (Order 0 is at `initial`: not after it.)
    assert_eq!(asked(&server), ["2025-01-01T00:00:00Z", &updated_at(19)]);
    assert_eq!(task(&second, "extract_orders")["rows"], 20);
    assert_eq!(distinct_orders(&ws), json!({"n": 39, "ids": 39}));
}

#[test]
fn rows_at_or_before_the_cursor_are_dropped_when_the_api_cannot_filter() {
    let (count, _server, ws, file) = first_run(10, false, FROM_2025);
    count.store(12, Ordering::SeqCst);
    let run = ws.run(&file).expect(0);
    assert_eq!(task(&receipt(&run), "extract_orders")["rows"], 2);
    assert!(run.stderr.contains("kept 2 of 12 rows"), "{run}");
    assert_eq!(distinct_orders(&ws), json!({"n": 11, "ids": 11}));
}

#[test]
fn a_store_that_fails_leaves_the_cursor_and_the_next_run_reads_its_rows_again() {
    let (count, server, ws, _file) = first_run(10, true, FROM_2025);
    count.store(20, Ordering::SeqCst);
    // The same rows into a table of another shape: the store fails.
    let broken = orders_product(&server.url, FROM_2025, "write: merge, key: no_such_column");
    let file = ws.product("orders_product", &broken);
    ws.run(&file).expect(1);
    assert_eq!(show(&ws, &file)["cursors"], json!({"extract_orders": updated_at(9)}));
    let file = ws.product("orders_product", &orders_product(&server.url, FROM_2025, MERGE));
    ws.run(&file).expect(0);
    assert_eq!(asked(&server), ["2025-01-01T00:00:00Z", &updated_at(9), &updated_at(9)]);
    assert_eq!(distinct_orders(&ws), json!({"n": 19, "ids": 19}));
    let state = show(&ws, &file);
    let statuses: Vec<&Value> = state["runs"].as_array().unwrap().iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, ["succeeded", "failed", "succeeded"]);
}

#[test]
fn full_refresh_and_reset_start_from_initial_and_backfill_leaves_the_cursor() {
    let (_count, server, ws, file) = first_run(10, true, FROM_2025);
    ws.run(&file).args(["--full-refresh"]).expect(0);
    assert_eq!(asked(&server)[1], "2025-01-01T00:00:00Z");
    let reset = dpf()
        .args([
            "state".as_ref(),
            "reset".as_ref(),
            file.as_os_str(),
            "--task".as_ref(),
            "extract_orders".as_ref(),
        ])
        .args(["--data-dir".as_ref(), ws.data().as_os_str()])
        .expect(0);
    assert!(reset.stdout.contains("forgot the cursor of extract_orders"), "{reset}");
    assert_eq!(show(&ws, &file)["cursors"], json!({}));
    ws.run(&file).expect(0);
    assert_eq!(asked(&server)[2], "2025-01-01T00:00:00Z");
    let saved = show(&ws, &file)["cursors"].clone();

    // A backfill reads each tick's window and leaves the cursor alone.
    backfill(&ws, &file, "2025-03-01T00:00:00Z", "2025-03-01T01:00:00Z").expect(0);
    assert_eq!(&asked(&server)[3..], ["2025-02-28T23:00:00Z", "2025-03-01T00:00:00Z"]);
    assert_eq!(show(&ws, &file)["cursors"], saved);
}

#[test]
fn history_keeps_the_latest_hundred_runs() {
    let (_count, _server, ws, file) = first_run(3, true, FROM_2025);
    // 120 older runs, as earlier invocations would have left them.
    let sqlite = rusqlite::Connection::open(ws.data().join("state.db")).unwrap();
    let record: String = sqlite
        .query_row("SELECT record FROM runs", [], |row| row.get(0))
        .unwrap();
    for n in 0..120 {
        let started = format!("2020-01-01T00:{:02}:{:02}.000Z", n / 60, n % 60);
        let mut old: Value = serde_json::from_str(&record).unwrap();
        old["started_at"] = json!(started);
        sqlite
            .execute(
                "INSERT INTO runs (product, started_at, run_id, record) VALUES ('orders_product', ?1, ?2, ?3)",
                rusqlite::params![started, format!("old-{n}"), old.to_string()],
            )
            .unwrap();
    }
    ws.run(&file).expect(0);
    let runs = show(&ws, &file)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 100);
    assert!(runs[0]["started_at"].as_str().unwrap() > "2026", "{}", runs[0]);
    assert_eq!(runs[99]["started_at"], "2020-01-01T00:00:22.000Z");
}

/// `dpf status` of the workspace's products at `at` as JSON, checking that `--check` exits `check`.
#[track_caller]
fn status(ws: &Workspace, at: &str, check: i32) -> Value {
    let command = || {
        dpf()
            .args(["status", "--format", "json", "--at", at, "--products"])
            .args([ws.path().join("products"), "--data-dir".into(), ws.data()].map(|p| p.into_os_string()))
    };
    command().args(["--check"]).expect(check);
    serde_json::from_str(&command().expect(0).stdout).unwrap()
}

#[test]
fn status_check_tells_on_time_from_late_and_failed() {
    let count = Arc::new(AtomicUsize::new(5));
    let server = orders_api(count, true);
    let ws = Workspace::new();
    let good = orders_product(&server.url, FROM_2025, MERGE).replace("tasks:", "freshness: 30m\ntasks:");
    let file = ws.product("orders_product", &good);
    // Never run, and its 09:00 tick is past its grace at 09:31.
    assert_eq!(status(&ws, "2025-03-01T09:31:00Z", 1)[0]["status"], "late");
    ws.run(&file).args(["--at", "2025-03-01T09:00:00Z"]).expect(0);
    let entries = status(&ws, "2025-03-01T09:31:00Z", 0);
    assert_eq!(entries[0]["status"], "on_time", "{entries}");
    assert_eq!(entries[0]["due"], "2025-03-01T09:00:00Z");
    assert_eq!(entries[0]["cursors"]["extract_orders"], updated_at(4));
    // The 10:00 tick is within its grace until 10:30.
    status(&ws, "2025-03-01T10:29:00Z", 0);
    assert_eq!(status(&ws, "2025-03-01T10:31:00Z", 1)[0]["status"], "late");
    // A failed run of the 10:00 tick: late and failed.
    let broken = good.replace(MERGE, "write: merge, key: no_such_column");
    let file = ws.product("orders_product", &broken);
    ws.run(&file)
        .args(["--at", "2025-03-01T10:00:00Z", "--full-refresh"])
        .expect(1);
    let entries = status(&ws, "2025-03-01T10:10:00Z", 1);
    assert_eq!(entries[0]["status"], "failed");
    assert_eq!(entries[0]["last_run"]["status"], "failed");
    assert_eq!(entries[0]["last_success"]["run_id"], "orders_product-20250301T090000Z");
}

#[test]
fn killed_runs_leave_no_gap_and_no_duplicate() {
    let count = Arc::new(AtomicUsize::new(0));
    let server = orders_api(count.clone(), true);
    let ws = Workspace::new();
    let file = ws.product("orders_product", &orders_product(&server.url, FROM_2025, MERGE));
    let mut seed = 0x2545_f491_u64;
    for _ in 0..20 {
        count.fetch_add(300, Ordering::SeqCst);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let child = ws.run(&file).spawn();
        std::thread::sleep(Duration::from_millis(seed % 400));
        child.kill();
    }
    ws.run(&file).expect(0);
    let total = count.load(Ordering::SeqCst);
    // Order 0 sits at the initial cursor and is never read.
    assert_eq!(distinct_orders(&ws), json!({"n": total - 1, "ids": total - 1}));
}

#[test]
fn on_gcp_the_cursor_lives_in_firestore_and_never_moves_backwards() {
    let count = Arc::new(AtomicUsize::new(10));
    let server = orders_api(count.clone(), true);
    let project = new_project("cursor");
    let run = |ws: &Workspace, file: &std::path::Path| gcp(ws.run(file), &project);
    let ws = Workspace::new();
    let file = ws.product("orders_product", &orders_product(&server.url, FROM_2025, MERGE));
    run(&ws, &file).expect(0);
    let show = |ws: &Workspace| shown(gcp(state_show(ws, &file), &project));
    assert_eq!(show(&ws)["cursors"], json!({"extract_orders": updated_at(9)}));
    count.store(30, Ordering::SeqCst);
    run(&ws, &file).expect(0);
    assert_eq!(asked(&server)[1], updated_at(9));
    assert_eq!(show(&ws)["cursors"], json!({"extract_orders": updated_at(29)}));

    // Two machines at once (no shared lock): one reads from an older cursor by a full refresh of
    // a few orders, the other from the saved one; whichever commits last, the cursor stays the latest.
    count.store(40, Ordering::SeqCst);
    let other = Workspace::new();
    let other_file = other.product("orders_product", &orders_product(&server.url, FROM_2025, MERGE));
    let a = run(&ws, &file).spawn();
    let b = run(&other, &other_file).args(["--full-refresh"]).spawn();
    for child in [a, b] {
        let finished = child.wait();
        assert_eq!(finished.code, 0, "{finished}");
    }
    let state = show(&ws);
    assert_eq!(state["cursors"], json!({"extract_orders": updated_at(39)}));
    assert_eq!(state["runs"].as_array().unwrap().len(), 4);
    // A late writer with an older cursor does not move it back.
    count.store(20, Ordering::SeqCst);
    run(&other, &other_file).args(["--full-refresh"]).expect(0);
    let state = show(&ws);
    assert_eq!(state["cursors"], json!({"extract_orders": updated_at(39)}));

    // History stays at the latest 100 runs: 120 older ones, as earlier runs would have left them.
    let record = &state["runs"][0];
    let database = format!("projects/{project}/databases/(default)");
    let writes: Vec<Value> = (0..120)
        .map(|n| {
            let started = format!("2020-01-01T00:{:02}:{:02}.000Z", n / 60, n % 60);
            let mut old = record.clone();
            old["started_at"] = json!(started);
            json!({"update": {
                "name": format!("{database}/documents/_dpf/orders_product/runs/{started}-old"),
                "fields": {
                    "started_at": {"stringValue": started},
                    "record": {"stringValue": old.to_string()},
                },
            }})
        })
        .collect();
    let url = format!(
        "http://{}/v1/{database}/documents:commit",
        crate::util::emulators().firestore
    );
    crate::util::http("POST", &url, Some(json!({ "writes": writes })));
    assert_eq!(show(&ws)["runs"].as_array().unwrap().len(), 125);
    run(&ws, &file).expect(0);
    let runs = show(&ws)["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 100);
    assert!(runs[0]["started_at"].as_str().unwrap() > "2026", "{}", runs[0]);
    assert_eq!(runs[99]["started_at"], "2020-01-01T00:00:26.000Z");
}

#[test]
fn a_state_store_that_cannot_be_written_warns_and_the_run_still_succeeds() {
    let (_count, _server, ws, file) = first_run(5, true, FROM_2025);
    // The state file is no longer a database: the stores commit, the run is not recorded.
    std::fs::remove_file(ws.data().join("state.db")).unwrap();
    std::fs::create_dir(ws.data().join("state.db")).unwrap();
    let run = ws.run(&file).args(["--full-refresh"]).expect(0);
    assert!(run.stderr.contains("the run is not recorded"), "{run}");
    assert_eq!(distinct_orders(&ws), json!({"n": 4, "ids": 4}));
}

#[test]
fn status_alert_tells_the_on_failure_recipients_of_a_late_product() {
    let count = Arc::new(AtomicUsize::new(3));
    let server = orders_api(count, true);
    let ws = Workspace::new();
    let product = orders_product(&server.url, FROM_2025, MERGE)
        + "  - id: big_orders\n    function: send_alerts\n    input: extract_orders\n    params:\n      \
           recipient: sales@example.com\n      when: \"amount > 100\"\n      on_failure: oncall@example.com\n";
    ws.product("orders_product", &product);
    let status = |at: &str, code: i32| {
        dpf()
            .args(["status", "--alert", "--check", "--at", at, "--products"])
            .args([ws.path().join("products"), "--data-dir".into(), ws.data()].map(|p| p.into_os_string()))
            .expect(code)
    };
    status("2025-03-01T10:30:00Z", 1);
    let sent = crate::util::outbox(&ws);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("To: oncall@example.com"), "{}", sent[0]);
    assert!(sent[0].contains("Subject: orders_product: late"), "{}", sent[0]);
    assert!(
        sent[0].contains("no successful run for its tick 2025-03-01T09:00:00Z"),
        "{}",
        sent[0]
    );
    // On time: nobody is told.
    let file = ws.path().join("products/orders_product.yaml");
    ws.run(&file).args(["--at", "2025-03-01T10:00:00Z"]).expect(0);
    status("2025-03-01T10:30:00Z", 0);
    assert_eq!(crate::util::outbox(&ws).len(), 1);
}
