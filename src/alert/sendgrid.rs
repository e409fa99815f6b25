//! E-mail through SendGrid's v3 `mail/send` API, on the gcp target.

use std::time::Duration;

use serde_json::{Value, json};

use super::deliver::{Post, Via, post};
use super::message::Message;
use crate::error::TaskError;

/// The environment variable that overrides SendGrid's API base URL (tests point it at a local server).
pub(crate) const URL_VAR: &str = "SENDGRID_API_URL";
const API: &str = "https://api.sendgrid.com";

/// One e-mail: who sends it to whom, what it says, and the run it comes from.
pub(crate) struct Email<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub cc: &'a [String],
    pub message: &'a Message,
    pub product: &'a str,
    pub run_id: &'a str,
    pub task: &'a str,
}

/// The API endpoint, from [`URL_VAR`] or SendGrid's own.
pub(crate) fn endpoint() -> String {
    let base = std::env::var(URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| API.to_owned());
    format!("{}/v3/mail/send", base.trim_end_matches('/'))
}

/// The request body in SendGrid's v3 shape: the plain text first, then the HTML.
pub(crate) fn body(email: &Email<'_>) -> Value {
    let addresses = |list: &[String]| list.iter().map(|a| address(a)).collect::<Vec<_>>();
    let mut personalization = json!({ "to": addresses(email.to) });
    if !email.cc.is_empty() {
        personalization["cc"] = json!(addresses(email.cc));
    }
    json!({
        "personalizations": [personalization],
        "from": address(email.from),
        "subject": email.message.subject,
        "content": [
            {"type": "text/plain", "value": email.message.text},
            {"type": "text/html", "value": email.message.html},
        ],
        "categories": ["dpf", email.product],
        "custom_args": {"product": email.product, "run_id": email.run_id, "task": email.task},
    })
}

/// `Name <addr@x>` or `addr@x` as a SendGrid address object.
fn address(text: &str) -> Value {
    match text.trim().rsplit_once('<') {
        Some((name, rest)) => {
            let email = rest.trim_end_matches('>').trim();
            let name = name.trim().trim_matches('"');
            if name.is_empty() {
                json!({"email": email})
            } else {
                json!({"email": email, "name": name})
            }
        }
        None => json!({"email": text.trim()}),
    }
}

/// Sends `email` with API key `key`. 429 and 5xx are tried again a few times; any other refusal is
/// permanent and carries SendGrid's own message.
pub(crate) async fn send(via: &Via<'_>, key: &str, email: &Email<'_>) -> Result<(), TaskError> {
    let request = Post {
        service: "SendGrid",
        url: endpoint(),
        bearer: Some(key),
        body: body(email).to_string(),
        timeout: Duration::from_secs(30),
    };
    post(via, &request, |status, text| {
        let parsed: Value = serde_json::from_str(text).unwrap_or_default();
        let messages: Vec<String> = parsed["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| match e["field"].as_str() {
                Some(field) if !field.is_empty() => {
                    format!("{} (field `{field}`)", e["message"].as_str().unwrap_or(""))
                }
                _ => e["message"].as_str().unwrap_or("").to_owned(),
            })
            .collect();
        let said = if messages.is_empty() {
            text.trim().to_owned()
        } else {
            messages.join("; ")
        };
        format!("SendGrid refused the e-mail ({status}): {said}")
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_sendgrids_v3_shape() {
        let message = Message {
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        let email = Email {
            from: "dpf <alerts@example.com>",
            to: &["a@example.com".into()],
            cc: &[],
            message: &message,
            product: "p",
            run_id: "r",
            task: "t",
        };
        let body = body(&email);
        assert_eq!(body["personalizations"][0]["to"], json!([{"email": "a@example.com"}]));
        assert!(body["personalizations"][0].get("cc").is_none());
        assert_eq!(body["from"], json!({"email": "alerts@example.com", "name": "dpf"}));
        assert_eq!(body["content"][0]["type"], "text/plain");
        assert_eq!(body["content"][1]["value"], "<p>h</p>");
        assert_eq!(body["custom_args"]["run_id"], "r");
    }
}
