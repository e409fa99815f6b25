//! The JSON Schema of the product format, embedded at build time, and the translation of its
//! validation errors into diagnostics that point at YAML nodes.

use std::sync::LazyLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic};
use crate::spec::yaml::Document;

/// The product JSON Schema, exactly as in `schemas/data_product.schema.json`.
pub const SCHEMA: &str = include_str!("../../schemas/data_product.schema.json");

static SCHEMA_JSON: LazyLock<Value> =
    LazyLock::new(|| serde_json::from_str(SCHEMA).expect("the embedded schema is valid JSON"));

static VALIDATOR: LazyLock<Validator> =
    LazyLock::new(|| jsonschema::draft202012::new(&SCHEMA_JSON).expect("the embedded schema is a valid JSON Schema"));

/// Starts compiling the schema on a thread of its own. The compile takes about as long as the rest
/// of a small run's start (the command line, the runtime, reading the products), so a command that
/// checks products finds the schema ready, or nearly, when the first product is read.
pub fn compile_early() {
    // Without a thread to spare, the first check compiles it.
    let _ = std::thread::Builder::new().spawn(|| LazyLock::force(&VALIDATOR));
}

/// The allowed keys of the object schema at `pointer` in the schema document.
pub fn schema_keys(pointer: &str) -> Vec<&'static str> {
    SCHEMA_JSON
        .pointer(pointer)
        .and_then(|node| node.get("properties"))
        .and_then(Value::as_object)
        .map(|properties| properties.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The keys the object schema at `pointer` allows in `object`: its properties, less those that an
/// `allOf` branch whose `if` the object matches forbids with `false` (as `type: basic` auth forbids
/// `token`).
fn allowed_keys(pointer: &str, object: Option<&Value>) -> Vec<&'static str> {
    let branches = SCHEMA_JSON
        .pointer(pointer)
        .and_then(|node| node.get("allOf"))
        .and_then(Value::as_array);
    let matches = |condition: &Value| {
        object.is_some_and(|object| jsonschema::draft202012::new(condition).is_ok_and(|v| v.is_valid(object)))
    };
    let forbidden: Vec<&str> = branches
        .into_iter()
        .flatten()
        .filter(|branch| branch.get("if").is_some_and(matches))
        .filter_map(|branch| branch.pointer("/then/properties").and_then(Value::as_object))
        .flat_map(|properties| properties.iter())
        .filter(|(_, schema)| **schema == Value::Bool(false))
        .map(|(key, _)| key.as_str())
        .collect();
    let mut keys = schema_keys(pointer);
    keys.retain(|key| !forbidden.contains(key));
    keys
}

/// Checks a document against the schema; every violation becomes a diagnostic.
pub fn check(document: &Document) -> Vec<Diagnostic> {
    if document.value.is_null() {
        return vec![
            Diagnostic::new(Code::MissingKey, 0..0, "the file is empty")
                .help("a product needs at least `name` and `tasks`; `dpf schema` prints the format"),
        ];
    }
    let mut diagnostics = Vec::new();
    for error in VALIDATOR.iter_errors(&document.value) {
        translate(&error, document, &mut diagnostics);
    }
    diagnostics
}

