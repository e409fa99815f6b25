//! Logical time, templates, backfill, the run lock, --timeout and exported schedules.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Reply, Server};
use crate::util::{ProductYaml, Workspace, backfill, check_with, dpf, receipt, records, root, serve};

/// A product on a 6-hourly schedule that asks its API for exactly its data interval.
fn windowed(url: &str, write: &str) -> String {
    ProductYaml::new("windowed_product")
        .set("start_date", "\"2025-01-01\"")
        .set("schedule", "\"0 */6 * * *\"")
        .retries(0)
        .extract("extract_readings", &format!("{url}/readings"), INTERVAL)
        .store_warehouse(&format!("dataset: sensors, table: readings, write: {write}"))
        .to_string()
}

/// The query of [`windowed`]'s extract: its data interval, in three forms.
const INTERVAL: &str = r#"      query:
        start: "{{ data_interval_start }}"
        end: "{{ data_interval_end | strftime('%Y-%m-%dT%H:%M') }}"
        day: "{{ ds_nodash }}"
"#;

/// An API that answers with one reading per request, stamped with the window it was asked for.
fn readings_api() -> Server {
    Server::start(|seen, _| {
        let start = seen.query("start").unwrap_or_default();
        if start.starts_with("2025-01-01T12") && seen.query("fail").is_some() {
            return Reply::status(400, "bad window");
        }
        Reply::json(json!([{"window_start": start, "window_end": seen.query("end"), "value": 1.5}]).to_string())
    })
}

#[test]
fn the_plan_shows_the_logical_time_and_rendered_templates() {
    let ws = Workspace::new();
    let file = ws.product("windowed_product", &windowed("http://127.0.0.1:9", "append"));
    let run = dpf()
        .args(["plan".as_ref(), file.as_os_str()])
        .args(["--format", "json", "--at", "2025-01-01T07:30:00Z"])
        .expect(0);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        plan["logical"],
        json!({
            "run_id": "windowed_product-20250101T060000Z",
            "time": "2025-01-01T06:00:00Z",
            "local_time": "2025-01-01T06:00:00Z",
            "data_interval_start": "2025-01-01T00:00:00Z",
            "data_interval_end": "2025-01-01T06:00:00Z"
        })
    );
    assert_eq!(
        plan["steps"][0]["params"]["query"],
        json!({"start": "2025-01-01T00:00:00Z", "end": "2025-01-01T06:00", "day": "20250101"})
    );
    let text = dpf()
        .args(["plan".as_ref(), file.as_os_str()])
        .args(["--at", "2025-01-01T07:30:00Z"])
        .expect(0);
    assert!(
        text.stdout.contains("this run   windowed_product-20250101T060000Z"),
        "{text}"
    );
    assert!(
        text.stdout
            .contains("interval   [2025-01-01T00:00:00Z, 2025-01-01T06:00:00Z)"),
        "{text}"
    );
}

#[test]
fn backfill_runs_each_tick_once_with_its_own_window() {
    let server = readings_api();
    let ws = Workspace::new();
    let file = ws.product("windowed_product", &windowed(&server.url, "append"));
    let run = |extra: &[&str]| backfill(&ws, &file, "2024-12-31T12:00:00Z", "2025-01-01T18:00:00Z").args(extra);
    // Never before start_date: the ticks of 2024-12-31 are left out.
    let dry = run(&["--dry-run"]).expect(0);
    assert!(dry.stdout.starts_with("4 ticks"), "{dry}");
    assert!(server.seen().is_empty(), "a dry run requests nothing");

    let run = run(&[]).expect(0);
    let ids: BTreeSet<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ok"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        [
            "windowed_product-20250101T000000Z",
            "windowed_product-20250101T060000Z",
            "windowed_product-20250101T120000Z",
            "windowed_product-20250101T180000Z"
        ],
        "{run}"
    );
    let windows: Vec<(String, String)> = server
        .seen()
        .iter()
        .map(|s| (s.query("start").unwrap(), s.query("end").unwrap()))
        .collect();
    assert_eq!(
        windows,
        [
            ("2024-12-31T18:00:00Z".into(), "2025-01-01T00:00".into()),
            ("2025-01-01T00:00:00Z".into(), "2025-01-01T06:00".into()),
            ("2025-01-01T06:00:00Z".into(), "2025-01-01T12:00".into()),
            ("2025-01-01T12:00:00Z".into(), "2025-01-01T18:00".into()),
        ]
    );
    assert_eq!(
        ws.query("SELECT COUNT(*) AS n FROM sensors.readings"),
        [json!({"n": 4})]
    );

    // The same tick again is the same run: its appended rows replace themselves.
    let again = ws.run(&file).args(["--at", "2025-01-01T13:00:00Z"]).expect(0);
    assert_eq!(receipt(&again)["run_id"], "windowed_product-20250101T120000Z");
    assert_eq!(
        ws.query("SELECT COUNT(*) AS n FROM sensors.readings"),
        [json!({"n": 4})]
    );
}

