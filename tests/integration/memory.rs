//! Bounded memory: an extract larger than `--memory-limit` allows goes to disk in chunks while its
//! pages arrive, and the chain after it (a GROUP BY, a store, a check) gives what it gives in memory.

use serde_json::{Value, json};

use crate::server::{Reply, Server};
use crate::util::{ProductYaml, Workspace, bigquery, gcp, new_project, receipt, task, task_error};

/// 40 NDJSON pages of 500 orders (page-number pagination); from page 21 on amounts have cents, and
/// with `text_from` a page's amounts are text.
fn orders(text_from: Option<usize>) -> Server {
    Server::start(move |seen, _| {
        let page: usize = seen.query("page").map_or(1, |p| p.parse().unwrap());
        let mut body = String::new();
        if page <= 40 {
            for i in 0..500 {
                let id = (page - 1) * 500 + i;
                let amount = match (text_from, page) {
                    (Some(from), page) if page >= from => json!(format!("{id}")),
                    (_, page) if page > 20 => json!(id as f64 + 0.5),
                    _ => json!(id),
                };
                body.push_str(&json!({"id": id, "store": format!("s{}", id % 7), "amount": amount}).to_string());
                body.push('\n');
            }
        }
        Reply::with("application/x-ndjson", body)
    })
}

/// Orders summed per store into `shop.by_store`, kept whole in `shop.orders` (appended) and, through
/// a transform that passes every row, in `shop.copied` (merged on `id`).
fn product(url: &str) -> String {
    ProductYaml::new("orders")
        .extract(
            "orders",
            &format!("{url}/orders"),
            "      format: ndjson\n      pagination: { type: page_number, page_size: 500, max_pages: 100 }",
        )
        .checks("    checks:\n      - not_null: [id]\n      - unique: [id]")
        .task(
            "  - id: by_store\n    function: transform_sql\n    params:\n      query: |\n        SELECT store, COUNT(*) AS \
             orders, SUM(amount) AS total FROM orders GROUP BY store ORDER BY store\n",
        )
        .store_warehouse("dataset: shop, table: by_store, write: replace")
        .task(
            "  - id: keep_orders\n    function: store_to_bigquery\n    input: orders\n    params: { dataset: shop, \
             table: orders, write: append }\n",
        )
        .task("  - id: every\n    function: transform_sql\n    params: { query: SELECT * FROM orders }\n")
        .store_documents("collection: orders, key: id")
        .task(
            "  - id: copy\n    function: store_to_bigquery\n    input: every\n    params: { dataset: shop, table: \
             copied, write: merge, key: id }\n",
        )
        .to_string()
}

#[test]
fn an_extract_beyond_the_memory_limit_goes_to_disk_and_the_chain_gives_the_same_rows() {
    let server = orders(None);
    let (small, whole) = (Workspace::new(), Workspace::new());
    let tmp = small.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let file = small.product("orders", &product(&server.url));
    let run = small
        .run(&file)
        .args(["--memory-limit", "16MiB"])
        .env("TMPDIR", tmp.to_str().unwrap())
        .expect(0);
    assert_eq!(task(&receipt(&run), "orders")["rows"], 20_000);
    // The extract and the transform that passes its rows both kept them on disk.
    assert_eq!(run.stderr.matches("20000 rows kept on disk in").count(), 2, "{run}");
    // The chunks went with the run.
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    let file = whole.product("orders", &product(&server.url));
    whole
        .run(&file)
        .args(["--at", receipt(&run)["logical_time"].as_str().unwrap()])
        .expect(0);
    for sql in [
        "SELECT store, orders, total FROM shop.by_store ORDER BY store",
        "SELECT COUNT(*) AS n, SUM(amount) AS total, MIN(id) AS first, MAX(id) AS last FROM shop.orders",
        "SELECT COUNT(*) AS n, SUM(amount) AS total, COUNT(DISTINCT id) AS ids FROM shop.copied",
    ] {
        assert_eq!(small.query(sql), whole.query(sql), "{sql}");
    }
    assert_eq!(small.documents("orders").len(), 20_000);
    // A rerun of the run writes the appended rows once.
    let file = small.product("orders", &product(&server.url));
    let at = receipt(&run)["logical_time"].as_str().unwrap().to_owned();
    small
        .run(&file)
        .args(["--memory-limit", "16MiB", "--at", &at])
        .expect(0);
    assert_eq!(
        small.query("SELECT COUNT(*) AS n FROM shop.orders"),
        [json!({"n": 20000})]
    );
    let totals: Vec<Value> = small.query("SELECT SUM(orders) AS n FROM shop.by_store");
    assert_eq!(totals, [json!({"n": 20000})]);
    // Amounts of the first chunks (whole numbers) met the later ones' cents as decimals.
    assert_eq!(
        small.query("SELECT amount FROM shop.orders WHERE id = 1"),
        [json!({"amount": 1.0})]
    );
}

#[test]
fn large_loads_into_bigquery_go_a_chunk_at_a_time_and_match_one_load() {
    let server = orders(None);
    let ws = Workspace::new();
    let file = ws.product("orders", &product(&server.url));
    let (small, whole) = (new_project("chunked"), new_project("onefile"));
    let at = ["--at", "2025-01-01T00:00:00Z"];
    let run = gcp(ws.run(&file).args(at).args(["--memory-limit", "16MiB"]), &small).expect(0);
    assert_eq!(task(&receipt(&run), "keep_orders")["rows"], 20_000);
    // One load job per chunk.
    let loads = run
        .stderr
        .lines()
        .find(|line| line.contains("\"task\":\"keep_orders\"") && line.contains("load job(s)"))
        .unwrap_or_else(|| panic!("{run}"));
    assert!(!loads.contains("with 1 load job(s)"), "{loads}");
    gcp(ws.run(&file).args(at), &whole).expect(0);
    for sql in [
        "SELECT COUNT(*) AS n, SUM(amount) AS total, MIN(id) AS first, MAX(id) AS last FROM shop.orders",
        "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM shop.copied",
        "SELECT store, orders, total FROM shop.by_store ORDER BY store",
    ] {
        assert_eq!(bigquery(&small, sql), bigquery(&whole, sql), "{sql}");
    }
    // The same run again finds its load committed.
    let again = gcp(ws.run(&file).args(at).args(["--memory-limit", "16MiB"]), &small).expect(0);
    assert!(again.stderr.contains("already loaded"), "{again}");
    assert_eq!(
        bigquery(&small, "SELECT COUNT(*) AS n FROM shop.orders")[0]["n"],
        json!("20000")
    );
}

#[test]
fn a_field_that_changes_kind_in_a_large_extract_names_the_page() {
    let server = orders(Some(31));
    let ws = Workspace::new();
    let file = ws.product("orders", &product(&server.url));
    let run = ws.run(&file).args(["--memory-limit", "16MiB"]).expect(1);
    let error = task_error(&run, "orders");
    // Within a chunk the builder finds it; across chunks, the chunks' schemas do (unit-tested in
    // `table::spill`): either way the page that changed it is named.
    assert!(error.contains("field `amount` is"), "{error}");
    assert!(error.contains("page 31"), "{error}");
}
