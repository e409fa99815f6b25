//! Slack messages through an incoming webhook, on the gcp target: the alert as Block Kit blocks.

use std::time::Duration;

use serde_json::{Value, json};

use super::deliver::{Post, Via, post};
use super::message::Message;
use crate::error::TaskError;

/// Slack's limit on the text of one section block.
const SECTION_TEXT: usize = 3000;

/// The webhook payload: a header with the subject, then the message's text (the rows as a
/// preformatted table), cut to what a section holds. `text` is the notification's fallback.
pub(crate) fn payload(message: &Message) -> Value {
    let header: String = message.subject.chars().take(150).collect();
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": header}})];
    let (intro, table) = message.text.split_once("\n\n").unwrap_or((message.text.as_str(), ""));
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": escape(&cut(intro, SECTION_TEXT))}}));
    let table = table.trim_end_matches("\n-- \nSent by dpf\n").trim();
    if !table.is_empty() {
        let text = format!("```{}```", cut(&escape(table), SECTION_TEXT - 6));
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": text}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "Sent by dpf"}]}));
    json!({"text": message.subject, "blocks": blocks})
}

/// `text` with Slack's control characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(limit - 1).collect();
    out.push('…');
    out
}

/// Posts `message` to the incoming webhook `url`.
pub(crate) async fn send(via: &Via<'_>, url: &str, message: &Message) -> Result<(), TaskError> {
    let request = Post {
        service: "Slack",
        url: url.to_owned(),
        bearer: None,
        body: payload(message).to_string(),
        timeout: Duration::from_secs(30),
    };
    post(via, &request, |status, text| {
        format!("Slack refused the message ({status}): {}", text.trim())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_kit_payload() {
        let message = Message {
            subject: "p: 2 rows".into(),
            text: "2 rows match <x>.\n\n+---+\n| a |\n+---+\n\n-- \nSent by dpf\n".into(),
            html: String::new(),
        };
        let payload = payload(&message);
        assert_eq!(payload["text"], "p: 2 rows");
        assert_eq!(payload["blocks"][0]["type"], "header");
        assert_eq!(payload["blocks"][1]["text"]["text"], "2 rows match &lt;x&gt;.");
        assert_eq!(payload["blocks"][2]["text"]["text"], "```+---+\n| a |\n+---+```");
    }
}
