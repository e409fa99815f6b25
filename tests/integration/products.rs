//! The example products end to end on their recorded fixtures: `dpf run --replay`, `dpf test`,
//! `dpf query`, and what they leave in the data dir.

use serde_json::{Value, json};

use crate::util::{ProductYaml, Workspace, check_with, dpf, replay, root, task};

#[test]
fn the_weather_product_runs_from_its_fixtures_and_a_rerun_adds_no_duplicates() {
    let ws = Workspace::new();
    let first = replay(&ws, "weather_data_product", None);
    assert_eq!(task(&first, "extract_weather")["rows"], 168);
    assert_eq!(task(&first, "to_bigquery")["rows"], 168);
    replay(&ws, "weather_data_product", None);
    assert_eq!(
        ws.query("SELECT COUNT(*) AS n, COUNT(DISTINCT observed_at) AS hours FROM weather_data.weather_records"),
        [json!({"n": 168, "hours": 168})]
    );
    let documents = rusqlite::Connection::open(ws.data().join("firestore.db")).unwrap();
    let (count, fields): (i64, String) = documents
        .query_row(
            "SELECT COUNT(*), MIN(fields) FROM documents WHERE collection = 'weather_records'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(count, 168);
    let fields: Value = serde_json::from_str(&fields).unwrap();
    assert!(fields.get("temperature_2m").is_some(), "{fields}");
}

#[test]
fn the_sales_product_pages_through_its_fixtures_and_alerts() {
    let ws = Workspace::new();
    let receipt = replay(&ws, "sales_data_product", None);
    assert_eq!(task(&receipt, "extract_orders")["pages"], 3);
    assert_eq!(receipt["alerts"][0]["task"], "large_order_alert");
    assert_eq!(
        receipt["alerts"][0]["recipients"],
        json!(["sales-ops@example.com", "finance@example.com"])
    );
    let csv = dpf()
        .args([
            "query",
            "SELECT region, COUNT(DISTINCT CAST(created_at AS DATE)) AS days FROM sales.orders GROUP BY region ORDER BY region",
            "--format",
            "csv",
            "--data-dir",
        ])
        .args([ws.data()])
        .expect(0);
    assert_eq!(csv.stdout, "region,days\namer,3\napac,3\nemea,3\nlatam,3\n");
    // Query only reads: statements that would write anywhere are refused, and nothing is written.
    let elsewhere = ws.path().join("copied.csv");
    for sql in [
        format!("COPY (SELECT * FROM sales.orders) TO '{}'", elsewhere.display()),
        "CREATE TABLE t AS SELECT 1".to_owned(),
        "INSERT INTO sales.orders SELECT * FROM sales.orders".to_owned(),
        "SET datafusion.execution.batch_size = 1".to_owned(),
    ] {
        let run = dpf().args(["query", &sql, "--data-dir"]).args([ws.data()]).expect(2);
        assert!(
            run.stderr.contains("dpf query only reads the warehouse"),
            "{sql}\n{run}"
        );
    }
    assert!(!elsewhere.exists());
}

#[test]
fn dpf_test_passes_on_the_example_products() {
    let run = dpf().args(["test"]).expect(0);
    assert_eq!(run.stdout.matches("PASS").count(), 7, "{run}");
    assert!(run.stdout.contains("7 passed, 0 failed"), "{run}");
}

#[test]
fn dpf_test_reports_each_expectation_that_fails() {
    let ws = Workspace::new();
    let yaml = std::fs::read_to_string(root().join("products/weather_data_product.yaml"))
        .unwrap()
        .replace("extract_weather: 168, clean: 168", "extract_weather: 167, clean: 168")
        .replace("temperature_2m: 22.3,", "temperature_2m: 99.9,");
    ws.product("weather_data_product", &yaml);
    let fixtures = ws.path().join("products/fixtures");
    for name in ["weather_data_product", "weather_data_product_heatwave"] {
        std::fs::create_dir_all(fixtures.join(name)).unwrap();
        std::fs::copy(
            root().join("products/fixtures").join(name).join("extract_weather.json"),
            fixtures.join(name).join("extract_weather.json"),
        )
        .unwrap();
    }
    let run = dpf().current_dir(ws.path()).args(["test", "products"]).expect(1);
    assert!(
        run.stdout.contains("FAIL    weather_data_product › a mild week"),
        "{run}"
    );
    assert!(
        run.stdout.contains("rows of `extract_weather`: expected 167, got 168"),
        "{run}"
    );
    assert!(run.stdout.contains("`temperature_2m` is 22.3, expected 99.9"), "{run}");
    assert!(
        run.stdout.contains("PASS    weather_data_product › a heatwave"),
        "{run}"
    );
}

#[test]
fn replay_without_fixtures_is_a_usage_error() {
    let ws = Workspace::new();
    let file = ws.product(
        "items_product",
        &ProductYaml::new("items_product")
            .extract("get", "http://127.0.0.1:9/", "")
            .to_string(),
    );
    let run = ws.run(&file).args(["--replay"]).expect(2);
    assert!(run.stderr.contains("no fixtures to replay"), "{run}");
}

#[test]
fn dpf_test_reports_as_json_and_as_junit_xml_that_an_xml_parser_reads() {
    let json = dpf().args(["test", "products", "--format", "json"]).expect(0).stdout;
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert!(cases.len() >= 4 && cases.iter().all(|c| c["passed"] == true), "{json}");
    assert!(
        cases
            .iter()
            .any(|c| c["name"] == "a sensor glitch of 999 °C fails a check and stores nothing")
    );

    // With an invalid file beside the products: a suite with one case in error, and exit 2.
    let xml = dpf()
        .args([
            "test",
            "products",
            "tests/corpus/invalid/E205-invalid-schedule.yaml",
            "--format",
            "junit",
        ])
        .expect(2)
        .stdout;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &xml).unwrap();
    // Python's XML parser, as CI test reporters read JUnit files.
    let read = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             r = E.parse(sys.argv[1]).getroot()\n\
             cases = r.findall('testsuite/testcase')\n\
             print(r.get('tests'), r.get('failures'), r.get('errors'), len(cases), len(r.findall('testsuite/testcase/error')))",
        ])
        .arg(file.path())
        .output()
        .unwrap();
    let counts = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "{}\n{xml}",
        String::from_utf8_lossy(&read.stderr)
    );
    let counts: Vec<usize> = counts.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(counts[0], counts[3], "tests= counts every test case\n{xml}");
    assert_eq!((counts[1], counts[2], counts[4]), (0, 1, 1), "{xml}");
}

