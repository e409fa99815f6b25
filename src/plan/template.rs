//! Airflow-style templates in string params: `{{ ds }}`, `{{ ds_nodash }}`, `{{ logical_date }}`,
//! `{{ data_interval_start }}`, `{{ data_interval_end }}`, `{{ run_id }}`, with filters:
//! `{{ data_interval_start | strftime('%Y-%m-%dT%H') }}`, `{{ ds | add_days(-1) }}`, `| add_hours(n)`,
//! `| unix` (seconds since the epoch). Dates are rendered in the product's time zone. An incremental
//! extract also has `{{ cursor }}`: where its run starts (see `incremental:`), without filters; a
//! fan-out extract has `{{ item }}` and `{{ item.<field> }}`: the item its request is for.

use chrono::{DateTime, Days, Duration, SecondsFormat};
use chrono_tz::Tz;
use serde_json::Value;

use super::logical::Logical;

/// The variables a template may use.
pub const VARIABLES: [&str; 9] = [
    "cursor",
    "item",
    "ds",
    "ds_nodash",
    "ts",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
];

const FILTERS: [&str; 5] = ["strftime", "add_days", "add_hours", "unix", "date"];

/// A template that cannot be rendered: what and where (byte range in the string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub range: std::ops::Range<usize>,
    pub message: String,
}

/// Why a template's text is not a template dpf can render.
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error("unknown template variable `{name}`; {hint}")]
    UnknownVariable { name: String, hint: String },
    #[error("unknown template filter `{name}`; {hint}")]
    UnknownFilter { name: String, hint: String },
    #[error("`{0}` takes no filters")]
    NoFilters(String),
    #[error("only one formatting filter (strftime, date or unix) per template")]
    TwoFormats,
    #[error("shift the time (add_days, add_hours) before formatting it")]
    ShiftAfterFormat,
    #[error("filter `{0}` is missing its `)`")]
    Unclosed(String),
    #[error("`{0}` takes a quoted format, e.g. {0}('%Y-%m-%d')")]
    NotQuoted(String),
    #[error("`{0}` takes a whole number, e.g. {0}(-1)")]
    NotNumber(String),
    #[error("`{0}` is not a valid strftime format")]
    BadFormat(String),
    #[error("only `item` has fields (`item.<field>`); `{0}` is a time")]
    NotItem(String),
}

/// "did you mean" the closest of `known` to `name`, else the list of them.
fn hint(name: &str, known: &[&str], what: &str) -> String {
    match crate::diagnostic::closest(name, known.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("the {what} are {}", known.join(", ")),
    }
}

enum Filter {
    Strftime(String),
    AddDays(i64),
    AddHours(i64),
    Unix,
    Date,
}

struct Expression {
    variable: String,
    /// The field of `item.<field>`.
    field: Option<String>,
    filters: Vec<Filter>,
}

/// Checks every template in `text` without rendering it.
pub fn check(text: &str) -> Result<(), TemplateError> {
    each(text, |_, _| Ok(String::new())).map(drop)
}

/// Where `text` uses `variable` (the byte range of its first template), if it does.
pub fn uses(text: &str, variable: &str) -> Option<std::ops::Range<usize>> {
    let mut found = None;
    let _ = each(text, |expression, range| {
        if expression.variable == variable && found.is_none() {
            found = Some(range);
        }
        Ok(String::new())
    });
    found
}

/// `text` with every template rendered for `logical`.
pub fn render(text: &str, logical: &Logical) -> Result<String, TemplateError> {
    render_with(text, logical, None)
}

/// The fields of the item templates in `text` (`None` for the whole item), with their byte ranges.
pub fn item_fields(text: &str) -> Vec<(Option<String>, std::ops::Range<usize>)> {
    let mut found = Vec::new();
    let _ = each(text, |expression, range| {
        if expression.variable == "item" {
            found.push((expression.field.clone(), range));
        }
        Ok(String::new())
    });
    found
}

