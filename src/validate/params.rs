//! Every param of every task function, and how `dpf validate` checks it: by the schema alone, by
//! the same check the run makes (so what a run would reject, validate rejects first, at its line),
//! or only at run time, with the reason. A test holds this table to the schema, so a param added
//! later cannot go unclassified.

use serde_json::Value;

use super::checks::Checker;
use crate::diagnostic::{Code, Diagnostic};

/// How one param is checked before any run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Checked {
    /// Its type, enum, range or shape are the schema's.
    Schema,
    /// An HTTP(S) URL, parsed as the run parses it.
    HttpUrl,
    /// E-mail addresses (`a@b.c` or `Name <a@b.c>`), parsed as the outbox and SendGrid need them.
    Addresses,
    /// Header names and values a request can carry (`checks::headers`).
    Headers,
    /// SQL that must parse (`checks::transform_query`, `checks::alert_condition`).
    Sql,
    /// BigQuery dataset and table naming rules, and Google Cloud's for projects (`checks::gcp_name`).
    BigqueryName,
    /// Firestore's collection path rules (`checks::firestore_collection`).
    FirestoreCollection,
    /// The params of a `store_to_bigquery`, each checked as that table says.
    StoreParams,
    /// Knowable only when the run has it, for the reason given.
    RunTime(&'static str),
}

use Checked::*;

const COLUMNS: Checked = RunTime("names columns of the input rows, which exist once the rows do");
const RESPONSE: Checked = RunTime("names fields of the API's response");
const FREE: Checked = RunTime("free text, sent or shown as it is");

/// (function, param, how it is checked), for every param the schema allows.
pub(super) const PARAMS: &[(&str, &str, Checked)] = &[
    ("extract_http", "url", HttpUrl),
    ("extract_http", "method", Schema),
    ("extract_http", "query", FREE),
    ("extract_http", "headers", Headers),
    ("extract_http", "body", FREE),
    ("extract_http", "auth", Schema),
    ("extract_http", "format", Schema),
    ("extract_http", "records", RESPONSE),
    ("extract_http", "include", RESPONSE),
    ("extract_http", "pagination", Schema),
    ("extract_http", "timeout_seconds", Schema),
    ("extract_http", "max_response_mb", Schema),
    ("extract_weather", "api_url", HttpUrl),
    ("extract_weather", "latitude", Schema),
    ("extract_weather", "longitude", Schema),
    (
        "extract_weather",
        "metrics",
        RunTime("Open-Meteo's variable names, which its API checks"),
    ),
    ("extract_weather", "forecast_days", Schema),
    ("extract_weather", "timeout_seconds", Schema),
    ("extract_weather", "max_response_mb", Schema),
    ("transform_sql", "query", Sql),
    ("transform_sql", "engine", Schema),
    ("transform_sql", "destination", StoreParams),
    ("transform_sql", "max_rows", Schema),
    ("store_to_bigquery", "project", BigqueryName),
    ("store_to_bigquery", "dataset", BigqueryName),
    ("store_to_bigquery", "table", BigqueryName),
    ("store_to_bigquery", "write", Schema),
    ("store_to_bigquery", "key", COLUMNS),
    ("store_to_bigquery", "method", Schema),
    ("store_to_bigquery", "partition_by", COLUMNS),
    ("store_to_bigquery", "cluster_by", COLUMNS),
    ("store_to_firestore", "project", BigqueryName),
    ("store_to_firestore", "collection", FirestoreCollection),
    ("store_to_firestore", "key", COLUMNS),
    ("store_to_firestore", "merge", Schema),
    ("send_alerts", "recipient", Addresses),
    ("send_alerts", "cc", Addresses),
    ("send_alerts", "from", Addresses),
    ("send_alerts", "subject", FREE),
    ("send_alerts", "when", Sql),
    ("send_alerts", "thresholds", COLUMNS),
    ("send_alerts", "channels", Schema),
    ("send_alerts", "slack_webhook", HttpUrl),
    (
        "send_alerts",
        "sendgrid_api_key",
        RunTime("a secret, read when the run starts"),
    ),
    ("send_alerts", "on_failure", Addresses),
    ("send_alerts", "max_rows", Schema),
];

/// The params of `function`, with how each is checked.
pub(super) fn of(function: &str) -> impl Iterator<Item = (&'static str, Checked)> + '_ {
    PARAMS
        .iter()
        .filter(move |(f, _, _)| *f == function)
        .map(|(_, param, check)| (*param, *check))
}

/// The texts of a string or list-of-strings param, with their JSON pointers; values with a
/// reference or a template are left to the run, which sees them resolved.
pub(super) fn literal_texts<'a>(value: &'a Value, pointer: &str) -> Vec<(String, &'a str)> {
    let texts: Vec<(String, &str)> = match value {
        Value::String(text) => vec![(pointer.to_owned(), text.as_str())],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Some((format!("{pointer}/{i}"), item.as_str()?)))
            .collect(),
        _ => Vec::new(),
    };
    texts
        .into_iter()
        .filter(|(_, text)| !text.contains("${") && !text.contains("{{"))
        .collect()
}

