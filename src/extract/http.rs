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

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
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
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(rename = "type")]
    pub kind: AuthKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Header or query parameter carrying an API key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "in", default)]
    pub location: KeyLocation,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Bearer,
    Basic,
    ApiKey,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyLocation {
    #[default]
    Header,
    Query,
}

/// How to fetch the following pages.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    #[serde(rename = "type")]
    pub kind: PaginationKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size_param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_url_path: Option<String>,
    /// Guard against endless pagination.
    #[serde(default = "default_max_pages")]
    pub max_pages: u64,
}

fn default_max_pages() -> u64 {
    1000
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaginationKind {
    PageNumber,
    Offset,
    Cursor,
    NextUrl,
    LinkHeader,
}
