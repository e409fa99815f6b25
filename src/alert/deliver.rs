//! The one HTTP POST that SendGrid and Slack deliveries share: bounded retries of 408, 429, 5xx
//! and connection errors (honouring `Retry-After`), and a permanent error for any other refusal.
//! Messages never hold the URL: a Slack webhook URL is itself a secret.

use std::time::Duration;

use crate::run::error::TaskError;

/// Attempts per delivery before a transient failure is reported.
const ATTEMPTS: u32 = 3;

pub struct Post<'a> {
    /// Who is called, for messages.
    pub service: &'a str,
    pub url: String,
    pub bearer: Option<&'a str>,
    /// A JSON document.
    pub body: String,
    pub timeout: Duration,
}

/// Sends `request`; `refusal(status, body)` words a permanent refusal.
pub async fn post(request: &Post<'_>, refusal: impl Fn(u16, &str) -> String) -> Result<(), TaskError> {
    let client = crate::http::client();
    let mut delay = Duration::from_millis(500);
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        let mut builder = client
            .post(&request.url)
            .timeout(request.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.body.clone());
        if let Some(token) = request.bearer {
            builder = builder.bearer_auth(token);
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                // Without the URL: reqwest's errors name it.
                let why = if error.is_timeout() {
                    "timed out"
                } else {
                    "could not connect"
                };
                last = format!("{}: {why}", request.service);
                continue;
            }
        };
        let status = response.status().as_u16();
        let wait = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::http::retry_after);
        let text = response.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(());
        }
        if crate::http::transient_status(status) {
            last = format!("{} answered {status}: {}", request.service, text.trim());
            if let Some(wait) = wait {
                delay = wait.min(Duration::from_secs(30));
            }
            continue;
        }
        return Err(TaskError::permanent(refusal(status, &text)));
    }
    Err(TaskError::transient(format!("{last} (after {ATTEMPTS} attempts)")))
}
