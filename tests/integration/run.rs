//! `dpf run` against real local HTTP servers: pagination, auth, retries, bad responses, stores,
//! alerts, record and replay, logs and exit codes.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Reply, Seen, Server, closed_port_url};
use crate::util::{ProductYaml, Workspace, dpf, outbox, receipt, records, task, task_error};

/// `items_product`, each task retried twice: `extract_items` gets `url`/items with `params` (YAML
/// lines indented for `params:`), and `to_warehouse` stores the rows in `shop.items` with `write`.
fn product(url: &str, params: &str, write: &str) -> String {
    product_getting(&format!("{url}/items"), params, write)
}

/// [`product`], whose extract gets `url` itself.
fn product_getting(url: &str, params: &str, write: &str) -> String {
    ProductYaml::new("items_product")
        .retries(2)
        .extract("extract_items", url, params)
        .store_warehouse(&format!("dataset: shop, table: items, write: {write}, key: id"))
        .to_string()
}

fn page_of(seen: &Seen, param: &str, default: usize) -> usize {
    seen.query(param).map_or(default, |p| p.parse().unwrap())
}

#[test]
fn page_number_pagination_stops_at_a_short_page() {
    let server = Server::start(|seen, _| {
        let page = page_of(seen, "p", 1);
        let size: usize = seen.query("size").unwrap().parse().unwrap();
        let count = if page < 3 { size } else { 2 };
        Reply::json(json!({ "results": records((page - 1) * size, count) }).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: results\n      pagination: { type: page_number, param: p, page_size_param: size, page_size: 10 }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    let extract = task(&receipt, "extract_items");
    assert_eq!(
        (extract["rows"].as_u64(), extract["pages"].as_u64()),
        (Some(22), Some(3))
    );
    // Pages are requested ahead of decoding, at most 4 at a time: a few past the end at most.
    let mut pages: Vec<usize> = server.seen().iter().map(|s| page_of(s, "p", 0)).collect();
    pages.sort_unstable();
    assert_eq!(pages[..3], [1, 2, 3]);
    assert!(pages.len() <= 6, "{pages:?}");
    assert_eq!(
        ws.query("SELECT COUNT(DISTINCT id) AS n FROM shop.items"),
        [json!({"n": 22})]
    );
}

/// A server of 20 full pages of 10 records (page-number pagination) whose later pages answer sooner,
/// counting the requests it holds at once; `reply` may replace a page's answer.
fn racing_pages(
    reply: impl Fn(usize) -> Option<Reply> + Send + Sync + 'static,
) -> (Server, std::sync::Arc<Mutex<(usize, usize)>>) {
    let open = std::sync::Arc::new(Mutex::new((0usize, 0usize)));
    let counting = open.clone();
    let server = Server::start(move |seen, _| {
        let page = page_of(seen, "page", 1);
        {
            let mut open = counting.lock().unwrap();
            open.0 += 1;
            open.1 = open.1.max(open.0);
        }
        std::thread::sleep(Duration::from_millis(5 * (25 - page.min(24)) as u64));
        counting.lock().unwrap().0 -= 1;
        reply(page).unwrap_or_else(|| {
            let count = if page <= 20 { 10 } else { 0 };
            Reply::json(json!({ "data": records((page - 1) * 10, count) }).to_string())
        })
    });
    (server, open)
}

#[test]
fn prefetched_pages_keep_their_order_and_at_most_four_are_in_flight() {
    let (server, open) = racing_pages(|_| None);
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: page_number, max_pages: 50 }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    assert_eq!(task(&receipt, "extract_items")["rows"], 200);
    assert_eq!(task(&receipt, "extract_items")["pages"], 21);
    let most = open.lock().unwrap().1;
    assert!((2..=4).contains(&most), "{most} requests in flight at once");
    let ids: Vec<Value> = ws
        .query("SELECT id FROM shop.items")
        .into_iter()
        .map(|row| row["id"].clone())
        .collect();
    assert_eq!(ids, (0..200).map(|i| json!(i)).collect::<Vec<_>>());
    // The empty page 21 ends it; no more than the window is asked past it.
    assert!(server.seen().len() <= 24, "{}", server.seen().len());
}

#[test]
fn a_failed_page_among_prefetched_ones_fails_the_extract_by_its_number() {
    let (server, _) = racing_pages(|page| (page == 3).then(|| Reply::status(404, "gone")));
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: page_number, max_pages: 50 }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "extract_items");
    assert!(error.starts_with("page 3: "), "{error}");
    assert!(error.contains("404"), "{error}");
    assert!(!ws.data().join("warehouse/shop/items").exists());
}

#[test]
fn a_type_conflict_on_a_prefetched_page_names_the_page() {
    let (server, _) = racing_pages(|page| {
        (page == 7).then(|| Reply::json(json!({"data": [{"id": 60, "name": "x", "price": "free"}]}).to_string()))
    });
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: page_number, max_pages: 50 }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let error = task_error(&ws.run(&file).expect(1), "extract_items");
    assert!(
        error.contains("field `price` is a string in record 1 of page 7, but a number since page 1"),
        "{error}"
    );
}

#[test]
fn a_body_cut_off_mid_stream_is_retried_then_fails_with_its_page() {
    let body = json!({ "data": records(0, 100), "next": null }).to_string();
    let cut = body.len() / 2;
    let server = Server::start(move |_, _| Reply::json(body.clone()).cut(cut));
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: next_url, next_url_path: next }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    // A transient failure: the scheduler may run it again (exit 75).
    let error = task_error(&ws.run(&file).expect(75), "extract_items");
    assert!(error.starts_with("page 1: "), "{error}");
    assert!(error.contains("broke off"), "{error}");
    // Each of the 3 attempts was sent, and nothing was decoded from half a body.
    assert_eq!(server.seen().len(), 3);
    assert!(!ws.data().join("warehouse/shop/items").exists());
}

