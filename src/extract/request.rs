//! The requests of an extract: their fixed parts (method, headers, credentials only to the
//! product's origin), each sent with the task's retries and pace, and the counts they share.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::http::{Auth, ExtractHttp, KeyLocation, Method};
use super::throttle::{MAX_THROTTLED, Throttle};
use crate::error::TaskError;
use crate::http::{HttpError, Request, Response, Transport};
use crate::log::Log;
use crate::retry::{self, Policy};
use crate::secrets::Secrets;

/// What an extract needs of the run.
pub(crate) struct Context<'a> {
    /// The task's id: fixtures, logs and progress are named by it.
    pub(crate) task: &'a str,
    /// How each request is retried.
    pub(crate) policy: Policy,
    pub(crate) transport: &'a Transport,
    pub(crate) secrets: &'a Secrets,
    pub(crate) log: &'a Log,
    pub(crate) cancel: &'a CancellationToken,
    /// Where the exchanges are saved, when recording.
    pub(crate) record_dir: Option<&'a Path>,
    /// Replayed requests keep their references as text: that is how recordings hold them.
    pub(crate) replay: bool,
    /// Paces the task's requests, when it fans out or sets `concurrency` or `rate_limit`.
    pub(crate) throttle: Option<&'a Throttle>,
    /// The progress line and counts of the task (bytes received: [`Shared::bytes`]), shared by its
    /// items.
    pub(crate) shared: &'a Shared,
    /// Where rows go while the pages still arrive, once the builder holds [`CHUNK_ROWS`](crate::table::spill::CHUNK_ROWS) rows or
    /// `chunk_bytes` of responses.
    pub(crate) spill_dir: &'a Path,
    pub(crate) chunk_bytes: usize,
}

/// The parts of every request that do not change from page to page.
pub(super) struct Requests {
    method: Method,
    origin: url::Origin,
    headers: Vec<(String, String)>,
    /// The API key in the query, when `auth.in` is `query`.
    query_key: Option<(String, String)>,
    /// Headers that carry credentials (lower case): never sent to another origin.
    credential_headers: Vec<String>,
    body: Option<String>,
    timeout: Duration,
    max_response_mb: u64,
}

impl Requests {
    pub(super) fn new(params: &ExtractHttp, cx: &Context<'_>) -> Result<Self, TaskError> {
        let mut headers: Vec<(String, String)> = params
            .headers
            .iter()
            .map(|(n, v)| (n.to_lowercase(), v.clone()))
            .collect();
        let mut query_key = None;
        let mut credential_headers = vec!["authorization".to_owned(), "cookie".to_owned()];
        if let Some(auth) = &params.auth {
            let mut key_name = None;
            match auth {
                Auth::Bearer { token } => headers.push(("authorization".into(), format!("Bearer {token}"))),
                Auth::Basic { username, password } => {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                    headers.push(("authorization".into(), format!("Basic {encoded}")));
                }
                Auth::ApiKey { name, value, location } => {
                    key_name = Some(name.as_str());
                    match location {
                        KeyLocation::Header => {
                            headers.push((name.to_lowercase(), value.clone()));
                            credential_headers.push(name.to_lowercase());
                        }
                        KeyLocation::Query => query_key = Some((name.clone(), value.clone())),
                    }
                }
            }
            // Credentials written literally in the file are as secret as referenced ones. (A replayed
            // run keeps references as text: those are what fixtures hold, not secrets.)
            let literal = |value: &str| !value.contains("${");
            for (name, value) in &headers {
                let credential = name == "authorization" || key_name.is_some_and(|n| n.eq_ignore_ascii_case(name));
                if credential && literal(value) {
                    cx.secrets.add_redaction(value, "[credentials]");
                }
            }
            if let Some((_, key)) = query_key.as_ref().filter(|(_, key)| literal(key)) {
                cx.secrets.add_redaction(key, "[credentials]");
            }
        }
        Ok(Requests {
            method: params.method,
            credential_headers,
            origin: parse_url(&params.url)?.origin(),
            headers,
            query_key,
            body: params.body.as_ref().map(Value::to_string),
            timeout: Duration::from_secs_f64(params.timeout_seconds.max(0.001)),
            max_response_mb: params.max_response_mb,
        })
    }

