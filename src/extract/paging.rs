//! Where each page of an `extract_http` comes from: counted pages (page numbers, offsets), and the
//! cursor, next-page URL or `Link` header a response names.

use serde_json::Value;
use url::Url;

use super::decode::Page;
use super::http::Pagination;
use crate::error::TaskError;
use crate::http::Response;

pub(super) fn with_query(base: &Url, pairs: &[(String, String)]) -> Url {
    let mut url = base.clone();
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    url
}

/// Where the next page comes from.
pub(super) enum Next {
    Done,
    Url(Url),
}

/// The parameter that page-number and offset pagination count in, and its value on the first request.
pub(super) fn counted(pagination: &Pagination) -> Option<(&str, i64)> {
    match pagination {
        Pagination::PageNumber { param, start, .. } => Some((param.as_deref().unwrap_or("page"), start.unwrap_or(1))),
        Pagination::Offset { param, start, .. } => Some((param.as_deref().unwrap_or("offset"), start.unwrap_or(0))),
        Pagination::Cursor { .. } | Pagination::NextUrl { .. } | Pagination::LinkHeader { .. } => None,
    }
}

/// The URL of page-number or offset pagination at `counter`.
pub(super) fn at_counter(
    pagination: Option<&Pagination>,
    counter: i64,
    query: &mut Vec<(String, String)>,
    base: &Url,
) -> Url {
    if let Some((param, _)) = pagination.and_then(counted) {
        set_param(query, param, counter.to_string());
    }
    with_query(base, query)
}

pub(super) fn set_param(query: &mut Vec<(String, String)>, name: &str, value: String) {
    match query.iter_mut().find(|(n, _)| n == name) {
        Some(pair) => pair.1 = value,
        None => query.push((name.to_owned(), value)),
    }
}

/// The page after a page-number or offset page that held `page.records` records at `counter`.
pub(super) fn counted_next(
    pagination: &Pagination,
    page: &Page,
    counter: i64,
    query: &mut Vec<(String, String)>,
    base: &Url,
) -> Next {
    if pagination.page_size().is_some_and(|size| (page.records as u64) < size) {
        return Next::Done;
    }
    let next = counter_after(pagination, counter, page.records);
    Next::Url(at_counter(Some(pagination), next, query, base))
}

/// The counter of the page after one at `counter` that held `records` records: page numbers count
/// pages, offsets count records.
pub(super) fn counter_after(pagination: &Pagination, counter: i64, records: usize) -> i64 {
    match pagination {
        Pagination::PageNumber { .. } => counter + 1,
        Pagination::Offset { .. } => counter + records as i64,
        Pagination::Cursor { .. } | Pagination::NextUrl { .. } | Pagination::LinkHeader { .. } => 0,
    }
}

/// The page after `response` under cursor, next-URL and Link-header pagination; `found` is the value
/// at the pagination's dot path in the body (`next_url_path`, `cursor_path`).
pub(super) fn following(
    pagination: &Pagination,
    found: Option<Value>,
    response: &Response,
    url: &Url,
    query: &mut Vec<(String, String)>,
    base: &Url,
) -> Result<Next, TaskError> {
    let found_text = match found {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(match pagination {
        Pagination::Cursor { param, .. } => match found_text {
            Some(cursor) => {
                set_param(query, param.as_deref().unwrap_or("cursor"), cursor);
                Next::Url(with_query(base, query))
            }
            None => Next::Done,
        },
        Pagination::NextUrl { .. } => {
            match found_text {
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
        Pagination::PageNumber { .. } | Pagination::Offset { .. } => Next::Done,
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