#[test]
fn next_url_pages_are_requested_before_their_predecessor_is_decoded() {
    // Each page points to the next; the link sits after the records, which are large.
    let server = Server::start(|seen, _| {
        let page = page_of(seen, "n", 1);
        let next = (page < 5).then(|| format!("/items?n={}", page + 1));
        Reply::json(json!({ "data": records((page - 1) * 2000, 2000), "next": next }).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: next_url, next_url_path: next }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    assert_eq!(task(&receipt, "extract_items")["rows"], 10_000);
    let pages: Vec<usize> = server.seen().iter().map(|s| page_of(s, "n", 1)).collect();
    assert_eq!(pages, [1, 2, 3, 4, 5]);
    assert_eq!(
        ws.query("SELECT COUNT(DISTINCT id) AS n, MIN(id) AS lo, MAX(id) AS hi FROM shop.items"),
        [json!({"n": 10_000, "lo": 0, "hi": 9_999})]
    );
}

#[test]
fn a_next_url_guessed_from_the_body_s_end_gives_way_to_the_one_decoded() {
    // Each page names its successor twice: first before the records (the one that counts, as with
    // any repeated key), and last after them, wrongly. The guess from the end is requested early,
    // then dropped.
    let server = Server::start(|seen, _| {
        if seen.query("decoy").is_some() {
            return Reply::json(json!({ "data": records(900_000, 7), "next": null }).to_string());
        }
        let page = page_of(seen, "n", 1);
        let next = if page < 3 {
            json!(format!("/items?n={}", page + 1))
        } else {
            json!(null)
        };
        let data = Value::Array(records((page - 1) * 10, 10));
        Reply::json(format!(r#"{{"next":{next},"data":{data},"next":"/items?decoy=1"}}"#))
    });
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: next_url, next_url_path: next }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    assert_eq!(task(&receipt, "extract_items")["pages"], 3);
    assert_eq!(
        ws.query("SELECT COUNT(*) AS n, MIN(id) AS lo, MAX(id) AS hi FROM shop.items"),
        [json!({"n": 30, "lo": 0, "hi": 29})]
    );
    let pages: Vec<usize> = server
        .seen()
        .iter()
        .filter(|s| s.query("decoy").is_none())
        .map(|s| page_of(s, "n", 1))
        .collect();
    assert_eq!(pages, [1, 2, 3]);
}

/// A successful run of offset pagination asking for pages of 25 from an API that gives `given`
/// records per page below offset `end` and none past it: the workspace, the server and the receipt.
fn offset_pages(given: usize, end: usize) -> (Workspace, Server, Value) {
    let server = Server::start(move |seen, _| {
        let offset = page_of(seen, "offset", 0);
        let count = if offset < end { given } else { 0 };
        Reply::json(json!({ "items": records(offset, count) }).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: items\n      pagination: { type: offset, page_size_param: limit, page_size: 25 }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    (ws, server, receipt)
}

#[test]
fn offset_pagination_advances_by_the_records_received() {
    let (_ws, server, receipt) = offset_pages(25, 50);
    assert_eq!(task(&receipt, "extract_items")["rows"], 50);
    let mut offsets: Vec<usize> = server.seen().iter().map(|s| page_of(s, "offset", 0)).collect();
    offsets.sort_unstable();
    assert_eq!(offsets[..3], [0, 25, 50]);
    assert!(offsets.len() <= 6 && offsets.iter().all(|o| o % 25 == 0), "{offsets:?}");
    assert!(server.seen().iter().all(|s| s.query("limit").as_deref() == Some("25")));
}

#[test]
fn offsets_requested_ahead_are_dropped_when_pages_hold_more_than_their_size() {
    // Asked for 25, the API gives 30: the next offset is 30, not the 25 requested ahead.
    let (ws, server, receipt) = offset_pages(30, 90);
    assert_eq!(task(&receipt, "extract_items")["rows"], 90);
    assert_eq!(
        ws.query("SELECT COUNT(DISTINCT id) AS n, MAX(id) AS hi FROM shop.items"),
        [json!({"n": 90, "hi": 89})]
    );
    let offsets: Vec<usize> = server.seen().iter().map(|s| page_of(s, "offset", 0)).collect();
    for decoded in [0, 30, 60, 90] {
        assert!(offsets.contains(&decoded), "{offsets:?}");
    }
}

#[test]
fn cursor_pagination_follows_the_cursor_until_it_is_empty() {
    let server = Server::start(|seen, _| {
        let page = seen
            .query("after")
            .map_or(0, |c| c.trim_start_matches('c').parse().unwrap());
        let next = if page < 2 {
            json!(format!("c{}", page + 1))
        } else {
            json!(null)
        };
        Reply::json(json!({ "data": records(page * 5, 5), "paging": {"next_cursor": next} }).to_string())
    });
    let ws = Workspace::new();
    let params =
        "      records: data\n      pagination: { type: cursor, param: after, cursor_path: paging.next_cursor }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    assert_eq!(task(&receipt, "extract_items")["rows"], 15);
    let cursors: Vec<Option<String>> = server.seen().iter().map(|s| s.query("after")).collect();
    assert_eq!(cursors, [None, Some("c1".into()), Some("c2".into())]);
}

#[test]
fn next_url_pagination_follows_relative_and_absolute_urls() {
    let server = Server::start(|seen, _| {
        let page = page_of(seen, "page", 1);
        let next = match page {
            1 => json!("/items?page=2"),
            2 => json!(format!(
                "{}/items?page=3",
                seen.header("host").map(|h| format!("http://{h}")).unwrap()
            )),
            _ => json!(""),
        };
        Reply::json(json!({ "data": records(page * 10, 3), "links": {"next": next} }).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: next_url, next_url_path: links.next }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    assert_eq!(task(&receipt, "extract_items")["pages"], 3);
    assert_eq!(server.seen()[2].query("page").as_deref(), Some("3"));
}

#[test]
fn link_header_pagination_follows_rel_next() {
    let server = Server::start(|seen, _| {
        let page = page_of(seen, "page", 1);
        let reply = Reply::json(Value::Array(records(page * 10, 4)).to_string());
        if page < 4 {
            let link = format!(
                "</items?page={}>; rel=\"next\", </items?page=4>; rel=\"last\"",
                page + 1
            );
            reply.header("Link", &link)
        } else {
            reply
        }
    });
    let ws = Workspace::new();
    let params = "      pagination: { type: link_header }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let receipt = receipt(&ws.run(&file).expect(0));
    assert_eq!(task(&receipt, "extract_items")["rows"], 16);
}

#[test]
fn endless_pagination_stops_at_max_pages_with_an_error() {
    let server = Server::start(|seen, _| {
        let page = page_of(seen, "page", 1);
        Reply::json(json!({"data": records(page, 1), "next": format!("/items?page={}", page + 1)}).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: next_url, next_url_path: next, max_pages: 5 }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "extract_items");
    assert!(error.contains("did not end after 5 pages"), "{error}");
    assert_eq!(server.seen().len(), 5);
    assert!(
        !ws.data().join("warehouse/shop/items").exists(),
        "nothing is stored after a failed extract"
    );
}

#[test]
fn a_next_url_that_comes_back_stops_at_once() {
    // Pages 1, 2, 3, then back to 2: a cursor that repeats.
    let server = Server::start(|seen, _| {
        let page = page_of(seen, "page", 1);
        let next = if page == 3 { 2 } else { page + 1 };
        Reply::json(json!({"data": records(page, 1), "next": format!("/items?page={next}")}).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: next_url, next_url_path: next }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let error = task_error(&ws.run(&file).expect(1), "extract_items");
    assert!(error.contains("page 3 points back to page 2 ("), "{error}");
    assert!(error.ends_with("/items?page=2): the API's pagination loops"), "{error}");
    assert_eq!(server.seen().len(), 3);
}

fn auth_server(check: fn(&Seen) -> bool) -> Server {
    Server::start(move |seen, _| {
        if check(seen) {
            Reply::json(Value::Array(records(0, 2)).to_string())
        } else {
            Reply::status(401, "{\"error\": \"unauthorized\"}")
        }
    })
}

#[test]
fn every_auth_kind_sends_its_credentials() {
    type Check = fn(&Seen) -> bool;
    let cases: [(&str, Check); 4] = [
        ("{ type: bearer, token: \"${secret:API_TOKEN}\" }", |s| {
            s.header("authorization") == Some("Bearer t0k3n-s3cr3t")
        }),
        (
            "{ type: basic, username: reader, password: \"${env:API_TOKEN}\" }",
            |s| {
                // base64("reader:t0k3n-s3cr3t")
                s.header("authorization") == Some("Basic cmVhZGVyOnQwazNuLXMzY3IzdA==")
            },
        ),
        (
            "{ type: api_key, name: X-Api-Key, value: \"${secret:API_TOKEN}\" }",
            |s| s.header("x-api-key") == Some("t0k3n-s3cr3t"),
        ),
        (
            "{ type: api_key, name: key, value: \"${secret:API_TOKEN}\", in: query }",
            |s| s.query("key").as_deref() == Some("t0k3n-s3cr3t"),
        ),
    ];
    for (auth, check) in cases {
        let server = auth_server(check);
        let ws = Workspace::new();
        let file = ws.product(
            "items_product",
            &product(&server.url, &format!("      auth: {auth}"), "append"),
        );
        let run = ws.run(&file).env("API_TOKEN", "t0k3n-s3cr3t").expect(0);
        assert_eq!(task(&receipt(&run), "extract_items")["rows"], 2, "{auth}");
        assert!(!run.stdout.contains("t0k3n") && !run.stderr.contains("t0k3n"), "{run}");
        // Wrong credentials: a permanent error, not retried.
        let run = ws.run(&file).env("API_TOKEN", "wrong-token-value").expect(1);
        assert_eq!(task(&receipt(&run), "extract_items")["attempts"], 1, "{run}");
    }
}

#[test]
fn a_secret_from_dot_env_is_used_and_an_unset_one_is_named() {
    let server = auth_server(|s| s.header("authorization") == Some("Bearer from-dot-env"));
    let ws = Workspace::new();
    let params = "      auth: { type: bearer, token: \"${secret:API_TOKEN}\" }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "extract_items");
    assert!(error.contains("`${secret:API_TOKEN}` is not set"), "{error}");
    std::fs::write(ws.path().join(".env"), "# credentials\nAPI_TOKEN=\"from-dot-env\"\n").unwrap();
    ws.run(&file).expect(0);
}

#[test]
fn transient_errors_are_retried_honouring_retry_after() {
    let server = Server::start(|_, number| match number {
        0 => Reply::status(429, "slow down").header("Retry-After", "1"),
        1 => Reply::status(503, "unavailable"),
        _ => Reply::json(Value::Array(records(0, 3)).to_string()),
    });
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "      format: json", "append"));
    let started = std::time::Instant::now();
    let run = ws.run(&file).expect(0);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    let extract = task(&receipt(&run), "extract_items").clone();
    assert_eq!(
        (extract["attempts"].as_u64(), extract["rows"].as_u64()),
        (Some(3), Some(3))
    );
    let warnings: Vec<Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["severity"] == "WARNING")
        .collect();
    assert_eq!(warnings.len(), 2, "{run}");
    assert!(warnings[0]["message"].as_str().unwrap().contains("HTTP 429"), "{run}");
}

#[test]
fn a_timeout_is_retried() {
    let server = Server::start(|_, number| {
        let reply = Reply::json(Value::Array(records(0, 1)).to_string());
        if number == 0 {
            reply.delay(Duration::from_millis(1500))
        } else {
            reply
        }
    });
    let ws = Workspace::new();
    let file = ws.product(
        "items_product",
        &product(&server.url, "      timeout_seconds: 0.3", "append"),
    );
    let run = ws.run(&file).expect(0);
    assert_eq!(task(&receipt(&run), "extract_items")["attempts"], 2);
    assert!(run.stderr.contains("within 0.3 s"), "{run}");
}

#[test]
fn transient_errors_after_all_retries_exit_75() {
    let server = Server::start(|_, _| Reply::status(500, "boom"));
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", "append"));
    let run = ws.run(&file).expect(75);
    let first = receipt(&run);
    assert_eq!(first["status"], "failed_transient");
    assert_eq!(task(&first, "extract_items")["attempts"], 3);
    assert_eq!(task(&first, "to_warehouse")["status"], "skipped");
    assert_eq!(server.seen().len(), 3);

    // Nothing listening: connection errors are transient too.
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&closed_port_url(), "", "append"));
    let run = ws.run(&file).expect(75);
    assert!(
        task(&receipt(&run), "extract_items")["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
}

#[test]
fn bad_bodies_are_permanent_errors_that_say_what_is_wrong() {
    let cases = [
        (
            "application/json",
            "{\"items\": [1, 2,",
            "format: json",
            "not valid JSON",
        ),
        ("application/json", "", "format: json", "body is empty"),
        (
            "application/json",
            "{\"other\": []}",
            "records: items",
            "has no `items`",
        ),
        (
            "application/json",
            "[1, 2]",
            "format: json",
            "expected an object (one record)",
        ),
        ("text/csv", "id,name\n1,a\n2,b,extra\n", "format: csv", "not valid CSV"),
        (
            "application/x-ndjson",
            "{\"id\": 1}\nnope\n",
            "format: ndjson",
            "line 2 of the NDJSON",
        ),
    ];
    for (content_type, body, params, expected) in cases {
        let server = Server::start(move |_, _| Reply::with(content_type, body));
        let ws = Workspace::new();
        let file = ws.product(
            "items_product",
            &product(&server.url, &format!("      {params}"), "append"),
        );
        let run = ws.run(&file).expect(1);
        let error = task_error(&run, "extract_items");
        assert!(error.contains(expected), "{body:?}: {error}");
        assert_eq!(server.seen().len(), 1, "{body:?} was retried");
    }
}

#[test]
fn a_type_conflict_between_pages_names_the_field_and_the_page() {
    let server = Server::start(|seen, _| {
        let page = page_of(seen, "page", 1);
        let price = if page == 2 { json!("n/a") } else { json!(9.5) };
        let data = if page <= 2 {
            json!([{"id": page, "price": price}])
        } else {
            json!([])
        };
        Reply::json(json!({ "data": data }).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: data\n      pagination: { type: page_number }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "extract_items");
    assert!(
        error.contains("field `price` is a string in record 1 of page 2, but a number since page 1"),
        "{error}"
    );
}

#[test]
fn csv_ndjson_and_gzip_bodies_become_rows() {
    let server = Server::start(|seen, _| match seen.path() {
        "/items.csv" => Reply::with("text/csv", "id,name,price\n1,a,1.5\n2,b,\n"),
        "/items.ndjson" => Reply::with(
            "application/x-ndjson",
            "{\"id\":1,\"name\":\"a\"}\n{\"id\":2,\"price\":2}\n",
        ),
        _ => {
            // Compressed only when dpf asks for it.
            assert!(
                seen.header("accept-encoding").unwrap_or_default().contains("gzip"),
                "{seen:?}"
            );
            Reply::gzip(Value::Array(records(1, 2)).to_string().as_bytes())
        }
    });
    for (path, format) in [
        ("items.csv", "csv"),
        ("items.ndjson", "ndjson"),
        ("items.json.gz", "json"),
    ] {
        let ws = Workspace::new();
        let yaml = product_getting(
            &format!("{}/{path}", server.url),
            &format!("      format: {format}"),
            "append",
        );
        let file = ws.product("items_product", &yaml);
        ws.run(&file).expect(0);
        let rows = ws.query("SELECT id, name, price FROM shop.items ORDER BY id");
        assert_eq!(rows.len(), 2, "{format}");
        assert_eq!(rows[0]["id"], 1);
    }
}

#[test]
fn bodies_past_the_size_limit_or_bombs_fail_at_once_and_keep_the_table() {
    // 64 MiB of JSON whitespace in about 64 KB of gzip; an endless chunked stream; a long plain body.
    let bomb = Reply::gzip(&[b"[".as_slice(), &vec![b' '; 64 << 20], b"]"].concat());
    let bomb = Mutex::new(Some(bomb));
    let server = Server::start(move |seen, _| match seen.path() {
        "/ok" => Reply::json(Value::Array(records(1, 2)).to_string()),
        "/bomb" => bomb.lock().unwrap().take().expect("the bomb is asked for once"),
        "/endless" => Reply::endless("[{\"id\": 1},"),
        "/busy" => Reply::status(503, &"busy ".repeat(400_000)),
        _ => Reply::json(format!("[{}]", vec!["{\"id\": 1}"; 200_000].join(","))),
    });
    let ws = Workspace::new();
    let run_at = |path: &str, params: &str, code: i32| {
        let yaml = product_getting(&format!("{}/{path}", server.url), params, "append");
        ws.run(&ws.product("items_product", &yaml)).expect(code)
    };
    run_at("ok", "", 0);
    let cases = [
        ("bomb", "", "more than 500 times: a decompression bomb"),
        (
            "endless",
            "      max_response_mb: 1",
            "was refused: it holds more than 1 MB once decoded (`max_response_mb: 1`)",
        ),
        (
            "long",
            "      max_response_mb: 1",
            "was refused: it holds more than 1 MB once decoded (`max_response_mb: 1`)",
        ),
    ];
    for (path, params, expected) in cases {
        let run = run_at(path, params, 1);
        let error = task_error(&run, "extract_items");
        assert!(error.starts_with("the response from http://127.0.0.1"), "{error}");
        assert!(error.contains(expected), "{path}: {error}");
        assert_eq!(
            task(&receipt(&run), "extract_items")["error_kind"],
            "permanent",
            "{run}"
        );
    }
    // An error's body is only read for its excerpt: a large one leaves the status as it is.
    let error = task_error(&run_at("busy", "      max_response_mb: 1", 75), "extract_items");
    assert!(error.contains("answered HTTP 503: busy busy"), "{error}");
    assert_eq!(ws.query("SELECT id FROM shop.items ORDER BY id").len(), 2);
}

#[test]
fn redirects_slow_bodies_and_unsendable_headers_say_what_happened() {
    let elsewhere = Server::start(|_, _| Reply::json("[]"));
    let other = elsewhere.url.clone();
    let server = Server::start(move |seen, _| match seen.path() {
        "/loop" => Reply::status(302, "").header("Location", "/loop"),
        "/away" => Reply::status(307, "").header("Location", &format!("{other}/items")),
        _ => Reply::json("[{\"id\": 1}]").stall(Duration::from_millis(1500)),
    });
    let ws = Workspace::new();
    let run_at = |path: &str, params: &str, code: i32| {
        let yaml = product_getting(&format!("{}/{path}", server.url), params, "append");
        let file = ws.product("items_product", &yaml);
        ws.run(&file).env("NOTE", "one\r\nInjected: two").expect(code)
    };
    let error = task_error(&run_at("loop", "", 1), "extract_items");
    assert!(
        error.contains("/loop redirected more than 10 times (the last to http://127.0.0.1:"),
        "{error}"
    );
    let error = task_error(&run_at("away", "", 1), "extract_items");
    assert!(
        error.contains(&format!("/away redirects to another origin, {}/items", elsewhere.url)),
        "{error}"
    );
    assert!(elsewhere.seen().is_empty());
    let run = run_at("slow", "      timeout_seconds: 0.5", 75);
    let error = task_error(&run, "extract_items");
    assert!(
        error.contains("/slow did not finish within 0.5 s (0 bytes arrived)"),
        "{error}"
    );
    let run = run_at("items", "      headers: { X-Note: \"${env:NOTE}\" }", 1);
    let error = task_error(&run, "extract_items");
    assert_eq!(
        error,
        "header `x-note` cannot be sent: header values cannot hold line breaks or NUL"
    );
}

fn two_runs(write: &str, second_ids: (usize, usize)) -> (Workspace, Vec<Value>) {
    let server = Server::start(move |_, number| {
        let (first, count) = if number == 0 { (0, 5) } else { second_ids };
        Reply::json(Value::Array(records(first, count)).to_string())
    });
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", write));
    // Two different runs (logical times): the same run twice would replace its own rows.
    ws.run(&file).args(["--at", "2025-01-01T00:00:00Z"]).expect(0);
    ws.run(&file).args(["--at", "2025-01-02T00:00:00Z"]).expect(0);
    let rows = ws.query("SELECT id FROM shop.items ORDER BY id");
    (ws, rows)
}

#[test]
fn merge_replace_and_append_on_a_rerun() {
    let ids = |rows: &[Value]| rows.iter().map(|r| r["id"].as_i64().unwrap()).collect::<Vec<_>>();
    // The same rows again: merge leaves no duplicates.
    let (_, rows) = two_runs("merge", (0, 5));
    assert_eq!(ids(&rows), [0, 1, 2, 3, 4]);
    // Overlapping rows: merge updates 3-4 and adds 5-7.
    let (_, rows) = two_runs("merge", (3, 5));
    assert_eq!(ids(&rows), [0, 1, 2, 3, 4, 5, 6, 7]);
    let (_, rows) = two_runs("replace", (3, 2));
    assert_eq!(ids(&rows), [3, 4]);
    let (ws, rows) = two_runs("append", (0, 2));
    assert_eq!(ids(&rows), [0, 0, 1, 1, 2, 3, 4]);
    // The table is plain Parquet behind a link: any reader sees only the current version.
    let table = ws.data().join("warehouse/shop/items");
    let parts: Vec<_> = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert!(parts.iter().all(|p| p.to_string_lossy().ends_with(".parquet")));
}

#[test]
fn a_changed_column_type_is_refused_and_the_table_is_kept() {
    let server = Server::start(|_, number| {
        let price = if number == 0 { json!(1.5) } else { json!("cheap") };
        Reply::json(json!([{"id": 1, "price": price}]).to_string())
    });
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", "merge"));
    ws.run(&file).expect(0);
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "to_warehouse");
    assert!(
        error.contains("column `price` is Float64 in table shop.items but Utf8"),
        "{error}"
    );
    assert_eq!(ws.query("SELECT price FROM shop.items"), [json!({"price": 1.5})]);
}

#[test]
fn a_sql_error_points_into_the_product_file() {
    let server = Server::start(|_, _| Reply::json(Value::Array(records(0, 2)).to_string()));
    let ws = Workspace::new();
    let yaml = format!(
        r#"name: sql_error_product
tasks:
  - id: extract_items
    function: extract_http
    params: {{ url: "{}/items" }}
  - id: clean
    function: transform_sql
    params:
      query: |
        SELECT id,
               nmae
        FROM extract_items
"#,
        server.url
    );
    let file = ws.product("sql_error_product", &yaml);
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "clean");
    assert!(error.contains("sql_error_product.yaml:11:16:"), "{error}");
    assert!(error.contains("nmae"), "{error}");
}

fn alert_product(url: &str, condition: &str) -> String {
    format!(
        r#"name: alert_product
tasks:
  - id: extract_items
    function: extract_http
    params: {{ url: "{url}/items" }}
  - id: price_alert
    function: send_alerts
    params:
      recipient: [ops@example.com]
      subject: "{{product}}: {{count}} items over budget"
      when: "{condition}"
      on_failure: oncall@example.com
"#
    )
}

#[test]
fn an_alert_fires_exactly_when_its_condition_holds_and_escapes_html() {
    let server = Server::start(|_, _| {
        Reply::json(
            json!([
                {"id": 1, "name": "<script>alert('x')</script>", "price": 120.0},
                {"id": 2, "name": "cheap", "price": 5.0},
                {"id": 3, "name": "pricey & co", "price": 300.0}
            ])
            .to_string(),
        )
    });
    let ws = Workspace::new();
    let file = ws.product("alert_product", &alert_product(&server.url, "price > 1000"));
    let run = ws.run(&file).expect(0);
    assert_eq!(receipt(&run)["alerts"], json!([]));
    assert!(outbox(&ws).is_empty());

    let file = ws.product("alert_product", &alert_product(&server.url, "price > 100"));
    let run = ws.run(&file).expect(0);
    let alerts = receipt(&run)["alerts"].clone();
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts:#}");
    assert_eq!(alerts[0]["rows"], 2);
    assert_eq!(alerts[0]["subject"], "alert_product: 2 items over budget");
    let mail = outbox(&ws).pop().unwrap();
    assert!(mail.contains("Subject: alert_product: 2 items over budget"), "{mail}");
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    let (text, html) = mail.split_once("Content-Type: text/html").unwrap();
    assert!(
        text.contains("<script>alert('x')</script>"),
        "plain text shows the value as it is\n{mail}"
    );
    assert!(html.contains("&lt;script&gt;"), "{mail}");
    assert!(!html.contains("<script>"), "{mail}");
    assert!(!mail.contains("cheap"), "{mail}");
}

#[test]
fn a_failed_run_sends_the_on_failure_alert() {
    let server = Server::start(|_, _| Reply::status(404, "no such thing"));
    let ws = Workspace::new();
    let file = ws.product("alert_product", &alert_product(&server.url, "price > 100"));
    let run = ws.run(&file).expect(1);
    let alerts = receipt(&run)["alerts"].clone();
    assert_eq!(alerts[0]["trigger"], "failure", "{alerts:#}");
    assert_eq!(alerts[0]["recipients"], json!(["oncall@example.com"]));
    let mail = outbox(&ws).pop().unwrap();
    assert!(mail.contains("To: oncall@example.com"), "{mail}");
    assert!(mail.contains("extract_items"), "{mail}");
    assert!(mail.contains("HTTP 404"), "{mail}");
}

#[test]
fn an_alert_without_a_condition_sends_a_run_summary() {
    let server = Server::start(|_, _| Reply::json(Value::Array(records(0, 4)).to_string()));
    let ws = Workspace::new();
    let yaml = alert_product(&server.url, "x").replace("      when: \"x\"\n", "");
    let file = ws.product("alert_product", &yaml);
    let run = ws.run(&file).expect(0);
    assert_eq!(receipt(&run)["alerts"][0]["trigger"], "summary");
    let mail = outbox(&ws).pop().unwrap();
    assert!(mail.contains("extract_items"), "{mail}");
}

#[test]
fn record_then_replay_without_the_network_or_the_secret() {
    let server = Server::start(|seen, _| {
        if seen.query("api_key").as_deref() != Some("k3y-v4lue-123") {
            return Reply::status(403, "bad key");
        }
        let page = page_of(seen, "page", 1);
        let next = if page < 2 {
            json!(format!("/items?page={}&api_key=k3y-v4lue-123", page + 1))
        } else {
            json!(null)
        };
        Reply::json(json!({"data": records(page * 10, 3), "next": next, "echo": "k3y-v4lue-123"}).to_string())
    });
    let ws = Workspace::new();
    let params = "      records: data\n      auth: { type: api_key, name: api_key, value: \"${secret:SHOP_KEY}\", in: query }\n      pagination: { type: next_url, next_url_path: next }";
    let file = ws.product("items_product", &product(&server.url, params, "merge"));
    let fixtures = ws.path().join("products/fixtures/items_product");
    ws.run(&file)
        .args(["--record"])
        .env("SHOP_KEY", "k3y-v4lue-123")
        .expect(0);
    let recorded = std::fs::read_to_string(fixtures.join("extract_items.json")).unwrap();
    assert!(!recorded.contains("k3y-v4lue-123"), "{recorded}");
    assert!(recorded.contains("api_key=${secret:SHOP_KEY}"), "{recorded}");

    // Replay: the server is not asked again, and no key is needed.
    let asked = server.seen().len();
    let run = ws.run(&file).args(["--replay"]).expect(0);
    assert_eq!(task(&receipt(&run), "extract_items")["rows"], 6);
    assert_eq!(server.seen().len(), asked);

    // A request that was not recorded fails clearly.
    let changed = std::fs::read_to_string(&file)
        .unwrap()
        .replace("records: data", "records: data\n      query: { status: open }");
    std::fs::write(&file, changed).unwrap();
    let run = ws.run(&file).args(["--replay"]).expect(1);
    let error = task_error(&run, "extract_items");
    assert!(error.contains("no recorded response for `GET"), "{error}");
    assert!(error.contains("status=open"), "{error}");
}

#[test]
fn json_logs_follow_cloud_logging_and_the_receipt_is_written() {
    let server = Server::start(|_, _| Reply::json(Value::Array(records(0, 2)).to_string()));
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", "append"));
    let receipt_file = ws.path().join("receipt.json");
    let run = ws
        .run(&file)
        .args(["--receipt".as_ref(), receipt_file.as_os_str()])
        .expect(0);
    for line in run.stderr.lines() {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for field in ["severity", "message", "time", "product", "run_id"] {
            assert!(entry.get(field).is_some(), "no {field} in {line}");
        }
    }
    assert!(run.stderr.contains("\"task\":\"extract_items\""), "{run}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(receipt_file).unwrap()).unwrap();
    assert_eq!(written, receipt(&run));
    assert_eq!(written["status"], "succeeded");
    assert_eq!(
        task(&written, "to_warehouse")["destinations"].as_array().unwrap().len(),
        1
    );
}

#[test]
fn sigterm_stops_the_run_and_keeps_the_previous_table() {
    let server = Server::start(|_, number| {
        let reply = Reply::json(Value::Array(records(number * 100, 3)).to_string());
        if number == 0 {
            reply
        } else {
            reply.delay(Duration::from_secs(20))
        }
    });
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", "replace"));
    ws.run(&file).expect(0);
    let child = ws.run(&file).spawn();
    while server.seen().len() < 2 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let run = child.terminate();
    assert_eq!(run.code, 130, "{run}");
    // The stop is logged like everything else: JSON lines only.
    for line in run.stderr.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(run.stderr.contains("SIGINT or SIGTERM received"), "{run}");
    let receipt = receipt(&run);
    assert_eq!(receipt["status"], "interrupted");
    assert_eq!(task(&receipt, "extract_items")["status"], "interrupted");
    assert_eq!(task(&receipt, "to_warehouse")["status"], "not_run");
    let ids: Vec<Value> = ws.query("SELECT id FROM shop.items ORDER BY id");
    assert_eq!(ids, [json!({"id": 0}), json!({"id": 1}), json!({"id": 2})]);
}

/// `items_product`, never retried, storing what it gets from `url`/items twice: in `shop.items`
/// (replaced) and as the documents of `items`.
fn stored_twice(url: &str) -> String {
    ProductYaml::items(url, "")
        .retries(0)
        .store_warehouse("dataset: shop, table: items, write: replace")
        .store_documents("collection: items, key: id")
        .to_string()
}

#[test]
fn after_sigterm_the_receipt_says_what_each_store_committed() {
    // Each request's 40,000 rows carry its number in their ids, so the stores show which run wrote.
    const ROWS: usize = 40_000;
    let server = Server::start(|_, number| Reply::json(Value::Array(records(number * 100_000, ROWS)).to_string()));
    let ws = Workspace::new();
    let file = ws.product("items_product", &stored_twice(&server.url));
    ws.run(&file).expect(0);
    let mut current = 0;
    let documents_of = |run: usize| -> i64 {
        let sqlite = rusqlite::Connection::open(ws.data().join("firestore.db")).unwrap();
        sqlite
            .query_row(
                "SELECT COUNT(*) FROM documents WHERE collection = 'items' AND CAST(id AS INTEGER) / 100000 = ?1",
                [run as i64],
                |row| row.get(0),
            )
            .unwrap()
    };
    for delay in [40, 120, 200, 300, 450, 650, 900, 1300] {
        let child = ws.run(&file).spawn();
        std::thread::sleep(Duration::from_millis(delay));
        let run = child.terminate();
        assert!(run.code == 130 || run.code == 0, "{run}");
        let receipt = receipt(&run);
        let number = server.seen().len() - 1;
        let stored = |id: &str| task(&receipt, id)["status"].as_str().unwrap().to_owned();
        let table = ws.query("SELECT MIN(id) / 100000 AS run, COUNT(*) AS n FROM shop.items");
        if stored("to_warehouse") == "succeeded" {
            current = number;
        }
        assert_eq!(table, [json!({"run": current, "n": ROWS})], "after {delay} ms\n{run}");
        let written = if stored("to_documents") == "succeeded" {
            ROWS as i64
        } else {
            0
        };
        if number > 0 {
            assert_eq!(documents_of(number), written, "after {delay} ms\n{run}");
        }
        for id in ["to_warehouse", "to_documents"] {
            let status = stored(id);
            assert!(
                ["succeeded", "interrupted", "not_run"].contains(&status.as_str()),
                "{status}"
            );
        }
    }
}

#[test]
fn a_run_killed_at_any_moment_leaves_a_whole_table() {
    // 60,000 rows take long enough to write that kills land before, during and after the commit.
    let server = Server::start(|_, number| Reply::json(Value::Array(records(number * 100_000, 60_000)).to_string()));
    let ws = Workspace::new();
    let file = ws.product("items_product", &stored_twice(&server.url));
    ws.run(&file).expect(0);
    for delay in [50, 150, 250, 400, 600, 900, 1300] {
        let child = ws.run(&file).spawn();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill();
        let rows = ws.query("SELECT COUNT(*) AS n, COUNT(DISTINCT id / 100000) AS versions FROM shop.items");
        assert_eq!(rows, [json!({"n": 60_000, "versions": 1})], "killed after {delay} ms");
        // Each run's documents landed whole or not at all.
        let sqlite = rusqlite::Connection::open(ws.data().join("firestore.db")).unwrap();
        let mut per_run = sqlite
            .prepare("SELECT CAST(id AS INTEGER) / 100000, COUNT(*) FROM documents GROUP BY 1")
            .unwrap();
        for counted in per_run
            .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))
            .unwrap()
        {
            let (run, count) = counted.unwrap();
            assert_eq!(count, 60_000, "run {run}'s documents after a kill at {delay} ms");
        }
        let table = ws.data().join("warehouse/shop/items");
        for part in std::fs::read_dir(&table).unwrap() {
            let name = part.unwrap().file_name().to_string_lossy().into_owned();
            assert!(name.starts_with("part-") && name.ends_with(".parquet"), "{name}");
        }
    }
}

#[test]
fn a_write_that_fails_on_a_full_disk_leaves_no_partial_version() {
    let server = Server::start(|_, number| Reply::json(Value::Array(records(number * 100_000, 30_000)).to_string()));
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", "replace"));
    ws.run(&file).expect(0);
    let table = ws.data().join("warehouse/shop/items");
    let staging = ws.data().join("warehouse-staging/shop/items");
    let listed = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let parts = listed(&table);
    assert_eq!(listed(&staging), ["lock"]);
    // A file-size limit stands in for a full disk: writes past 64 KB fail with EFBIG.
    for _ in 0..2 {
        let output = std::process::Command::new("sh")
            .args(["-c", "trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_dpf"))
            .args([
                "run".as_ref(),
                file.as_os_str(),
                "--data-dir".as_ref(),
                ws.data().as_os_str(),
            ])
            .args(["--format", "json", "--log-format", "off"])
            .env_clear()
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("too large"), "{stdout}");
        assert_eq!(listed(&staging), ["lock"], "{stdout}");
        assert_eq!(listed(&table), parts, "{stdout}");
    }
    let rows = ws.query("SELECT MIN(id) AS first, COUNT(*) AS n FROM shop.items");
    assert_eq!(rows, [json!({"first": 0, "n": 30_000})]);
    // What a killed write staged is cleared by the next write.
    std::fs::create_dir(staging.join("next")).unwrap();
    std::fs::write(staging.join("next/part-killed.parquet"), "half").unwrap();
    ws.run(&file).expect(0);
    assert_eq!(listed(&staging), ["lock"]);
}

#[test]
fn post_sends_its_json_body_and_headers() {
    let server = Server::start(|seen, _| {
        let body: Value = serde_json::from_str(&seen.body).unwrap_or_default();
        let ok = seen.method == "POST"
            && body == json!({"filter": {"status": "open"}, "limit": 2})
            && seen.header("content-type") == Some("application/json")
            && seen.header("x-tenant") == Some("acme");
        if ok {
            Reply::json(Value::Array(records(0, 2)).to_string())
        } else {
            Reply::status(400, &format!("unexpected request: {seen:?}"))
        }
    });
    let ws = Workspace::new();
    let params =
        "      method: POST\n      headers: { X-Tenant: acme }\n      body: { filter: { status: open }, limit: 2 }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let run = ws.run(&file).expect(0);
    assert_eq!(task(&receipt(&run), "extract_items")["rows"], 2);
}

#[test]
fn credentials_never_follow_a_next_page_link_to_another_host() {
    let elsewhere = Server::start(|_, _| Reply::json(json!({"data": records(10, 2), "next": null}).to_string()));
    let next = format!("{}/more", elsewhere.url);
    let server = Server::start(move |_, _| Reply::json(json!({"data": records(0, 2), "next": next}).to_string()));
    let ws = Workspace::new();
    let params = "      records: data\n      auth: { type: api_key, name: X-Private-Token, value: \"${secret:API_TOKEN}\" }\n      headers: { Authorization: \"Bearer ${secret:API_TOKEN}\" }\n      pagination: { type: next_url, next_url_path: next }";
    let file = ws.product("items_product", &product(&server.url, params, "append"));
    let run = ws.run(&file).env("API_TOKEN", "t0k3n-s3cr3t").expect(0);
    assert_eq!(task(&receipt(&run), "extract_items")["rows"], 4);
    assert_eq!(server.seen()[0].header("x-private-token"), Some("t0k3n-s3cr3t"));
    let other = &elsewhere.seen()[0];
    assert_eq!(other.header("x-private-token"), None, "{other:?}");
    assert_eq!(other.header("authorization"), None, "{other:?}");
}

#[test]
fn an_empty_response_stores_nothing_and_succeeds() {
    let server = Server::start(|_, _| Reply::json("[]"));
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", "merge"));
    let run = ws.run(&file).expect(0);
    assert_eq!(task(&receipt(&run), "to_warehouse")["rows"], 0);
}

#[test]
fn replace_may_change_the_columns() {
    let server = Server::start(|_, number| match number {
        0 => Reply::json(json!([{"id": 1, "price": 1.5, "old": true}]).to_string()),
        _ => Reply::json(json!([{"id": 2, "price": "cheap"}]).to_string()),
    });
    let ws = Workspace::new();
    let file = ws.product("items_product", &product(&server.url, "", "replace"));
    ws.run(&file).expect(0);
    ws.run(&file).expect(0);
    assert_eq!(
        ws.query("SELECT * FROM shop.items"),
        [json!({"id": 2, "price": "cheap"})]
    );
}

#[test]
fn an_untrusted_certificate_fails_at_once() {
    // A real TLS server (Python's) with a self-signed certificate made by openssl.
    let ws = Workspace::new();
    let (key, cert) = (ws.path().join("key.pem"), ws.path().join("cert.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-keyout".as_ref(), key.as_os_str(), "-out".as_ref(), cert.as_os_str()])
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{made:?}");
    let script = "import http.server, ssl, sys\n\
        s = http.server.HTTPServer(('127.0.0.1', 0), http.server.SimpleHTTPRequestHandler)\n\
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); c.load_cert_chain(sys.argv[1], sys.argv[2])\n\
        s.socket = c.wrap_socket(s.socket, server_side=True)\n\
        print(s.server_address[1], flush=True); s.serve_forever()";
    let mut server = std::process::Command::new("python3")
        .args(["-c".as_ref(), script.as_ref(), cert.as_os_str(), key.as_os_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut port = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut port).unwrap();
    let file = ws.product(
        "items_product",
        &product(&format!("https://127.0.0.1:{}", port.trim()), "", "append"),
    );
    let run = ws.run(&file).expect(1);
    let _ = server.kill();
    let _ = server.wait();
    let receipt = receipt(&run);
    assert_eq!(task(&receipt, "extract_items")["attempts"], 1, "{run}");
    assert!(task_error(&run, "extract_items").contains("certificate"), "{run}");
}

#[test]
fn an_alert_condition_error_points_into_the_product_file() {
    let server = Server::start(|_, _| Reply::json(Value::Array(records(0, 2)).to_string()));
    let ws = Workspace::new();
    let file = ws.product(
        "alert_product",
        &alert_product(&server.url, "price > 100 AND colour = 'red'"),
    );
    let run = ws.run(&file).expect(1);
    let error = task_error(&run, "price_alert");
    // `when:` is on line 11, where `colour` starts at column 30.
    assert!(error.contains("alert_product.yaml:11:30:"), "{error}");
    assert!(error.contains("colour"), "{error}");
}

#[test]
fn with_json_logs_even_errors_before_a_run_are_one_json_entry_each() {
    let ws = Workspace::new();
    let error_event = "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent";
    let entries = |run: &crate::util::Run| -> Vec<serde_json::Value> {
        run.stderr
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{run}")))
            .collect()
    };
    // An invalid product: one entry per diagnostic, placed in the file.
    let file = ws.product("broken", "name: broken\nschedule: \"61 * * * *\"\ntasks: []\n");
    let run = ws.run(&file).expect(2);
    let found = entries(&run);
    assert!(!found.is_empty(), "{run}");
    for entry in &found {
        assert_eq!(entry["severity"], "ERROR", "{entry}");
        assert_eq!(entry["@type"], error_event, "{entry}");
        assert_eq!(entry["serviceContext"]["service"], "dpf", "{entry}");
        assert!(entry["file"].as_str().unwrap().ends_with("broken.yaml"), "{entry}");
        assert!(entry["line"].as_u64().unwrap() >= 1 && entry["code"].as_str().unwrap().starts_with('E'));
    }
    assert!(
        found.iter().any(|e| e["code"] == "E205" && e["line"] == 2),
        "{found:#?}"
    );

    // An unknown product: one entry.
    let unknown = dpf()
        .current_dir(ws.path())
        .args(["run", "no_such_product", "--log-format", "json"])
        .expect(2);
    let found = entries(&unknown);
    assert_eq!(found.len(), 1, "{unknown}");
    assert_eq!(found[0]["@type"], error_event);
    assert_eq!(found[0]["logging.googleapis.com/labels"]["product"], "no_such_product");
}