#[test]
fn dpf_init_starts_a_repository_whose_products_validate_and_pass_their_tests() {
    let dir = tempfile::tempdir().unwrap();
    dpf().args(["init".as_ref(), dir.path().as_os_str()]).expect(0);
    dpf().current_dir(dir.path()).args(["validate", "products/"]).expect(0);
    let tested = dpf().current_dir(dir.path()).args(["test", "products/"]).expect(0);
    assert!(tested.stdout.contains("3 passed, 0 failed"), "{tested}");
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(".vscode/settings.json")).unwrap()).unwrap();
    assert_eq!(
        settings["yaml.schemas"]["./schemas/data_product.schema.json"][0],
        "products/*.yaml"
    );
    assert!(dir.path().join("schemas/data_product.schema.json").is_file());
    assert!(dir.path().join(".github/workflows/products.yml").is_file());

    // A second init writes nothing over what is there.
    let product = dir.path().join("products/weather_data_product.yaml");
    std::fs::write(&product, "name: mine\ntasks: []\n").unwrap();
    let again = dpf().args(["init".as_ref(), dir.path().as_os_str()]).expect(2);
    assert!(again.stderr.contains("writes nothing over existing files"), "{again}");
    assert_eq!(std::fs::read_to_string(&product).unwrap(), "name: mine\ntasks: []\n");
}

#[test]
fn the_github_workflows_pass_actionlint() {
    let files = [
        ".github/workflows/ci.yml",
        "examples/validate-products.github-workflow.yml",
    ];
    let (clean, said) = check_with("actionlint", &files.map(std::ffi::OsStr::new));
    assert!(clean, "{said}");
}