fn translate(error: &ValidationError<'_>, document: &Document, out: &mut Vec<Diagnostic>) {
    let pointer = error.instance_path().as_str();
    let spans = &document.spans;
    let path = place(pointer, &document.value);
    let instance = error.instance();
    let value_span = spans.value(pointer);
    let diagnostic = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let schema_path = error.schema_path().as_str();
            let parent = schema_path.strip_suffix("/additionalProperties").unwrap_or("");
            let known = allowed_keys(parent, Some(instance));
            let place = if pointer.is_empty() {
                "the product".to_owned()
            } else {
                path.clone()
            };
            for key in unexpected {
                let key_pointer = crate::spec::yaml::pointer_push(pointer, key);
                let mut diagnostic = Diagnostic::new(
                    Code::UnknownKey,
                    spans.key(&key_pointer),
                    format!("unknown key `{key}` in {place}"),
                )
                .label("not part of the product format")
                .did_you_mean(key, known.iter().copied());
                if diagnostic.help.is_none() && !known.is_empty() {
                    diagnostic = diagnostic.note(format!("allowed keys: {}", known.join(", ")));
                }
                out.push(diagnostic);
            }
            return;
        }
        ValidationErrorKind::FalseSchema => {
            // `"properties": {"token": false}` in an `if`/`then` branch: a key of the object's schema
            // that the object's `type` does not take.
            let (parent, key) = pointer.rsplit_once('/').unwrap_or(("", pointer));
            let key = key.replace("~1", "/").replace("~0", "~");
            let object = document.value.pointer(parent);
            let schema = error
                .schema_path()
                .as_str()
                .rsplit_once("/allOf/")
                .map_or("", |(s, _)| s);
            let known = allowed_keys(schema, object);
            let chosen = object.and_then(|o| o.get("type")).and_then(Value::as_str);
            let place = place(parent, &document.value);
            let (message, label, keys) = match chosen {
                Some(chosen) => (
                    format!("key `{key}` does not apply to `type: {chosen}` in {place}"),
                    format!("not used by `type: {chosen}`"),
                    format!("the keys of `type: {chosen}`"),
                ),
                None => (
                    format!("key `{key}` is not allowed in {place}"),
                    "not allowed here".to_owned(),
                    "allowed keys".to_owned(),
                ),
            };
            let mut diagnostic = Diagnostic::new(Code::UnknownKey, spans.key(pointer), message).label(label);
            if !known.is_empty() {
                diagnostic = diagnostic.note(format!("{keys}: {}", known.join(", ")));
            }
            diagnostic
        }
        ValidationErrorKind::Required { property } => {
            let key = property.as_str().unwrap_or_default();
            // A misspelt key is reported once, as an unknown key with a did-you-mean.
            let misspelt = instance.as_object().is_some_and(|object| {
                object
                    .keys()
                    .any(|given| crate::diagnostic::closest(given, [key]).is_some())
            });
            if misspelt {
                return;
            }
            let (message, span) = if pointer.is_empty() {
                (
                    format!("the product is missing the required key `{key}`"),
                    head(document, pointer),
                )
            } else {
                (
                    format!("{path} is missing the required key `{key}`"),
                    head(document, pointer),
                )
            };
            let mut diagnostic = Diagnostic::new(Code::MissingKey, span, message).label(format!("add `{key}`"));
            if let Some(function) = function_of(document, pointer) {
                diagnostic = diagnostic.note(format!("`{function}` needs `{key}`"));
            }
            diagnostic
        }
        ValidationErrorKind::Type { .. } => {
            let expected = SCHEMA_JSON
                .pointer(error.schema_path().as_str())
                .map(describe_types)
                .unwrap_or_else(|| "another type".to_owned());
            Diagnostic::new(
                Code::InvalidType,
                value_span,
                format!("{path} must be {expected}, found {}", describe_value(instance)),
            )
            .label(format!("expected {expected}"))
        }
        ValidationErrorKind::Enum { options } => enum_error(pointer, &path, instance, options, value_span),
        ValidationErrorKind::Constant { expected_value } => Diagnostic::new(
            Code::InvalidValue,
            value_span,
            format!("{path} must be {expected_value}, found {}", describe_value(instance)),
        ),
        ValidationErrorKind::Minimum { limit } => range(&path, instance, value_span, format!("at least {limit}")),
        ValidationErrorKind::Maximum { limit } => range(&path, instance, value_span, format!("at most {limit}")),
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            range(&path, instance, value_span, format!("greater than {limit}"))
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            range(&path, instance, value_span, format!("less than {limit}"))
        }
        ValidationErrorKind::Pattern { pattern } => {
            let diagnostic = Diagnostic::new(
                Code::InvalidValue,
                value_span,
                format!("{path}: {} is not allowed here", describe_value(instance)),
            )
            .label(format!("must match `{pattern}`"));
            match pointer_shape(pointer).as_str() {
                "/name" => diagnostic
                    .help("product names use lower-case letters, digits and underscores, starting with a letter"),
                "/tasks/*/id" => diagnostic
                    .help("task ids are SQL table names: letters, digits and underscores, not starting with a digit"),
                _ => diagnostic,
            }
        }
        ValidationErrorKind::MinItems { limit } => Diagnostic::new(
            Code::InvalidValue,
            value_span,
            format!("{path} must have at least {limit} item{}", plural(*limit)),
        ),
        ValidationErrorKind::MaxItems { limit } => Diagnostic::new(
            Code::InvalidValue,
            value_span,
            format!("{path} must have at most {limit} item{}", plural(*limit)),
        ),
        ValidationErrorKind::MinLength { limit } => Diagnostic::new(
            Code::InvalidValue,
            value_span,
            format!("{path} must be at least {limit} character{} long", plural(*limit)),
        ),
        ValidationErrorKind::MaxLength { limit } => Diagnostic::new(
            Code::InvalidValue,
            value_span,
            format!("{path} must be at most {limit} character{} long", plural(*limit)),
        ),
        ValidationErrorKind::UniqueItems => Diagnostic::new(
            Code::InvalidValue,
            value_span,
            format!("{path} lists the same value more than once"),
        ),
        ValidationErrorKind::AnyOf { .. } => match one_of_required(error.schema_path().as_str()) {
            Some(keys) => {
                let parent = error.schema_path().as_str().trim_end_matches("/anyOf");
                let known = allowed_keys(parent, Some(instance));
                let unknown = instance
                    .as_object()
                    .is_some_and(|object| object.keys().any(|key| !known.contains(&key.as_str())));
                if unknown {
                    return; // Reported as an unknown key, with a did-you-mean.
                }
                let list = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" or ");
                Diagnostic::new(
                    Code::MissingKey,
                    head(document, pointer),
                    format!("{path} needs {list}"),
                )
                .label(format!("add {list}, or both"))
            }
            None => Diagnostic::new(Code::InvalidValue, value_span, format!("{path}: {error}")),
        },
        _ => Diagnostic::new(Code::InvalidValue, value_span, format!("{path}: {error}")),
    };
    out.push(diagnostic);
}