#[test]
fn backfill_stops_at_the_first_failure_and_says_how_to_resume() {
    let server = readings_api();
    let ws = Workspace::new();
    let yaml = windowed(&server.url, "append").replace("        day:", "        fail: \"yes\"\n        day:");
    let file = ws.product("windowed_product", &yaml);
    let run = backfill(&ws, &file, "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z").expect(1);
    assert!(
        run.stdout.contains("FAILED windowed_product-20250101T180000Z (exit 1)"),
        "{run}"
    );
    // The resume command repeats every other argument (the data dir, the log format) as given.
    assert!(
        run.stdout
            .contains("--from 2025-01-01T18:00:00Z --to 2025-01-02T00:00:00Z --log-format off"),
        "{run}"
    );
    assert!(run.stdout.contains("--data-dir"), "{run}");
    assert_eq!(server.seen().len(), 4, "no tick after the failed one runs");
}

#[test]
fn a_second_run_of_the_same_product_does_not_start_while_the_first_holds_the_lock() {
    let server = Server::start(|_, _| Reply::json("[{\"id\": 1}]").delay(Duration::from_secs(20)));
    let ws = Workspace::new();
    let file = ws.product("windowed_product", &windowed(&server.url, "append"));
    let first = ws.run(&file).spawn();
    while server.seen().is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = ws.run(&file).expect(3);
    assert!(
        second
            .stderr
            .contains("another run of `windowed_product` is still going on"),
        "{second}"
    );
    assert_eq!(server.seen().len(), 1, "the second run requested nothing");
    let first = first.terminate();
    assert_eq!(first.code, 130, "{first}");
    // The lock went with the process.
    let server = readings_api();
    let file = ws.product("windowed_product", &windowed(&server.url, "append"));
    ws.run(&file).expect(0);
}

#[test]
fn timeout_stops_the_whole_run_with_75() {
    let server = Server::start(|_, _| Reply::json("[{\"id\": 1}]").delay(Duration::from_secs(20)));
    let ws = Workspace::new();
    let file = ws.product("windowed_product", &windowed(&server.url, "append"));
    let run = ws.run(&file).args(["--timeout", "1s"]).expect(75);
    let receipt = receipt(&run);
    assert_eq!(receipt["status"], "timed_out");
    assert_eq!(receipt["tasks"][0]["status"], "interrupted");
    assert_eq!(receipt["tasks"][1]["status"], "not_run");
}

fn export(format: &str) -> String {
    dpf()
        .args([
            "schedule",
            "export",
            "--format",
            format,
            "--image",
            "europe-docker.pkg.dev/acme/dpf/dpf:1.0",
        ])
        .args(["--workdir", "/srv/dpf", "products", "tests/corpus/valid"])
        .expect(0)
        .stdout
}

#[test]
fn exported_cronjobs_are_valid_kubernetes_and_keep_each_schedule() {
    let text = export("kubernetes");
    // The real validator (PyPI's kubernetes-validate, which scripts/test installs), strict: no
    // property Kubernetes does not know, for every version from 1.29 on.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    for minor in 29..=35 {
        let version = format!("1.{minor}.0");
        let args = ["--strict", "--quiet", "-k", &version].map(std::ffi::OsStr::new);
        let (valid, said) = check_with("kubernetes-validate", &[&args[..], &[file.path().as_os_str()]].concat());
        assert!(valid, "Kubernetes {version} rejects the export:\n{said}\n{text}");
    }
    let documents: Vec<&str> = text.split("\n---\n").skip(1).collect();
    assert!(documents.len() >= 3, "{text}");
    let mut schedules = Vec::new();
    for document in documents {
        let source = dpf::spec::SourceFile::new("cronjob.yaml", document);
        let (loaded, problems) = dpf::spec::yaml::load(&source);
        assert!(problems.is_empty(), "{document}");
        let cronjob = loaded.unwrap().value;
        let spec = &cronjob["spec"]["jobTemplate"]["spec"];
        // The Pod Security "restricted" profile, with a writable data dir on a read-only root.
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let container = &pod["containers"][0];
        assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
        assert_eq!(container["volumeMounts"][0]["mountPath"], "/tmp/dpf");
        assert!(pod["volumes"][0]["emptyDir"].is_object(), "{document}");
        assert_eq!(
            spec["podFailurePolicy"]["rules"][1]["onPodConditions"][0]["status"],
            "True"
        );
        assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
        let never_retried = &spec["podFailurePolicy"]["rules"][0];
        assert_eq!(never_retried["action"], "FailJob");
        assert_eq!(never_retried["onExitCodes"]["values"], json!([1, 2, 3, 65]));
        let args = &spec["template"]["spec"]["containers"][0]["args"];
        schedules.push((
            args[1].as_str().unwrap().to_owned(),
            cronjob["spec"]["schedule"].as_str().unwrap().to_owned(),
        ));
        if args[1] == "weather_data_product" {
            assert_eq!(spec["backoffLimit"], 2);
            assert_eq!(cronjob["metadata"]["name"], "dpf-weather-data-product");
        }
    }
    assert!(
        schedules.contains(&("weather_data_product".into(), "0 */6 * * *".into())),
        "{schedules:?}"
    );
    assert!(
        schedules.contains(&("sales_data_product".into(), "0 2 * * *".into())),
        "{schedules:?}"
    );
    for (_, cron) in &schedules {
        dpf::plan::schedule::parse(cron).unwrap_or_else(|e| panic!("{cron}: {e}"));
    }
}

