//! Secrets from Secret Manager and alerts through SendGrid and Slack, on the gcp target: against the
//! Secret Manager double (gRPC), local HTTP servers standing in for SendGrid and Slack, and the
//! emulators. And the canary: one secret value, used everywhere a secret can go, found nowhere.

use serde_json::{Value, json};

use crate::secret_manager::{Answer, SecretManager};
use crate::server::{Reply, Seen, Server};
use crate::util::{
    CANARY, ProductYaml, Run, SENDGRID_KEY, Workspace, dpf, files, gcp, new_project, receipt, replay_command, sendgrid,
    task, task_error,
};

fn json_body(seen: &Seen) -> Value {
    serde_json::from_str(&seen.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", seen.body))
}

#[test]
fn a_gcp_run_whose_alert_holds_sends_one_email_with_its_rows_using_the_key_from_secret_manager() {
    let project = new_project("heatwave");
    let mail = sendgrid();
    let ws = Workspace::new();
    let run = gcp(
        replay_command(&ws, "weather_data_product")
            .args(["--fixtures", "products/fixtures/weather_data_product_heatwave"]),
        &project,
    )
    .env("SENDGRID_API_URL", &mail.url)
    .expect(0);
    let receipt = receipt(&run);
    let seen = mail.seen();
    assert_eq!(seen.len(), 1, "exactly one e-mail: {receipt}");
    let request = &seen[0];
    assert_eq!((request.method.as_str(), request.path()), ("POST", "/v3/mail/send"));
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {SENDGRID_KEY}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = json_body(request);
    assert_eq!(
        body["personalizations"],
        json!([{"to": [{"email": "alerts@example.com"}]}])
    );
    assert_eq!(body["from"], json!({"email": "dpf@localhost", "name": "dpf"}));
    assert_eq!(
        body["subject"],
        "weather_data_product: 18 hours of extreme weather in Vancouver"
    );
    assert_eq!(body["content"][0]["type"], "text/plain");
    assert_eq!(body["content"][1]["type"], "text/html");
    let html = body["content"][1]["value"].as_str().unwrap();
    // A header row and the 18 hot hours.
    assert_eq!(html.matches("<tr>").count(), 19, "{html}");
    assert!(html.contains("<td>2025-07-"), "{html}");
    assert_eq!(body["categories"], json!(["dpf", "weather_data_product"]));
    assert_eq!(body["custom_args"]["run_id"], receipt["run_id"]);
    assert_eq!(body["custom_args"]["product"], "weather_data_product");
    assert_eq!(receipt["alerts"][0]["destination"], "sendgrid:v3/mail/send");
    assert_eq!(receipt["alerts"][0]["rows"], 18);
    assert_eq!(task(&receipt, "to_bigquery")["rows"], 168);
}

/// An items product on the gcp target whose extract sends `token` as a bearer token, then stores
/// the rows in `shop.items`, followed by `alert` (YAML list items).
fn alerting_product(url: &str, token: &str, alert: &str) -> String {
    let auth = format!("      auth: {{ type: bearer, token: \"{token}\" }}");
    ProductYaml::items(url, &auth)
        .retries(1)
        .store_warehouse("dataset: shop, table: items, write: append")
        .task(alert)
        .to_string()
}

const ITEMS: &str = r#"[{"id": 1, "name": "<script>alert(1)</script>", "price": 2.5}]"#;

fn refused(ws: &Workspace, project: &str, token: &str, code: i32, env: &[(&str, &str)]) -> Run {
    let server = Server::start(|_, _| Reply::json(ITEMS));
    let file = ws.product("items_product", &alerting_product(&server.url, token, ""));
    let mut command = gcp(ws.run(&file), project);
    for (key, value) in env {
        command = command.env(key, value);
    }
    let run = command.expect(code);
    assert!(server.seen().is_empty(), "the extract ran: {run}");
    let receipt = receipt(&run);
    assert_eq!(task(&receipt, "to_warehouse")["status"], "not_run", "{receipt}");
    run
}

#[test]
fn a_missing_denied_or_unreachable_secret_stops_the_run_before_anything_runs() {
    let project = new_project("secrets");
    let ws = Workspace::new();
    let run = refused(&ws, &project, "${secret:ITEMS_TOKEN}", 1, &[]);
    assert_eq!(
        task_error(&run, "extract_items"),
        "`${secret:ITEMS_TOKEN}`: Secret Manager: not found (no such secret, or no such version)"
    );

    let denied = "projects/other-project/secrets/items-token/versions/3";
    let secrets = SecretManager::start(&[(denied, Answer::Denied)]);
    let run = refused(
        &ws,
        &project,
        &format!("${{secret:{denied}}}"),
        1,
        &[("DPF_SECRET_MANAGER_URL", &secrets.url)],
    );
    assert!(
        task_error(&run, "extract_items").contains("permission denied: the credentials need"),
        "{run}"
    );
    assert_eq!(secrets.asked(), [denied]);

    let run = refused(
        &ws,
        &project,
        "${secret:ITEMS_TOKEN}",
        75,
        &[("DPF_SECRET_MANAGER_URL", "http://127.0.0.1:9")],
    );
    assert!(
        task_error(&run, "extract_items").contains("cannot reach Secret Manager"),
        "{run}"
    );
}

#[test]
fn a_full_secret_name_is_read_from_secret_manager_on_the_local_target_too() {
    let name = "projects/acme-shared/secrets/items-token/versions/latest";
    let secrets = SecretManager::start(&[(name, Answer::Value("token-from-secret-manager\n".into()))]);
    let server = Server::start(|_, _| Reply::json(ITEMS));
    let ws = Workspace::new();
    let file = ws.product(
        "items_product",
        &alerting_product(&server.url, &format!("${{secret:{name}}}"), ""),
    );
    ws.run(&file).env("DPF_SECRET_MANAGER_URL", &secrets.url).expect(0);
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some("Bearer token-from-secret-manager")
    );
}