/// The keys of an `anyOf` at `schema_path` whose every branch only requires one key.
fn one_of_required(schema_path: &str) -> Option<Vec<&'static str>> {
    let branches = SCHEMA_JSON.pointer(schema_path)?.as_array()?;
    branches
        .iter()
        .map(|branch| match branch.get("required")?.as_array()?.as_slice() {
            [key] if branch.as_object()?.len() == 1 => key.as_str(),
            _ => None,
        })
        .collect()
}

fn enum_error(pointer: &str, path: &str, instance: &Value, options: &Value, span: crate::spec::Span) -> Diagnostic {
    let allowed: Vec<&str> = options
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let given = instance.as_str().unwrap_or_default();
    if pointer_shape(pointer) == "/tasks/*/function" {
        return Diagnostic::new(Code::UnknownFunction, span, format!("unknown function `{given}`"))
            .label("not a built-in function")
            .did_you_mean(given, allowed.iter().copied())
            .note(format!("the functions are: {}", allowed.join(", ")));
    }
    let list = allowed
        .iter()
        .map(|option| format!("`{option}`"))
        .collect::<Vec<_>>()
        .join(", ");
    Diagnostic::new(
        Code::InvalidValue,
        span,
        format!("{path} must be one of {list}; found {}", describe_value(instance)),
    )
    .label("not an allowed value")
    .did_you_mean(given, allowed.iter().copied())
}

fn range(path: &str, instance: &Value, span: crate::spec::Span, bound: String) -> Diagnostic {
    Diagnostic::new(
        Code::OutOfRange,
        span,
        format!("{path} must be {bound}, found {instance}"),
    )
    .label(format!("must be {bound}"))
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A short span standing for the mapping at `pointer`: the key introducing it, else its first key
/// (an underline of the whole mapping would cover many lines).
fn head(document: &Document, pointer: &str) -> crate::spec::Span {
    if let Some(key) = document.spans.exact(pointer).and_then(|node| node.key.clone()) {
        return key;
    }
    let first_key = document
        .value
        .pointer(pointer)
        .and_then(Value::as_object)
        .and_then(|map| map.keys().next());
    match first_key {
        Some(key) => document.spans.key(&crate::spec::yaml::pointer_push(pointer, key)),
        None => document.spans.value(pointer),
    }
}

/// The function of the task that `pointer` lies in, when the pointer is inside a task's params.
fn function_of<'a>(document: &'a Document, pointer: &str) -> Option<&'a str> {
    let rest = pointer.strip_prefix("/tasks/")?;
    let (index, rest) = rest.split_once('/')?;
    if !rest.starts_with("params") {
        return None;
    }
    document.value.pointer(&format!("/tasks/{index}/function"))?.as_str()
}

/// Where `pointer` is, for messages: "`params.write` of task `to_bigquery`", "task `clean`",
/// "`retries`".
pub fn place(pointer: &str, value: &Value) -> String {
    let task = pointer.strip_prefix("/tasks/").and_then(|rest| {
        let (index, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let id = value.pointer(&format!("/tasks/{index}/id"))?.as_str()?;
        Some((id, rest))
    });
    match task {
        Some((id, "")) => format!("task `{id}`"),
        Some((id, rest)) => format!("`{}` of task `{id}`", display_path(&format!("/{rest}"))),
        None => format!("`{}`", display_path(pointer)),
    }
}

/// `/tasks/2/params/write` → `tasks[2].params.write`.
pub fn display_path(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token.parse::<usize>().is_ok() {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

/// `/tasks/2/id` → `/tasks/*/id`, to recognise a place whatever the index.
fn pointer_shape(pointer: &str) -> String {
    pointer
        .split('/')
        .map(|token| if token.parse::<usize>().is_ok() { "*" } else { token })
        .collect::<Vec<_>>()
        .join("/")
}

fn describe_types(type_keyword: &Value) -> String {
    let name = |t: &str| match t {
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "array" => "a list",
        "object" => "a mapping",
        "null" => "null",
        _ => "a value",
    };
    match type_keyword {
        Value::String(t) => name(t).to_owned(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .map(name)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "another type".to_owned(),
    }
}

/// A short description of a YAML value for messages: `the string "abc"`, `a list`.
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("the integer {n}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("\"{shown}\"")
        }
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_compiles_and_accepts_its_example() {
        assert!(VALIDATOR.is_valid(&SCHEMA_JSON["examples"][0]));
        assert!(schema_keys("/$defs/task").contains(&"depends_on"));
    }

    #[test]
    fn paths_read_like_yaml() {
        assert_eq!(display_path("/tasks/2/params/write"), "tasks[2].params.write");
        assert_eq!(
            display_path("/tasks/0/params/headers/a~1b"),
            "tasks[0].params.headers.a/b"
        );
        assert_eq!(pointer_shape("/tasks/12/id"), "/tasks/*/id");
    }
}