/// The checks the table drives.
impl Checker<'_> {
    /// A BigQuery dataset or table name, or a Google Cloud project (of either store), at `pointer`.
    fn gcp_name(&mut self, pointer: &str, key: &str) {
        let Some(name) = self.str_at(pointer) else {
            return;
        };
        let (what, problem): (String, fn(&str) -> Option<&'static str>) = match key {
            "project" => ("Google Cloud project".into(), crate::store::bigquery::project_problem),
            "dataset" => ("BigQuery dataset".into(), crate::store::bigquery::dataset_problem),
            _ => (format!("BigQuery {key}"), crate::store::bigquery::table_problem),
        };
        if self.reference_in_name(pointer, name, &what, Code::InvalidBigqueryName) {
            return;
        }
        if let Some(rule) = problem(name) {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidBigqueryName,
                    self.value_span(pointer),
                    format!("invalid {what} name `{name}`"),
                )
                .label(rule),
            );
        }
    }

    /// Each param of a task as the table in `params.rs` says: URLs and e-mail addresses parsed as
    /// the run parses them, headers, BigQuery and Firestore names. (SQL is read with the graph.)
    pub(super) fn params(&mut self, function: &str, params: &str) {
        type Parse = fn(&str) -> Option<(String, String)>;
        let url: Parse = |text| {
            let message = crate::http::http_url(text).err()?.to_string();
            Some((message, "write an absolute http:// or https:// URL".into()))
        };
        let address: Parse = |text| {
            let error = crate::alert::outbox::mailbox(text).err()?;
            Some((
                error.to_string(),
                "write name@example.com or Name <name@example.com>".into(),
            ))
        };
        for (param, check) in of(function) {
            let pointer = format!("{params}/{param}");
            let parse = match check {
                Checked::HttpUrl => url,
                Checked::Addresses => address,
                Checked::Headers => {
                    self.headers(&pointer);
                    continue;
                }
                Checked::BigqueryName => {
                    self.gcp_name(&pointer, param);
                    continue;
                }
                Checked::FirestoreCollection => {
                    self.firestore_collection(&pointer);
                    continue;
                }
                Checked::StoreParams => {
                    self.params("store_to_bigquery", &pointer);
                    continue;
                }
                Checked::Schema | Checked::Sql | Checked::RunTime(_) => continue,
            };
            let Some(value) = self.document.value.pointer(&pointer) else {
                continue;
            };
            for (at, text) in literal_texts(value, &pointer) {
                if let Some((message, label)) = parse(text) {
                    self.out
                        .push(Diagnostic::new(Code::InvalidValue, self.value_span(&at), message).label(label));
                }
            }
        }
    }

    /// Header names, and values written out in the file, that no request could carry.
    fn headers(&mut self, headers_at: &str) {
        let Some(headers) = self.document.value.pointer(headers_at).and_then(Value::as_object) else {
            return;
        };
        for (name, value) in headers {
            let pointer = crate::spec::yaml::pointer_push(headers_at, name);
            let Some(value) = value.as_str() else { continue };
            // A reference's value is known only at run time, where the same check runs.
            let literal = if value.contains("${") { "" } else { value };
            if let Some((part, problem)) = crate::http::header_problem(name, literal) {
                let span = match part {
                    "name" => self.document.spans.key(&pointer),
                    _ => self.value_span(&pointer),
                };
                self.out.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        span,
                        format!("header `{}` cannot be sent", name.escape_debug()),
                    )
                    .label(problem),
                );
            }
        }
    }

    fn firestore_collection(&mut self, pointer: &str) {
        let Some(path) = self.str_at(pointer) else {
            return;
        };
        if self.reference_in_name(pointer, path, "Firestore collection", Code::InvalidFirestoreName) {
            return;
        }
        if let Some(rule) = crate::store::firestore::collection_problem(path) {
            self.out.push(
                Diagnostic::new(
                    Code::InvalidFirestoreName,
                    self.value_span(pointer),
                    format!("invalid Firestore collection `{path}`"),
                )
                .label(rule),
            );
        }
    }

    /// Reports a `${…}` reference in the name at `pointer`: names are not resolved, so the store
    /// would write to a table or collection literally called `${env:…}`. Says whether it did.
    fn reference_in_name(&mut self, pointer: &str, name: &str, what: &str, code: Code) -> bool {
        let Some(start) = name.find("${") else {
            return false;
        };
        let end = name[start..].find('}').map_or(name.len(), |i| start + i + 1);
        let span = self.inner_span(pointer, name, start..end);
        self.out.push(
            Diagnostic::new(code, span, format!("a {what} name cannot hold a reference"))
                .label("names are not resolved")
                .help(
                    "write the name itself; the project comes from GCP_PROJECT or GOOGLE_CLOUD_PROJECT when \
                     `project` is left out",
                ),
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_param_in_the_schema_says_how_it_is_checked() {
        let schema: Value = serde_json::from_str(crate::validate::schema::SCHEMA).unwrap();
        let mut in_schema = BTreeSet::new();
        for (name, definition) in schema["$defs"].as_object().unwrap() {
            let Some(function) = name.strip_suffix("_params") else {
                continue;
            };
            let properties = definition["properties"].as_object().unwrap();
            in_schema.extend(properties.keys().map(|param| (function.to_owned(), param.clone())));
        }
        assert!(in_schema.len() > 40, "{in_schema:?}");
        let in_table: BTreeSet<(String, String)> = PARAMS
            .iter()
            .map(|(f, p, _)| ((*f).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(in_table.len(), PARAMS.len(), "a param is listed twice");
        let unlisted: Vec<_> = in_schema.difference(&in_table).collect();
        assert!(unlisted.is_empty(), "say in PARAMS how validate checks {unlisted:?}");
        let gone: Vec<_> = in_table.difference(&in_schema).collect();
        assert!(
            gone.is_empty(),
            "PARAMS lists params the schema does not have: {gone:?}"
        );
    }
}