const ALERT: &str = r#"  - id: price_alert
    function: send_alerts
    params:
      recipient: [ops@example.com, "Finance <finance@example.com>"]
      cc: boss@example.com
      from: "Shop alerts <alerts@shop.example>"
      subject: "{product}: {count} items over 2 ({run_id})"
      when: "price > 2"
      channels: [email, slack]
      slack_webhook: ${secret:SLACK_WEBHOOK_URL}
"#;

#[test]
fn an_alert_goes_to_sendgrid_and_to_slack_as_block_kit() {
    let project = new_project("slack");
    let (mail, slack) = (sendgrid(), Server::start(|_, _| Reply::with("text/plain", "ok")));
    let webhook = format!("{}/services/T000/B000/XXXXSECRET", slack.url);
    let secrets = SecretManager::start(&[
        (
            &format!("projects/{project}/secrets/SENDGRID_API_KEY/versions/latest"),
            Answer::Value("SG.key".into()),
        ),
        (
            &format!("projects/{project}/secrets/SLACK_WEBHOOK_URL/versions/latest"),
            Answer::Value(webhook.clone()),
        ),
    ]);
    let server = Server::start(|_, _| Reply::json(ITEMS));
    let ws = Workspace::new();
    let file = ws.product("items_product", &alerting_product(&server.url, "", ALERT));
    let run = gcp(ws.run(&file), &project)
        .env("DPF_SECRET_MANAGER_URL", &secrets.url)
        .env("SENDGRID_API_URL", &mail.url)
        .expect(0);
    let receipt = receipt(&run);
    let email = json_body(&mail.seen()[0]);
    assert_eq!(
        email["personalizations"],
        json!([{
            "to": [{"email": "ops@example.com"}, {"email": "finance@example.com", "name": "Finance"}],
            "cc": [{"email": "boss@example.com"}]
        }])
    );
    assert_eq!(
        email["from"],
        json!({"email": "alerts@shop.example", "name": "Shop alerts"})
    );
    let html = email["content"][1]["value"].as_str().unwrap();
    assert!(
        html.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    let seen = slack.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path(), "/services/T000/B000/XXXXSECRET");
    let message = json_body(&seen[0]);
    let subject = email["subject"].as_str().unwrap();
    assert_eq!(message["text"], subject);
    assert_eq!(
        message["blocks"][0],
        json!({"type": "header", "text": {"type": "plain_text", "text": subject}})
    );
    assert!(
        message["blocks"][2]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("&lt;script&gt;"),
        "{message}"
    );
    let channels: Vec<&str> = receipt["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["email", "slack"]);
    // The webhook URL is a secret: the receipt and the logs never show it.
    assert!(
        !run.stdout.contains("XXXXSECRET") && !run.stderr.contains("XXXXSECRET"),
        "{run}"
    );
}

#[test]
fn a_sendgrid_refusal_is_a_permanent_error_with_sendgrids_message() {
    let project = new_project("refusal");
    let mail = Server::start(|_, _| {
        Reply::status(
            403,
            r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#,
        )
    });
    let server = Server::start(|_, _| Reply::json(ITEMS));
    let ws = Workspace::new();
    let alert = ALERT
        .replace("channels: [email, slack]", "channels: [email]")
        .replace("      slack_webhook: ${secret:SLACK_WEBHOOK_URL}\n", "");
    let file = ws.product("items_product", &alerting_product(&server.url, "", &alert));
    let run = gcp(ws.run(&file), &project)
        .env("SENDGRID_API_URL", &mail.url)
        .expect(1);
    assert_eq!(
        task_error(&run, "price_alert"),
        "SendGrid refused the e-mail (403): The from address does not match a verified Sender Identity. (field `from`)"
    );
    assert_eq!(mail.seen().len(), 1, "a refusal is not retried");
}

#[test]
fn the_canary_secret_appears_in_no_output_of_any_command() {
    // The canary is the API key of an extract, sent in a header; the server echoes it in a next-page
    // link and in its errors. On the gcp target it is also the SendGrid key and in the Slack webhook.
    let server = Server::start(|seen, _| {
        let key = seen.header("x-api-key").unwrap_or_default().to_owned();
        match (seen.path(), seen.query("page")) {
            ("/items", None) => Reply::json(
                json!({"data": [{"id": 1, "price": 3.0}], "next": format!("/items?page=2&key={key}")}).to_string(),
            ),
            ("/items", Some(_)) => Reply::json(json!({"data": [{"id": 2, "price": 4.0}], "next": null}).to_string()),
            _ => Reply::status(401, &format!("bad key {key} for {}", seen.target)),
        }
    });
    let params = r#"      headers: { X-Api-Key: "${secret:CANARY_KEY}" }
      records: data
      pagination: { type: next_url, next_url_path: next }"#;
    let alert = r#"  - id: price_alert
    function: send_alerts
    params:
      recipient: ops@example.com
      when: "price > 1"
      channels: [email, slack]
      slack_webhook: "${secret:CANARY_KEY}"
      sendgrid_api_key: "${secret:CANARY_KEY}"
"#;
    let product = |name: &str, path: &str| {
        ProductYaml::new(name)
            .retries(0)
            .extract("extract_items", &format!("{}{path}", server.url), params)
            .store_warehouse("dataset: shop, table: items")
            .task(alert)
            .to_string()
    };
    let ws = Workspace::new();
    let file = ws.product("canary_product", &product("canary_product", "/items"));
    let broken = ws.product("canary_broken", &product("canary_broken", "/broken"));
    std::fs::write(ws.path().join(".env"), format!("CANARY_KEY={CANARY}\n")).unwrap();
    let mut outputs: Vec<Run> = vec![
        // Local target: a run, a recording, a replay, and a run whose server echoes the key in an error.
        ws.run(&file).expect(0),
        ws.run(&file)
            .args(["--record", "--at", "2025-01-02T00:00:00Z"])
            .expect(0),
        ws.run(&file)
            .args(["--replay", "--at", "2025-01-03T00:00:00Z"])
            .expect(0),
        ws.run(&broken).expect(1),
    ];
    for (args, code) in [
        (vec!["plan", "canary_product"], 0),
        (vec!["plan", "canary_product", "--format", "json"], 0),
        (vec!["validate", "products"], 0),
        (vec!["list"], 0),
        (vec!["test", "products"], 0),
        (vec!["query", "SELECT * FROM shop.items", "--data-dir", "data"], 0),
    ] {
        outputs.push(dpf().current_dir(ws.path()).args(&args).expect(code));
    }
    // gcp target: Secret Manager holds the canary (in a webhook URL that is also the SendGrid key);
    // SendGrid refuses it and echoes it back.
    let project = new_project("canary");
    let refuse = Server::start(|seen, _| {
        let auth = seen.header("authorization").unwrap_or_default().to_owned();
        Reply::status(400, &format!("refused {auth} at {}", seen.target))
    });
    let secrets = SecretManager::start(&[(
        &format!("projects/{project}/secrets/CANARY_KEY/versions/latest"),
        Answer::Value(format!("{}/hook/{CANARY}", refuse.url)),
    )]);
    let run = gcp(ws.run(&file), &project)
        .args(["--replay", "--at", "2025-01-04T00:00:00Z"])
        .env("DPF_SECRET_MANAGER_URL", &secrets.url)
        .env("SENDGRID_API_URL", &refuse.url)
        .expect(1);
    assert!(task_error(&run, "price_alert").contains("refused"), "{run}");
    outputs.push(run);
    for run in &outputs {
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(CANARY), "the canary leaked\n{run}");
        }
    }
    for (path, text) in files(ws.path()) {
        if path.ends_with(".env") {
            continue;
        }
        assert!(
            !text.contains(CANARY),
            "the canary leaked into {}:\n{text}",
            path.display()
        );
    }
}