    /// The request for `url`; credentials only go to the origin of the product's `url`.
    pub(super) fn request(&self, mut url: Url) -> Request {
        let same_origin = url.origin() == self.origin;
        if let Some((name, key)) = self.query_key.as_ref().filter(|_| same_origin)
            && !url.query_pairs().any(|(n, _)| n == name.as_str())
        {
            url.query_pairs_mut().append_pair(name, key);
        }
        let credentials = |name: &str| self.credential_headers.iter().any(|c| c == name);
        Request {
            method: self.method.into(),
            url,
            headers: self
                .headers
                .iter()
                .filter(|(name, _)| same_origin || !credentials(name))
                .cloned()
                .collect(),
            body: self.body.clone(),
            timeout: self.timeout,
            max_response_mb: self.max_response_mb,
        }
    }
}

pub(super) fn parse_url(text: &str) -> Result<Url, TaskError> {
    crate::http::http_url(text).map_err(TaskError::permanent)
}

/// What the requests of one extract task share: its progress line and the pages, bytes and rows so
/// far.
pub(crate) struct Shared {
    progress: RefCell<crate::log::Progress>,
    pub(super) pages: Cell<usize>,
    pub(super) bytes: Cell<usize>,
    pub(super) rows: Cell<usize>,
}

impl Shared {
    pub(crate) fn new(progress: crate::log::Progress) -> Self {
        Shared {
            progress: RefCell::new(progress),
            pages: Cell::new(0),
            bytes: Cell::new(0),
            rows: Cell::new(0),
        }
    }

    /// The bytes the task received.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.get()
    }

    /// Shows the counts so far.
    pub(super) fn update(&self) {
        self.progress
            .borrow_mut()
            .update(self.pages.get(), self.rows.get(), self.bytes.get());
    }
}

/// One request with the task's retries; returns the response and the attempts it took.
pub(super) async fn send(cx: &Context<'_>, request: &Request, page: usize) -> (Result<Response, TaskError>, u32) {
    let shared = cx.shared;
    let log_retry = |retrying: retry::Retrying<'_>| {
        cx.log.warn(
            Some(cx.task),
            Some(retrying.attempt),
            format!(
                "request {} of page {page} failed ({}); attempt {} of {} in {:.1} s",
                retrying.attempt,
                retrying.error,
                retrying.attempt + 1,
                retrying.of,
                retrying.wait.as_secs_f64()
            ),
        );
    };
    let received = Cell::new(0usize);
    retry::run(cx.policy, cx.cancel, retry::OnStop::Drop, log_retry, |_| {
        // A retried request counts its bytes again from nothing.
        shared.bytes.set(shared.bytes.get() - received.replace(0));
        let received = &received;
        async move {
            let mut on_bytes = |n: usize| {
                received.set(received.get() + n);
                shared.bytes.set(shared.bytes.get() + n);
                shared.update();
            };
            let Some(throttle) = cx.throttle else {
                return cx
                    .transport
                    .send(cx.task, request, cx.secrets, &mut on_bytes)
                    .await
                    .map_err(TaskError::from);
            };
            // A 429 slows the task down and the request waits its turn again, up to a point: the API
            // asked for a slower pace, not for the extract to give up.
            let mut throttled = 0;
            loop {
                let permit = throttle.admit().await;
                let result = cx.transport.send(cx.task, request, cx.secrets, &mut on_bytes).await;
                drop(permit);
                match result {
                    Ok(response) => {
                        throttle.succeeded();
                        return Ok(response);
                    }
                    Err(HttpError::Status {
                        status: 429,
                        retry_after,
                        ..
                    }) if throttled < MAX_THROTTLED && retry_after.is_none_or(|wait| wait <= retry::MAX_DELAY) => {
                        throttled += 1;
                        throttle.slow_down(retry_after);
                        cx.log.warn(
                            Some(cx.task),
                            None,
                            format!("page {page}: the API asked for fewer requests (HTTP 429); slowing down"),
                        );
                    }
                    Err(error) => return Err(TaskError::from(error)),
                }
            }
        }
    })
    .await
}