/// `text` with every template rendered for `logical` and `cursor`; without a cursor (it is read
/// from the state store when the run starts) `{{ cursor }}` stays as written, and so does
/// `{{ item }}` (rendered for each item as its request is made).
fn render_with(text: &str, logical: &Logical, cursor: Option<&str>) -> Result<String, TemplateError> {
    each(text, |expression, range| match (expression.variable.as_str(), cursor) {
        ("cursor", Some(cursor)) => Ok(cursor.to_owned()),
        ("cursor", None) | ("item", _) => Ok(text[range].to_owned()),
        _ => evaluate(expression, logical, range),
    })
}

/// Every string inside `value` with its `{{ item }}` templates rendered for `item`. A string that
/// is one item template and nothing else becomes the item's value itself, so numbers stay numbers.
pub fn render_item(value: &Value, item: &Value) -> Result<Value, TemplateError> {
    match value {
        Value::String(text) => {
            let whole = item_fields(text);
            if let [(field, range)] = whole.as_slice()
                && *range == (0..text.len())
            {
                return item_value(item, field.as_deref(), range.clone()).cloned();
            }
            each(text, |expression, range| match expression.variable.as_str() {
                "item" => item_value(item, expression.field.as_deref(), range)
                    .map(|value| crate::extract::incremental::rendered(Some(value))),
                _ => Ok(text[range].to_owned()),
            })
            .map(Value::String)
        }
        Value::Array(items) => items
            .iter()
            .map(|v| render_item(v, item))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_item(v, item)?)))
            .collect::<Result<_, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// The item, or its `field`.
fn item_value<'v>(
    item: &'v Value,
    field: Option<&str>,
    range: std::ops::Range<usize>,
) -> Result<&'v Value, TemplateError> {
    let Some(field) = field else { return Ok(item) };
    let found = match item {
        Value::Object(fields) => fields.get(field),
        _ => None,
    };
    found.ok_or_else(|| TemplateError {
        range,
        message: match item {
            Value::Object(fields) => format!(
                "the item has no field `{field}`; it has {}",
                fields.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
            _ => format!("the item is {item}, not an object with a field `{field}`"),
        },
    })
}

/// Every string inside `value` rendered, `{{ cursor }}` as `cursor`.
pub fn render_json(value: &Value, logical: &Logical, cursor: Option<&str>) -> Result<Value, TemplateError> {
    crate::spec::map_strings(value, &mut |text| render_with(text, logical, cursor))
}