#[test]
fn a_failed_gcp_run_tells_the_on_failure_recipients_by_email() {
    let project = new_project("failure");
    let mail = sendgrid();
    let server = Server::start(|_, _| Reply::status(400, "no such endpoint"));
    let ws = Workspace::new();
    let file = ws.product("items_product", &alerting_product(&server.url, "", ON_FAILURE));
    let run = gcp(ws.run(&file), &project)
        .env("SENDGRID_API_URL", &mail.url)
        .expect(1);
    let seen = mail.seen();
    assert_eq!(seen.len(), 1, "{run}");
    let email = json_body(&seen[0]);
    assert_eq!(
        email["personalizations"][0]["to"],
        json!([{"email": "oncall@example.com"}])
    );
    let subject = email["subject"].as_str().unwrap();
    assert!(subject.ends_with("failed (extract_items)"), "{subject}");
    assert_eq!(receipt(&run)["alerts"][0]["trigger"], "failure");
}

const ON_FAILURE: &str = "  - id: oncall\n    function: send_alerts\n    params: { recipient: ops@example.com, on_failure: oncall@example.com }\n";

#[test]
fn a_sendgrid_answer_worth_retrying_is_tried_again_within_the_attempt() {
    let project = new_project("retried");
    let mail = Server::start(|_, number| match number {
        0 => Reply::status(503, "busy").header("Retry-After", "0"),
        _ => Reply::status(202, ""),
    });
    let server = Server::start(|_, _| Reply::json(ITEMS));
    let ws = Workspace::new();
    let alert = ALERT
        .replace("channels: [email, slack]", "channels: [email]")
        .replace("      slack_webhook: ${secret:SLACK_WEBHOOK_URL}\n", "");
    let file = ws.product("items_product", &alerting_product(&server.url, "", &alert));
    let run = gcp(ws.run(&file), &project)
        .env("SENDGRID_API_URL", &mail.url)
        .expect(0);
    assert_eq!(mail.seen().len(), 2, "{run}");
    let receipt = receipt(&run);
    assert_eq!(task(&receipt, "price_alert")["attempts"], 1, "{receipt}");
    assert_eq!(receipt["alerts"][0]["destination"], "sendgrid:v3/mail/send");
}

