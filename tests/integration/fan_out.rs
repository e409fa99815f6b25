//! Fan-out extracts (`for_each`) against a real local server: concurrency, rate limits, 429s,
//! failed items skipped or failing the task, items from files and upstream rows, record and replay.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Reply, Seen, Server};
use crate::util::{ProductYaml, Workspace, dpf, outbox, receipt, task, task_error};

/// A city's readings: two rows, each with the city's id.
fn readings(seen: &Seen) -> Reply {
    let city: i64 = seen.query("city").unwrap().parse().unwrap();
    Reply::json(json!({ "data": [ {"city_id": city, "hour": 0}, {"city_id": city, "hour": 1} ] }).to_string())
}

/// `cities`: `fan_out` (task-level YAML lines, indented 4) over `url`/readings?city={{ item.id }},
/// stored in `weather.readings`; an alert tells `oncall@example.com` on failure.
fn product(url: &str, fan_out: &str) -> String {
    ProductYaml::new("cities")
        .task(&format!(
            "  - id: readings\n    function: extract_http\n{fan_out}\n    params:\n      url: {url}/readings\n      \
             query: {{ city: \"{{{{ item.id }}}}\" }}\n      records: data\n"
        ))
        .store_warehouse("dataset: weather, table: readings, write: append")
        .task(
            "  - id: tell\n    function: send_alerts\n    params: { recipient: team@example.com, when: \"hour > 5\", \
             on_failure: oncall@example.com }\n",
        )
        .to_string()
}

/// Items `{id, name}` for ids `0..count`, as a YAML flow list.
fn inline_items(count: usize) -> String {
    let items: Vec<String> = (0..count).map(|i| format!("{{ id: {i}, name: city{i} }}")).collect();
    format!("[{}]", items.join(", "))
}

#[test]
fn two_hundred_items_never_exceed_the_concurrency_and_keep_their_order() {
    let open = Arc::new(Mutex::new((0usize, 0usize)));
    let counting = open.clone();
    let server = Server::start(move |seen, _| {
        {
            let mut open = counting.lock().unwrap();
            open.0 += 1;
            open.1 = open.1.max(open.0);
        }
        // Later items answer sooner, so rows would come back out of order if not kept in it.
        let city: u64 = seen.query("city").unwrap().parse().unwrap();
        std::thread::sleep(Duration::from_millis(2 + (200 - city) % 7));
        counting.lock().unwrap().0 -= 1;
        readings(seen)
    });
    let ws = Workspace::new();
    let fan_out = format!(
        "    for_each: {}\n    concurrency: 5\n    include_item: [name]",
        inline_items(200)
    );
    let file = ws.product("cities", &product(&server.url, &fan_out));
    let run = ws.run(&file).expect(0);
    let receipt = receipt(&run);
    let extract = task(&receipt, "readings");
    assert_eq!(extract["rows"], 400);
    assert_eq!(extract["items"], json!({"total": 200, "succeeded": 200}));
    let most = open.lock().unwrap().1;
    assert!((2..=5).contains(&most), "{most} requests in flight at once");
    assert_eq!(server.seen().len(), 200);
    let rows = ws.query("SELECT city_id, name FROM weather.readings WHERE hour = 0");
    let expected: Vec<Value> = (0..200)
        .map(|i| json!({"city_id": i, "name": format!("city{i}")}))
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn a_rate_limit_spaces_the_requests_and_429s_slow_the_task_down() {
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen_at = times.clone();
    // The first three requests are refused with 429 and no Retry-After: the task slows down, it does
    // not spend its (zero) retries.
    let server = Server::start(move |seen, number| {
        seen_at.lock().unwrap().push(Instant::now());
        if number < 3 {
            return Reply::status(429, "slow down");
        }
        readings(seen)
    });
    let ws = Workspace::new();
    let fan_out = format!("    for_each: {}\n    rate_limit: 40", inline_items(12));
    let file = ws.product("cities", &product(&server.url, &fan_out));
    let run = ws.run(&file).expect(0);
    assert_eq!(task(&receipt(&run), "readings")["rows"], 24);
    assert!(run.stderr.contains("HTTP 429); slowing down"), "{run}");
    let times = times.lock().unwrap();
    assert_eq!(times.len(), 15);
    // 15 requests at no more than 40 a second take at least 14 intervals of 25 ms, and the 429s
    // stretched them further.
    let span = *times.last().unwrap() - times[0];
    assert!(span >= Duration::from_millis(14 * 25), "{span:?}");
}

/// A server whose city 3 answers 404.
fn city_three_is_missing() -> Server {
    Server::start(|seen, _| match seen.query("city").as_deref() {
        Some("3") => Reply::status(404, "no such city"),
        _ => readings(seen),
    })
}

#[test]
fn a_skipped_item_is_named_in_the_receipt_and_the_failure_alert() {
    let server = city_three_is_missing();
    let ws = Workspace::new();
    let fan_out = format!(
        "    for_each: {}\n    on_item_error: skip\n    include_item: [name]",
        inline_items(6)
    );
    let file = ws.product("cities", &product(&server.url, &fan_out));
    let run = ws.run(&file).expect(0);
    let receipt = receipt(&run);
    let items = &task(&receipt, "readings")["items"];
    assert_eq!(
        (items["total"].as_u64(), items["succeeded"].as_u64()),
        (Some(6), Some(5))
    );
    let failed = &items["failed"][0];
    assert_eq!(failed["item"], 4);
    assert_eq!(failed["label"], "item 4 (name=city3)");
    assert!(failed["error"].as_str().unwrap().contains("404"), "{failed}");
    assert_eq!(task(&receipt, "readings")["rows"], 10);
    // The text part, quoted-printable decoded.
    let mail = outbox(&ws)
        .join("\n")
        .replace("\r\n", "\n")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(mail.contains("skipped 1 failed item\n"), "{mail}");
    assert!(mail.contains("item 4 (name=city3)"), "{mail}");
}

#[test]
fn a_failed_item_fails_the_task_by_default_and_nothing_is_stored() {
    let server = city_three_is_missing();
    let ws = Workspace::new();
    let fan_out = format!("    for_each: {}", inline_items(6));
    let file = ws.product("cities", &product(&server.url, &fan_out));
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "readings");
    assert!(error.starts_with("item 4 (id=3, name=city3): "), "{error}");
    assert!(error.contains("404"), "{error}");
    assert!(!ws.data().join("warehouse/weather/readings").exists());

    // Every item failing fails the task even when items are skipped.
    let fan_out = "    for_each: [{ id: 3 }, { id: 3 }]\n    on_item_error: skip";
    let file = ws.product("cities", &product(&server.url, fan_out));
    let error = task_error(&ws.run(&file).expect(1), "readings");
    assert!(
        error.starts_with("every one of the 2 items failed; the first: item 1 (id=3)"),
        "{error}"
    );
}

