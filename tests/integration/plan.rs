//! `dpf plan`: the graph, destinations and schedule, for people and as stable JSON.

use serde_json::Value;

use crate::util::{Dpf, dpf};

const NOW: &str = "2026-11-26T07:00:00Z";

/// `dpf plan ARGS --format json --now NOW`, parsed.
fn plan_json(dpf: Dpf, args: &[&str]) -> Value {
    let run = dpf
        .args(["plan"])
        .args(args)
        .args(["--format", "json", "--now", NOW])
        .expect(0);
    serde_json::from_str(&run.stdout).unwrap()
}

/// The step of a JSON plan whose `field` is `value`.
fn step<'a>(plan: &'a Value, field: &str, value: &str) -> &'a Value {
    let steps = plan["steps"].as_array().unwrap();
    steps
        .iter()
        .find(|s| s[field] == value)
        .unwrap_or_else(|| panic!("no step with {field} {value}"))
}

#[test]
fn weather_plan_text() {
    let run = dpf().args(["plan", "weather_data_product", "--now", NOW]).expect(0);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn sales_plan_json_is_stable() {
    let run = dpf()
        .args(["plan", "sales_data_product", "--format", "json", "--now", NOW])
        .expect(0);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["version"], 1);
    assert_eq!(plan["schedule"]["next_runs"][0], "2026-11-27T02:00:00Z");
    assert_eq!(plan["schedule"]["next_runs"].as_array().unwrap().len(), 5);
    // The orders store and the transform share one stage and run concurrently; the alert waits
    // for the stores.
    assert_eq!(
        plan["stages"],
        serde_json::json!([
            ["extract_orders"],
            ["orders_to_bigquery", "order_summaries"],
            ["summaries_to_firestore"],
            ["large_order_alert"]
        ])
    );
    // `dpf plan` reads no state: where the extract starts is known when the run starts.
    assert_eq!(
        plan["steps"][0]["incremental"],
        serde_json::json!({"cursor": "updated_at", "saves": true})
    );
    assert_eq!(plan["steps"][0]["params"]["query"]["updated_since"], "{{ cursor }}");
    insta::assert_json_snapshot!(plan);
}

#[test]
fn secrets_are_shown_as_references_never_resolved() {
    let canary = "canary-7c1e0f5d-secret-value";
    let run = dpf()
        .env("SALES_API_TOKEN", canary)
        .args(["plan", "sales_data_product", "--format", "json", "--now", NOW])
        .expect(0);
    assert!(!run.stdout.contains(canary) && !run.stderr.contains(canary), "{run}");
    assert!(run.stdout.contains("${secret:SALES_API_TOKEN}"));
    assert!(run.stdout.contains("\"secret:SALES_API_TOKEN\""));
}

#[test]
fn gcp_target_qualifies_destinations() {
    let plan = plan_json(
        dpf().env("GCP_PROJECT", "acme-data"),
        &["products/weather_data_product.yaml", "--target", "gcp"],
    );
    let destination = |id: &str| step(&plan, "id", id)["destination"].clone();
    assert_eq!(
        destination("to_bigquery"),
        "bigquery:acme-data.weather_data.weather_records"
    );
    assert_eq!(
        destination("to_firestore"),
        "firestore:projects/acme-data/databases/(default)/documents/weather_records"
    );
    assert_eq!(plan["target"], "gcp");
    assert!(plan["data_dir"].is_null());
}

#[test]
fn local_data_dir_comes_from_the_environment() {
    let run = dpf()
        .env("DPF_DATA_DIR", "/var/lib/dpf")
        .args(["plan", "weather_data_product", "--format", "json", "--now", NOW])
        .expect(0);
    assert!(
        run.stdout
            .contains("\"/var/lib/dpf/warehouse/weather_data/weather_records\""),
        "{run}"
    );
}

#[test]
fn older_dag_factory_files_plan_unchanged() {
    let run = dpf()
        .args(["plan", "tests/corpus/valid/legacy_weather_dag.yaml", "--now", NOW])
        .expect(0);
    assert!(run.stdout.contains("(extract_weather)"), "{run}");
    assert!(run.stdout.contains("hourly="), "{run}");
}

#[test]
fn thresholds_become_the_alert_condition() {
    let plan = plan_json(dpf(), &["tests/corpus/valid/legacy_with_thresholds.yaml"]);
    let alert = step(&plan, "function", "send_alerts");
    assert!(
        alert["condition"].as_str().unwrap().contains("\"temperature_2m\" > 30"),
        "{alert}"
    );
}

#[test]
fn unknown_product_suggests_a_name() {
    let run = dpf().args(["plan", "weather_product"]).expect(2);
    assert!(
        run.stderr.contains("no product named `weather_product` in products"),
        "{run}"
    );
    assert!(run.stderr.contains("did you mean `weather_data_product`?"), "{run}");
}

#[test]
fn invalid_product_prints_diagnostics_and_exits_2() {
    let run = dpf()
        .args(["plan", "tests/corpus/invalid/E104-unknown-key.yaml"])
        .expect(2);
    assert!(run.stderr.contains("error[E104]"), "{run}");
    assert!(run.stdout.is_empty());
}

#[test]
fn the_task_graph_draws_as_mermaid_and_as_dot_that_graphviz_renders() {
    let mermaid = dpf()
        .args(["plan", "weather_data_product", "--format", "mermaid"])
        .expect(0)
        .stdout;
    assert!(mermaid.contains("flowchart LR"), "{mermaid}");
    assert!(mermaid.contains(r#"t1["clean<br/>transform_sql"]"#), "{mermaid}");
    assert!(
        mermaid.contains("t0 --> t1"),
        "data flows from the extract to the transform\n{mermaid}"
    );
    assert!(
        mermaid.contains("t3 -.-> t4"),
        "the alert waits for the store\n{mermaid}"
    );
    assert!(
        !mermaid.contains("&longitude"),
        "a bare & breaks a Mermaid label\n{mermaid}"
    );

    let dot = dpf()
        .args(["plan", "weather_data_product", "--format", "dot"])
        .expect(0)
        .stdout;
    let mut graphviz = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz's dot runs (scripts/test installs it)");
    std::io::Write::write_all(&mut graphviz.stdin.take().unwrap(), dot.as_bytes()).unwrap();
    let rendered = graphviz.wait_with_output().unwrap();
    let svg = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success() && rendered.stderr.is_empty(),
        "{}\n{dot}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    for task in ["extract_weather", "clean", "to_firestore", "to_bigquery", "heat_alert"] {
        assert!(svg.contains(task), "{task} is not drawn");
    }
    assert!(svg.contains("stroke-dasharray"), "the order-only edges are dashed");
}