#[test]
fn a_stop_cuts_short_the_wait_of_a_failure_alert() {
    let project = new_project("stopwait");
    // SendGrid asks for the longest wait a delivery honours, every time.
    let mail = Server::start(|_, _| Reply::status(503, "busy").header("Retry-After", "120"));
    let server = Server::start(|_, _| Reply::status(400, "no such endpoint"));
    let ws = Workspace::new();
    let file = ws.product("items_product", &alerting_product(&server.url, "", ON_FAILURE));
    let child = gcp(ws.run(&file), &project).env("SENDGRID_API_URL", &mail.url).spawn();
    while mail.seen().is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stopped = std::time::Instant::now();
    let run = child.terminate();
    assert!(
        stopped.elapsed().as_secs() < 10,
        "the wait went on after SIGTERM\n{run}"
    );
    assert_eq!(mail.seen().len(), 1, "{run}");
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("cannot send the failure alert: stopped"), "{run}");
}

#[test]
fn a_timed_out_gcp_run_still_tells_the_on_failure_recipients() {
    let project = new_project("timedout");
    let mail = sendgrid();
    let server = Server::start(|_, _| Reply::json(ITEMS).delay(std::time::Duration::from_secs(20)));
    let ws = Workspace::new();
    let file = ws.product("items_product", &alerting_product(&server.url, "", ON_FAILURE));
    let run = gcp(ws.run(&file).args(["--timeout", "1s"]), &project)
        .env("SENDGRID_API_URL", &mail.url)
        .expect(75);
    assert_eq!(mail.seen().len(), 1, "{run}");
    let receipt = receipt(&run);
    assert_eq!(receipt["status"], "timed_out");
    assert_eq!(receipt["alerts"][0]["trigger"], "failure");
}