fn each(
    text: &str,
    mut render: impl FnMut(&Expression, std::ops::Range<usize>) -> Result<String, TemplateError>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(offset) = text[at..].find("{{") {
        let start = at + offset;
        let Some(length) = text[start..].find("}}") else {
            return Err(TemplateError {
                range: start..text.len(),
                message: "`{{` is not closed by `}}`".to_owned(),
            });
        };
        let range = start..start + length + 2;
        let expression = parse(&text[start + 2..start + length]).map_err(|problem| TemplateError {
            range: range.clone(),
            message: problem.to_string(),
        })?;
        out.push_str(&text[at..start]);
        out.push_str(&render(&expression, range.clone())?);
        at = range.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

fn parse(inner: &str) -> Result<Expression, Problem> {
    let mut parts = inner.split('|').map(str::trim);
    let written = parts.next().unwrap_or_default();
    let (variable, field) = match written.split_once('.') {
        Some((variable, field)) => (variable.trim().to_owned(), Some(field.trim().to_owned())),
        None => (written.to_owned(), None),
    };
    if field.is_some() && variable != "item" && VARIABLES.contains(&variable.as_str()) {
        return Err(Problem::NotItem(variable));
    }
    if !VARIABLES.contains(&variable.as_str()) {
        return Err(Problem::UnknownVariable {
            hint: hint(&variable, &VARIABLES, "variables"),
            name: variable,
        });
    }
    let filters: Vec<Filter> = parts.map(filter).collect::<Result<_, _>>()?;
    if matches!(variable.as_str(), "run_id" | "cursor" | "item") && !filters.is_empty() {
        return Err(Problem::NoFilters(variable));
    }
    // Shifts apply to a time; once formatted (strftime, date, unix) there is no time left to shift.
    let mut formatted_already = false;
    for filter in &filters {
        match filter {
            Filter::Strftime(_) | Filter::Unix | Filter::Date if formatted_already => {
                return Err(Problem::TwoFormats);
            }
            Filter::Strftime(_) | Filter::Unix | Filter::Date => formatted_already = true,
            Filter::AddDays(_) | Filter::AddHours(_) if formatted_already => {
                return Err(Problem::ShiftAfterFormat);
            }
            Filter::AddDays(_) | Filter::AddHours(_) => {}
        }
    }
    Ok(Expression {
        variable,
        field,
        filters,
    })
}

fn filter(text: &str) -> Result<Filter, Problem> {
    let (name, argument) = match text.split_once('(') {
        Some((name, rest)) => {
            let argument = rest
                .strip_suffix(')')
                .ok_or_else(|| Problem::Unclosed(text.to_owned()))?;
            (name.trim(), Some(argument.trim()))
        }
        None => (text, None),
    };
    let quoted = |argument: Option<&str>| {
        argument
            .and_then(|a| {
                a.strip_prefix('\'')
                    .and_then(|a| a.strip_suffix('\''))
                    .or_else(|| a.strip_prefix('"').and_then(|a| a.strip_suffix('"')))
            })
            .map(str::to_owned)
            .ok_or_else(|| Problem::NotQuoted(name.to_owned()))
    };
    let number = |argument: Option<&str>| {
        argument
            .and_then(|a| a.parse::<i64>().ok())
            .ok_or_else(|| Problem::NotNumber(name.to_owned()))
    };
    Ok(match name {
        "strftime" | "format" => {
            let format = quoted(argument)?;
            // chrono reports a bad format only while writing it: write a sample time once here.
            formatted(&chrono::Utc::now().with_timezone(&chrono_tz::UTC), &format)?;
            Filter::Strftime(format)
        }
        "add_days" => Filter::AddDays(number(argument)?),
        "add_hours" => Filter::AddHours(number(argument)?),
        "unix" => Filter::Unix,
        "date" => Filter::Date,
        other => {
            return Err(Problem::UnknownFilter {
                name: other.to_owned(),
                hint: hint(other, &FILTERS, "filters"),
            });
        }
    })
}

fn evaluate(
    expression: &Expression,
    logical: &Logical,
    range: std::ops::Range<usize>,
) -> Result<String, TemplateError> {
    let tz = logical.timezone;
    let local = |time: chrono::DateTime<chrono::Utc>| time.with_timezone(&tz);
    // A date variable keeps its default rendering unless a filter says otherwise.
    type Render = fn(DateTime<Tz>) -> String;
    let (mut time, default): (DateTime<Tz>, Render) = match expression.variable.as_str() {
        "ds" => (local(logical.time), |t| t.format("%Y-%m-%d").to_string()),
        "ds_nodash" => (local(logical.time), |t| t.format("%Y%m%d").to_string()),
        "ts" | "logical_date" => (local(logical.time), rfc3339),
        "data_interval_start" => (local(logical.interval_start), rfc3339),
        "data_interval_end" => (local(logical.interval_end), rfc3339),
        "run_id" if expression.filters.is_empty() => return Ok(logical.run_id.clone()),
        _ => {
            return Err(TemplateError {
                range,
                message: format!("`{}` takes no filters", expression.variable),
            });
        }
    };
    let failed = |message: String| TemplateError {
        range: range.clone(),
        message,
    };
    let mut rendered: Option<String> = None;
    for filter in &expression.filters {
        match filter {
            // Calendar days: across a daylight-saving change a day is 23 or 25 hours.
            Filter::AddDays(days) => {
                let shift = Days::new(days.unsigned_abs());
                time = if *days >= 0 {
                    time.checked_add_days(shift)
                } else {
                    time.checked_sub_days(shift)
                }
                .ok_or_else(|| failed(format!("`add_days({days})` leaves the calendar")))?;
            }
            Filter::AddHours(hours) => time += Duration::hours(*hours),
            Filter::Strftime(format) => {
                rendered = Some(formatted(&time, format).map_err(|problem| failed(problem.to_string()))?);
            }
            Filter::Unix => rendered = Some(time.timestamp().to_string()),
            Filter::Date => rendered = Some(time.format("%Y-%m-%d").to_string()),
        }
    }
    Ok(rendered.unwrap_or_else(|| default(time)))
}

/// `time` written with the strftime `format`, or why it cannot be.
fn formatted(time: &DateTime<Tz>, format: &str) -> Result<String, Problem> {
    use std::fmt::Write;
    let mut out = String::new();
    write!(out, "{}", time.format(format)).map_err(|_| Problem::BadFormat(format.to_owned()))?;
    Ok(out)
}

fn rfc3339(time: DateTime<Tz>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::logical;

    fn tick() -> Logical {
        logical::at("p", Some("0 */6 * * *"), "UTC", "2025-01-01T07:00:00Z".parse().unwrap()).unwrap()
    }

    #[test]
    fn renders_variables_and_filters() {
        let logical = tick();
        let render = |text: &str| super::render(text, &logical).unwrap();
        assert_eq!(render("{{ ds }}/{{ds_nodash}}"), "2025-01-01/20250101");
        assert_eq!(
            render("from={{ data_interval_start }}&to={{ data_interval_end }}"),
            "from=2025-01-01T00:00:00Z&to=2025-01-01T06:00:00Z"
        );
        assert_eq!(
            render("{{ data_interval_start | strftime('%Y-%m-%dT%H') }}"),
            "2025-01-01T00"
        );
        assert_eq!(render("{{ ds | add_days(-1) }}"), "2024-12-31");
        assert_eq!(render("{{ logical_date | add_hours(1) | unix }}"), "1735714800");
        assert_eq!(render("{{ run_id }}"), "p-20250101T060000Z");
        assert_eq!(render("no template"), "no template");
        let vancouver = logical::at(
            "p",
            Some("0 */6 * * *"),
            "America/Vancouver",
            "2025-01-01T07:00:00Z".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(
            super::render("{{ logical_date }} {{ ds }}", &vancouver).unwrap(),
            "2024-12-31T18:00:00-08:00 2024-12-31"
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let error = check("a={{ dss }}").unwrap_err();
        assert_eq!(
            (error.range, error.message.as_str()),
            (2..11, "unknown template variable `dss`; did you mean `ds`?")
        );
        assert!(
            check("{{ ds | add_day(1) }}")
                .unwrap_err()
                .message
                .contains("did you mean `add_days`?")
        );
        assert!(
            check("{{ ds | strftime(%Y) }}")
                .unwrap_err()
                .message
                .contains("quoted format")
        );
        assert!(check("{{ ds ").unwrap_err().message.contains("not closed"));
        assert!(check("{{ run_id | unix }}").is_err());
        assert!(check("{{ ds | strftime('%#z') }}").is_err());
        assert!(
            check("{{ ds | date | add_days(-1) }}")
                .unwrap_err()
                .message
                .contains("before formatting")
        );
        assert!(check("{{ ds | date | unix }}").is_err());
    }

    #[test]
    fn items_render_per_request_and_keep_their_type_when_alone() {
        let logical = tick();
        let written = serde_json::json!({
            "url": "https://api/{{ item.city }}/{{ ds }}",
            "query": { "latitude": "{{ item.latitude }}", "tag": "{{item}}" },
        });
        // Planned: the item stays as written, the rest renders.
        let planned = render_json(&written, &logical, None).unwrap();
        assert_eq!(planned["url"], "https://api/{{ item.city }}/2025-01-01");
        let item = serde_json::json!({ "city": "Paris", "latitude": 48.85 });
        let rendered = render_item(&planned, &item).unwrap();
        assert_eq!(rendered["url"], "https://api/Paris/2025-01-01");
        assert_eq!(rendered["query"]["latitude"], 48.85);
        assert_eq!(rendered["query"]["tag"], item);
        let error = render_item(&serde_json::json!("{{ item.lat }}"), &item).unwrap_err();
        assert_eq!(error.message, "the item has no field `lat`; it has `city`, `latitude`");
        assert_eq!(
            render_item(&serde_json::json!("at {{ item }}"), &serde_json::json!(7)).unwrap(),
            "at 7"
        );
        assert!(
            check("{{ ds.day }}")
                .unwrap_err()
                .message
                .contains("only `item` has fields")
        );
        assert!(check("{{ item.city | unix }}").is_err());
        assert_eq!(item_fields("{{ item.a }}-{{ item }}").len(), 2);
    }
}