/// The command of a crontab line as cron hands it to `sh -c`: `\%` becomes `%`, and an unescaped `%`
/// would end the command there (what follows goes to its standard input).
fn as_cron_runs(command: &str) -> String {
    let mut out = String::new();
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some('%')) => {
                out.push('%');
                chars.next();
            }
            ('%', _) => break,
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn each_crontab_line_runs_from_any_folder_as_cron_runs_it() {
    let ws = Workspace::new();
    let server = serve(vec![json!(records(1, 3))]);
    // Folders with `%` in their names, which cron would cut the command at, and a space.
    let products = ws.path().join("prod%ucts");
    let work = ws.path().join("work 100%");
    let logs = ws.path().join("logs%");
    std::fs::create_dir_all(&products).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let yaml = ProductYaml::items(&server.url, "")
        .set("schedule", "\"0 6 * * *\"")
        .store_warehouse("dataset: shop, table: items, write: replace")
        .to_string();
    std::fs::write(products.join("items_product.yaml"), yaml).unwrap();
    let crontab = dpf()
        .args(["schedule", "export", "--format", "crontab", "--target", "local"])
        .args([
            "--binary".as_ref(),
            std::path::Path::new(env!("CARGO_BIN_EXE_dpf")).as_os_str(),
        ])
        .args([
            "--workdir".as_ref(),
            work.as_os_str(),
            "--log-dir".as_ref(),
            logs.as_os_str(),
        ])
        .args([&products])
        .expect(0)
        .stdout;
    let line = crontab
        .lines()
        .find(|l| l.starts_with("0 6 * * * "))
        .expect("the product's line");
    let command = line.strip_prefix("0 6 * * * ").unwrap();
    assert!(!command.replace("\\%", "").contains('%'), "an unescaped % in {line}");
    let ran = std::process::Command::new("sh")
        .args(["-c", &as_cron_runs(command)])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .status()
        .unwrap();
    let log = std::fs::read_to_string(logs.join("items_product.log")).unwrap_or_default();
    assert!(ran.success(), "{line}\n{log}");
    assert!(log.lines().all(|l| serde_json::from_str::<Value>(l).is_ok()), "{log}");
    assert!(log.contains("run finished"), "{log}");
    let stored = dpf()
        .args([
            "query",
            "SELECT COUNT(*) AS n FROM shop.items",
            "--format",
            "json",
            "--data-dir",
        ])
        .args([work.join(".dpf")])
        .expect(0);
    assert_eq!(
        serde_json::from_str::<Value>(&stored.stdout).unwrap(),
        json!([{"n": 3}])
    );
}

#[test]
fn exported_crontab_and_cloud_run_keep_each_schedule() {
    let crontab = export("crontab");
    let line = crontab
        .lines()
        .find(|l| l.contains("run weather_data_product"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[..5].join(" "), "0 */6 * * *", "{line}");
    assert!(
        line.contains("cd /srv/dpf && mkdir -p /var/log/dpf && dpf run weather_data_product --products products"),
        "{line}"
    );
    assert!(
        line.ends_with("--log-format json > /dev/null 2>> /var/log/dpf/weather_data_product.log"),
        "{line}"
    );

    let script = export("cloud-run");
    assert!(
        script.contains("gcloud run jobs deploy dpf-weather-data-product"),
        "{script}"
    );
    assert!(script.contains("--schedule '0 */6 * * *' --time-zone UTC"), "{script}");
    // Cloud Run retries every failed exit alike, 65 too: dpf retries its tasks itself.
    assert!(script.contains("--max-retries 0"), "{script}");
    let check = std::process::Command::new("sh")
        .args(["-n", "-c", &script])
        .status()
        .unwrap();
    assert!(check.success(), "the script is not valid sh\n{script}");
}

#[test]
fn the_examples_are_what_export_writes_today() {
    let image = "europe-docker.pkg.dev/acme-data/dpf/dpf:latest";
    let cases = [
        (
            "examples/crontab",
            vec!["--format", "crontab", "--target", "local", "--workdir", "/srv/dpf"],
        ),
        (
            "examples/kubernetes-cronjobs.yaml",
            vec!["--format", "kubernetes", "--image", image],
        ),
        (
            "examples/cloud-run-jobs.sh",
            vec!["--format", "cloud-run", "--image", image],
        ),
    ];
    for (file, args) in cases {
        let exported = dpf()
            .args(["schedule", "export"])
            .args(args)
            .args(["products"])
            .expect(0)
            .stdout;
        let committed = std::fs::read_to_string(root().join(file)).unwrap();
        assert_eq!(
            committed, exported,
            "{file} is out of date: regenerate it with `dpf schedule export` (see the README)"
        );
    }
}
