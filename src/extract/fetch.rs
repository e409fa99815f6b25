//! The running `extract_http`: builds each request, follows pagination, retries transient failures
//! per request (pages already fetched are kept), and decodes every page into one table.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::decode::{self, Page, Shape};
use super::http::{Auth, ExtractHttp, KeyLocation, Method, Pagination};
use crate::error::TaskError;
use crate::http::{Request, Response, Transport};
use crate::log::Log;
use crate::retry::{self, Policy};
use crate::secrets::Secrets;
use crate::table::{RowsBuilder, Table};

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
}

/// What an extract yields.
pub(crate) struct Extracted {
    pub table: Table,
    pub pages: usize,
    pub bytes: usize,
}

/// The parts of every request that do not change from page to page.
struct Requests {
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
    fn new(params: &ExtractHttp, cx: &Context<'_>) -> Result<Self, TaskError> {
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
    fn request(&self, mut url: Url) -> Request {
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

fn parse_url(text: &str) -> Result<Url, TaskError> {
    crate::http::http_url(text).map_err(TaskError::permanent)
}

/// `params.query` as pairs; an array repeats its key.
fn query_pairs(params: &ExtractHttp) -> Vec<(String, String)> {
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    params
        .query
        .iter()
        .flat_map(|(name, value)| match value {
            Value::Array(items) => items.iter().map(|v| (name.clone(), text(v))).collect(),
            Value::Null => Vec::new(),
            other => vec![(name.clone(), text(other))],
        })
        .collect()
}

fn with_query(base: &Url, pairs: &[(String, String)]) -> Url {
    let mut url = base.clone();
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    url
}

/// Where the next page comes from.
enum Next {
    Done,
    Url(Url),
}

/// Fetches every page. `attempts` ends as the attempts of the request that needed the most, also when
/// the extract fails.
pub(crate) async fn fetch(params: &ExtractHttp, cx: &Context<'_>, attempts: &mut u32) -> Result<Extracted, TaskError> {
    let requests = Requests::new(params, cx)?;
    let base = parse_url(&params.url)?;
    let mut query = query_pairs(params);
    let pagination = params.pagination.as_ref();
    let lookups: Vec<&str> = pagination.and_then(Pagination::lookup).into_iter().collect();
    let shape = Shape {
        format: params.format,
        records: params.records.as_deref(),
        include: &params.include,
        lookups: &lookups,
    };
    // Page-number and offset pagination count from `start`.
    let mut counter = 0;
    if let Some(p) = pagination {
        if let Some((param, start)) = counted(p) {
            counter = start;
            query.push((param.to_owned(), counter.to_string()));
        }
        if let (Some(name), Some(size)) = (p.page_size_param(), p.page_size()) {
            query.push((name.to_owned(), size.to_string()));
        }
    }
    let mut url = with_query(&base, &query);
    let mut builder = RowsBuilder::stopping_on(cx.cancel.clone());
    let mut progress = cx.log.progress(cx.task);
    let (mut pages, mut bytes) = (0usize, 0usize);
    *attempts = 1;
    let max_pages = pagination.map_or(1, |p| p.max_pages().max(1));
    // Each URL fetched, with its page number.
    let mut fetched: HashMap<String, usize> = HashMap::from([(url.to_string(), 1)]);
    loop {
        pages += 1;
        let request = requests.request(url.clone());
        let (response, tries) = send(cx, &request, pages, &mut bytes, &mut progress, builder.rows()).await;
        *attempts = (*attempts).max(tries);
        let mut response = response.map_err(|error| on_page(error, pages, pagination.is_some()))?;
        builder.start_page(pages);
        let page =
            decode::decode(std::mem::take(&mut response.body), &shape, &mut builder).map_err(|error| match error {
                decode::DecodeError::Stopped => TaskError::interrupted(),
                error => on_page(TaskError::permanent(error), pages, pagination.is_some()),
            })?;
        progress.update(pages, builder.rows(), bytes);
        let next = match pagination {
            None => Next::Done,
            Some(p) => next_page(p, &page, &response, &url, &mut counter, &mut query, &base)?,
        };
        match next {
            Next::Done => break,
            Next::Url(_) if pages as u64 >= max_pages => {
                return Err(TaskError::permanent(format!(
                    "pagination did not end after {max_pages} pages (pagination.max_pages); raise it if the API \
                     really has more, or check that the API ends its pages as `type: {}` expects",
                    pagination.map_or("", Pagination::as_str)
                )));
            }
            Next::Url(next) => {
                // An API that hands back a page it already gave would loop until max_pages.
                if let Some(page) = fetched.get(next.as_str()) {
                    return Err(TaskError::permanent(format!(
                        "page {pages} points back to page {page} ({}): the API's pagination loops",
                        cx.secrets.redact(next.as_str())
                    )));
                }
                fetched.insert(next.to_string(), pages + 1);
                url = next;
            }
        }
    }
    if let Some(dir) = cx.record_dir {
        let exchanges = cx.transport.take_recorded(cx.task);
        let path = crate::http::fixtures::save(dir, cx.task, exchanges).map_err(TaskError::caused)?;
        cx.log.info(
            Some(cx.task),
            None,
            format!("recorded {pages} responses in {}", path.display()),
        );
    }
    Ok(Extracted {
        table: Table::from_batch(builder.finish()),
        pages,
        bytes,
    })
}

fn on_page(error: TaskError, page: usize, paginated: bool) -> TaskError {
    if paginated {
        error.context(format!("page {page}"))
    } else {
        error
    }
}

/// One request with the task's retries; returns the response and the attempts it took.
async fn send(
    cx: &Context<'_>,
    request: &Request,
    page: usize,
    bytes: &mut usize,
    progress: &mut crate::log::Progress,
    rows: usize,
) -> (Result<Response, TaskError>, u32) {
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
    let received = std::cell::Cell::new(0usize);
    let before = *bytes;
    let progress = std::cell::RefCell::new(progress);
    let result = retry::run(cx.policy, cx.cancel, retry::OnStop::Drop, log_retry, |_| {
        received.set(0);
        let (received, progress) = (&received, &progress);
        async move {
            let mut on_bytes = |n: usize| {
                received.set(received.get() + n);
                progress.borrow_mut().update(page, rows, before + received.get());
            };
            cx.transport
                .send(cx.task, request, cx.secrets, &mut on_bytes)
                .await
                .map_err(TaskError::from)
        }
    })
    .await;
    *bytes += received.get();
    result
}

/// The parameter that page-number and offset pagination count in, and its value on the first request.
fn counted(pagination: &Pagination) -> Option<(&str, i64)> {
    match pagination {
        Pagination::PageNumber { param, start, .. } => Some((param.as_deref().unwrap_or("page"), start.unwrap_or(1))),
        Pagination::Offset { param, start, .. } => Some((param.as_deref().unwrap_or("offset"), start.unwrap_or(0))),
        Pagination::Cursor { .. } | Pagination::NextUrl { .. } | Pagination::LinkHeader { .. } => None,
    }
}

/// The next page of page-number or offset pagination: the counter moved on by `step`.
fn advance(
    pagination: &Pagination,
    step: i64,
    counter: &mut i64,
    query: &mut Vec<(String, String)>,
    base: &Url,
) -> Next {
    *counter += step;
    if let Some((param, _)) = counted(pagination) {
        set_param(query, param, counter.to_string());
    }
    Next::Url(with_query(base, query))
}

fn set_param(query: &mut Vec<(String, String)>, name: &str, value: String) {
    match query.iter_mut().find(|(n, _)| n == name) {
        Some(pair) => pair.1 = value,
        None => query.push((name.to_owned(), value)),
    }
}

fn next_page(
    pagination: &Pagination,
    page: &Page,
    response: &Response,
    url: &Url,
    counter: &mut i64,
    query: &mut Vec<(String, String)>,
    base: &Url,
) -> Result<Next, TaskError> {
    // An empty page ends every kind of pagination.
    if page.records == 0 {
        return Ok(Next::Done);
    }
    let short_page = pagination.page_size().is_some_and(|size| (page.records as u64) < size);
    let found_text = || match page.found.first() {
        Some(Some(Value::String(s))) if !s.is_empty() => Some(s.clone()),
        Some(Some(Value::Number(n))) => Some(n.to_string()),
        _ => None,
    };
    Ok(match pagination {
        Pagination::PageNumber { .. } | Pagination::Offset { .. } if short_page => Next::Done,
        Pagination::PageNumber { .. } => advance(pagination, 1, counter, query, base),
        Pagination::Offset { .. } => advance(pagination, page.records as i64, counter, query, base),
        Pagination::Cursor { param, .. } => match found_text() {
            Some(cursor) => {
                set_param(query, param.as_deref().unwrap_or("cursor"), cursor);
                Next::Url(with_query(base, query))
            }
            _ => Next::Done,
        },
        Pagination::NextUrl { .. } => {
            match found_text() {
                Some(next) => Next::Url(url.join(&next).map_err(|error| {
                    TaskError::permanent(format!("the next-page URL `{next}` is not valid: {error}"))
                })?),
                None => Next::Done,
            }
        }
        Pagination::LinkHeader { .. } => match response.header("link").and_then(next_link) {
            Some(next) => Next::Url(url.join(&next).map_err(|error| {
                TaskError::permanent(format!("the Link header's next URL `{next}` is not valid: {error}"))
            })?),
            None => Next::Done,
        },
    })
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
pub(crate) fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = open + rest[open..].find('>')?;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| close + i);
        let params = rest[close + 1..params_end].trim().trim_end_matches(',');
        let is_next = params.split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &rest[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn link_headers() {
        let header = r#"<https://api.example.com/items?page=1>; rel="prev", <https://api.example.com/items?page=3&a=1,2>; rel="next last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.example.com/items?page=3&a=1,2")
        );
        assert_eq!(next_link(r#"<https://x/1>; rel="prev""#), None);
        assert_eq!(next_link("</items?page=2>; rel=next").as_deref(), Some("/items?page=2"));
        let github = r#"<https://x/i?page=2>; rel="next", <https://x/i?page=4>; rel="last""#;
        assert_eq!(next_link(github).as_deref(), Some("https://x/i?page=2"));
    }
}
