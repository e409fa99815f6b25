//! `extract_http`: calls an HTTP API and yields its records as rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Parameters of `extract_http`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractHttp {
    /// The endpoint; may hold `${...}` references.
    pub url: String,
    #[serde(default)]
    pub method: Method,
    /// Query-string parameters (list values repeat the parameter).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub query: Map<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON request body (POST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub format: Format,
    /// Dot path to the records in the response; the root when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// Top-level response fields copied onto every row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Timeout of each request.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// The most one response may hold once decoded, in megabytes: a larger one fails the task.
    #[serde(default = "default_max_response_mb")]
    pub max_response_mb: u64,
}

pub(crate) fn default_timeout() -> f64 {
    30.0
}

pub(crate) fn default_max_response_mb() -> u64 {
    crate::http::DEFAULT_MAX_MB
}

/// The HTTP method of the requests.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

impl Method {
    /// The method's name, as the plan shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

impl From<Method> for reqwest::Method {
    fn from(method: Method) -> reqwest::Method {
        match method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        }
    }
}

/// Response formats.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Ndjson,
    Csv,
}

/// Request authentication; credential values should be `${secret:NAME}` references.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer { token: String },
    /// HTTP basic authentication.
    Basic { username: String, password: String },
    /// An API key sent as a header or query parameter.
    ApiKey {
        /// Header or query parameter carrying the key.
        name: String,
        value: String,
        #[serde(rename = "in", default)]
        location: KeyLocation,
    },
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLocation {
    #[default]
    Header,
    Query,
}

/// How to fetch the following pages. Every style can send a page size (`page_size` in
/// `page_size_param`) and stops after `max_pages` pages.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// Increments a page number in `param` (default `page`), from `start` (default 1); a page shorter
    /// than `page_size` is the last.
    PageNumber {
        #[serde(skip_serializing_if = "Option::is_none")]
        param: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size_param: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size: Option<u64>,
        #[serde(default = "default_max_pages")]
        max_pages: u64,
    },
    /// Advances an offset in `param` (default `offset`), from `start` (default 0), by the records
    /// received; a page shorter than `page_size` is the last.
    Offset {
        #[serde(skip_serializing_if = "Option::is_none")]
        param: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size_param: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size: Option<u64>,
        #[serde(default = "default_max_pages")]
        max_pages: u64,
    },
    /// Sends the cursor found at `cursor_path` of the previous response in `param` (default `cursor`).
    Cursor {
        #[serde(skip_serializing_if = "Option::is_none")]
        param: Option<String>,
        cursor_path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size_param: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size: Option<u64>,
        #[serde(default = "default_max_pages")]
        max_pages: u64,
    },
    /// Follows the URL found at `next_url_path` of the previous response.
    NextUrl {
        next_url_path: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size_param: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size: Option<u64>,
        #[serde(default = "default_max_pages")]
        max_pages: u64,
    },
    /// Follows the RFC 8288 `Link` header's `rel="next"` target.
    LinkHeader {
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size_param: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        page_size: Option<u64>,
        #[serde(default = "default_max_pages")]
        max_pages: u64,
    },
}

fn default_max_pages() -> u64 {
    1000
}

impl Pagination {
    /// The style's name, as written after `type:`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Pagination::PageNumber { .. } => "page_number",
            Pagination::Offset { .. } => "offset",
            Pagination::Cursor { .. } => "cursor",
            Pagination::NextUrl { .. } => "next_url",
            Pagination::LinkHeader { .. } => "link_header",
        }
    }

    /// Guard against endless pagination.
    pub fn max_pages(&self) -> u64 {
        match self {
            Pagination::PageNumber { max_pages, .. }
            | Pagination::Offset { max_pages, .. }
            | Pagination::Cursor { max_pages, .. }
            | Pagination::NextUrl { max_pages, .. }
            | Pagination::LinkHeader { max_pages, .. } => *max_pages,
        }
    }

    /// Records requested per page.
    pub fn page_size(&self) -> Option<u64> {
        match self {
            Pagination::PageNumber { page_size, .. }
            | Pagination::Offset { page_size, .. }
            | Pagination::Cursor { page_size, .. }
            | Pagination::NextUrl { page_size, .. }
            | Pagination::LinkHeader { page_size, .. } => *page_size,
        }
    }

    /// The query parameter that carries `page_size`.
    pub fn page_size_param(&self) -> Option<&str> {
        match self {
            Pagination::PageNumber { page_size_param, .. }
            | Pagination::Offset { page_size_param, .. }
            | Pagination::Cursor { page_size_param, .. }
            | Pagination::NextUrl { page_size_param, .. }
            | Pagination::LinkHeader { page_size_param, .. } => page_size_param.as_deref(),
        }
    }

    /// The dot path in each response whose value leads to the next page (a cursor, a URL).
    pub fn lookup(&self) -> Option<&str> {
        match self {
            Pagination::Cursor { cursor_path, .. } => Some(cursor_path),
            Pagination::NextUrl { next_url_path, .. } => Some(next_url_path),
            Pagination::PageNumber { .. } | Pagination::Offset { .. } | Pagination::LinkHeader { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Auth, KeyLocation, Pagination};

    #[test]
    fn each_type_takes_only_its_own_keys() {
        let auth: Auth = serde_json::from_value(json!({"type": "api_key", "name": "X-Key", "value": "k"})).unwrap();
        assert!(matches!(
            auth,
            Auth::ApiKey {
                location: KeyLocation::Header,
                ..
            }
        ));
        let basic = json!({"type": "basic", "username": "u", "password": "p", "token": "t"});
        assert!(serde_json::from_value::<Auth>(basic).is_err());
        assert!(serde_json::from_value::<Auth>(json!({"type": "bearer", "token": "t", "in": "query"})).is_err());
        assert!(serde_json::from_value::<Auth>(json!({"type": "basic", "username": "u"})).is_err());

        let pagination: Pagination =
            serde_json::from_value(json!({"type": "next_url", "next_url_path": "links.next"})).unwrap();
        assert_eq!(
            (pagination.as_str(), pagination.max_pages(), pagination.lookup()),
            ("next_url", 1000, Some("links.next"))
        );
        let link = json!({"type": "link_header", "cursor_path": "x"});
        assert!(serde_json::from_value::<Pagination>(link).is_err());
        assert!(serde_json::from_value::<Pagination>(json!({"type": "cursor"})).is_err());
        let offset: Pagination =
            serde_json::from_value(json!({"type": "offset", "page_size_param": "limit", "page_size": 50})).unwrap();
        assert_eq!(
            (offset.page_size_param(), offset.page_size()),
            (Some("limit"), Some(50))
        );
    }
}
