//! The local target's mail: each alert becomes an RFC 5322 message (`.eml`, text and HTML parts) in
//! `<data-dir>/outbox/`, readable by any mail client; a Slack alert becomes the JSON it would post.

use std::path::{Path, PathBuf};

use lettre::Message as Email;
use lettre::message::{Mailbox, MultiPart};

use super::message::Message;

pub(crate) const DEFAULT_FROM: &str = "dpf <dpf@localhost>";

#[derive(Debug, thiserror::Error)]
pub(crate) enum OutboxError {
    #[error("`{address}` is not an e-mail address")]
    Address {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `address` (`a@b.c` or `Name <a@b.c>`) as a mailbox; `dpf validate` checks literal ones with it.
pub(crate) fn mailbox(address: &str) -> Result<Mailbox, OutboxError> {
    address.parse().map_err(|source| OutboxError::Address {
        address: address.to_owned(),
        source,
    })
}

/// A unique, sortable file name: time, product, task.
fn file_name(product: &str, task: &str, extension: &str) -> String {
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ");
    format!("{now}-{product}-{task}.{extension}")
}

/// Writes `message` as an e-mail; returns the file.
pub(crate) fn email(
    outbox: &Path,
    product: &str,
    task: &str,
    from: Option<&str>,
    to: &[String],
    cc: &[String],
    message: &Message,
) -> Result<PathBuf, OutboxError> {
    let mut builder = Email::builder()
        .from(mailbox(from.unwrap_or(DEFAULT_FROM))?)
        .subject(message.subject.clone())
        .message_id(None);
    for address in to {
        builder = builder.to(mailbox(address)?);
    }
    for address in cc {
        builder = builder.cc(mailbox(address)?);
    }
    let email = builder
        .multipart(MultiPart::alternative_plain_html(
            message.text.clone(),
            message.html.clone(),
        ))
        .map_err(|e| OutboxError::Build(e.to_string()))?;
    let path = outbox.join(file_name(product, task, "eml"));
    crate::atomic::write(&path, &email.formatted()).map_err(|source| OutboxError::Write {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}

/// Writes `message` as the JSON body a Slack incoming webhook would receive; returns the file.
pub(crate) fn slack(outbox: &Path, product: &str, task: &str, message: &Message) -> Result<PathBuf, OutboxError> {
    let body = serde_json::json!({
        "text": message.subject,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.subject}},
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("```\n{}\n```", message.text)}},
        ],
    });
    let path = outbox.join(file_name(product, task, "slack.json"));
    let text = serde_json::to_string_pretty(&body).expect("JSON values serialize") + "\n";
    crate::atomic::write(&path, text.as_bytes()).map_err(|source| OutboxError::Write {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path)
}