#[test]
fn items_come_from_a_file_next_to_the_product_or_from_an_upstream_task() {
    let server = Server::start(|seen, _| match seen.path() {
        "/cities" => Reply::json(json!([{"id": 7, "name": "Oslo"}, {"id": 8, "name": "Lima"}]).to_string()),
        _ => readings(seen),
    });
    let ws = Workspace::new();
    std::fs::create_dir_all(ws.path().join("products")).unwrap();
    std::fs::write(ws.path().join("products/cities.csv"), "id,name\n1,Paris\n2,Rome\n").unwrap();
    let fan_out = "    for_each: { file: cities.csv }\n    include_item: [name]";
    let file = ws.product("cities", &product(&server.url, fan_out));
    ws.run(&file).expect(0);
    assert_eq!(
        ws.query("SELECT city_id, name FROM weather.readings WHERE hour = 1"),
        [
            json!({"city_id": 1, "name": "Paris"}),
            json!({"city_id": 2, "name": "Rome"})
        ]
    );

    let upstream = ProductYaml::new("cities")
        .extract("cities", &format!("{}/cities", server.url), "")
        .task(&format!(
            "  - id: readings\n    function: extract_http\n    for_each: {{ task: cities }}\n    include_item: [name]\n    \
             params:\n      url: {}/readings\n      query: {{ city: \"{{{{ item.id }}}}\" }}\n      records: data\n",
            server.url
        ))
        .store_warehouse("dataset: weather, table: upstream, write: append")
        .to_string();
    let file = ws.product("cities", &upstream);
    let run = ws.run(&file).expect(0);
    assert_eq!(task(&receipt(&run), "readings")["items"]["total"], 2);
    assert_eq!(
        ws.query("SELECT city_id, name FROM weather.upstream WHERE hour = 0"),
        [
            json!({"city_id": 7, "name": "Oslo"}),
            json!({"city_id": 8, "name": "Lima"})
        ]
    );
}

#[test]
fn each_item_is_recorded_and_replayed() {
    let server = Server::start(|seen, _| readings(seen));
    let ws = Workspace::new();
    let fan_out = format!("    for_each: {}", inline_items(3));
    let file = ws.product("cities", &product(&server.url, &fan_out));
    ws.run(&file).args(["--record"]).expect(0);
    let recorded = std::fs::read_to_string(ws.path().join("products/fixtures/cities/readings.json")).unwrap();
    for city in 0..3 {
        assert!(recorded.contains(&format!("city={city}")), "{recorded}");
    }
    let asked = server.seen().len();
    let run = ws.run(&file).args(["--replay"]).expect(0);
    assert_eq!(task(&receipt(&run), "readings")["rows"], 6);
    assert_eq!(server.seen().len(), asked);
}

#[test]
fn validate_says_where_a_fan_out_cannot_work() {
    let ws = Workspace::new();
    let file = ws.product(
        "cities",
        "name: cities\ntasks:\n  - id: readings\n    function: extract_http\n    for_each: [{ id: 1, name: a }, { id: 2 }]\n    \
         include_item: [name]\n    incremental: { cursor: hour }\n    params:\n      url: http://x/{{ item.id }}/{{ item.nmae }}\n  \
         - id: plain\n    function: extract_http\n    on_item_error: skip\n    params: { url: \"http://x/{{ item }}\" }\n  \
         - id: clean\n    function: transform_sql\n    concurrency: 2\n    params: { query: SELECT 1 AS one }\n",
    );
    let run = dpf().args(["validate".as_ref(), file.as_os_str()]).expect(1);
    let out = format!("{}{}", run.stdout, run.stderr);
    for expected in [
        "item 2 (id=2) has no field `name` to copy onto its rows",
        "`incremental` with `for_each`",
        "item 1 (id=1, name=a) has no field `nmae`",
        "`on_item_error` without `for_each`",
        "`{{ item }}` in a task without `for_each:`",
        "`concurrency` on `clean`, which does not extract",
    ] {
        assert!(out.contains(expected), "no `{expected}` in\n{out}");
    }
    assert!(out.contains("cities.yaml:9:"), "{out}");
}