#[test]
fn on_a_laptop_the_gcp_target_reads_secrets_from_the_environment_and_alerts_into_the_outbox() {
    let project = new_project("laptop");
    let mail = sendgrid();
    let ws = Workspace::new();
    let server = Server::start(|_, _| Reply::json(ITEMS));
    let alert = "  - id: price_alert\n    function: send_alerts\n    params:\n      recipient: ops@example.com\n      when: \"price > 1\"\n";
    let file = ws.product(
        "items_product",
        &alerting_product(&server.url, "${secret:API_TOKEN}", alert),
    );

    let plan = gcp(dpf().args(["plan".as_ref(), file.as_os_str()]), &project)
        .args(["--secrets", "env", "--alerts", "outbox", "--data-dir"])
        .args([ws.data()])
        .expect(0)
        .stdout;
    assert!(plan.contains("secrets    env"), "{plan}");
    assert!(plan.contains("alerts     to the outbox"), "{plan}");
    assert!(
        plan.contains("outbox (email)"),
        "the alert's destination is the outbox\n{plan}"
    );

    let run = gcp(ws.run(&file), &project)
        .args(["--secrets", "env", "--alerts", "outbox"])
        .env("API_TOKEN", "token-from-the-environment")
        .env("SENDGRID_API_URL", &mail.url)
        .expect(0);
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some("Bearer token-from-the-environment")
    );
    assert!(
        run.stderr
            .lines()
            .next()
            .unwrap()
            .contains("(secrets from env, alerts to the outbox)"),
        "{run}"
    );
    let sent = &receipt(&run)["alerts"][0];
    assert!(
        sent["destination"].as_str().unwrap().ends_with("outbox (email)"),
        "{sent}"
    );
    let mails = crate::util::outbox(&ws);
    assert_eq!(mails.len(), 1, "{run}");
    assert!(mails[0].contains("ops@example.com"), "{}", mails[0]);
    assert!(mail.seen().is_empty(), "nothing went to SendGrid");
    // The rows went to BigQuery all the same.
    let stored = crate::util::bigquery(&project, "SELECT COUNT(*) AS n FROM shop.items");
    assert_eq!(stored[0]["n"], "1", "{stored:?}");
}
