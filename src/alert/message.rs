//! What an alert says: a subject from the template, and the matching rows as a table, in plain text
//! and in HTML (every value escaped: a row holding `<script>` shows it, never runs it).

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::table::Table;

/// An alert ready to send.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Values for `{product}`, `{count}`, `{run_id}`, `{task}` and `{target}` in a subject template.
pub(crate) struct Fields<'a> {
    pub product: &'a str,
    pub task: &'a str,
    pub run_id: &'a str,
    pub target: &'a str,
    pub count: usize,
}

pub(crate) fn subject(template: &str, fields: &Fields<'_>) -> String {
    template
        .replace("{product}", fields.product)
        .replace("{count}", &fields.count.to_string())
        .replace("{run_id}", fields.run_id)
        .replace("{task}", fields.task)
        .replace("{target}", fields.target)
}

/// An alert whose condition held: the first `shown` matching rows of `count`.
pub(crate) fn matches(subject: String, condition: &str, fields: &Fields<'_>, rows: &Table, shown: usize) -> Message {
    let intro = format!(
        "{} rows of run {} of {} match `{condition}` (alert task {}).",
        fields.count, fields.run_id, fields.product, fields.task
    );
    let more = (fields.count > shown).then(|| format!("The first {shown} are shown."));
    build(subject, &intro, more.as_deref(), &[rows])
}

/// A run summary: one row per task, then any further `tables` (such as the failed checks).
pub(crate) fn summary(subject: String, intro: &str, tables: &[&Table]) -> Message {
    build(subject, intro, None, tables)
}

fn build(subject: String, intro: &str, note: Option<&str>, tables: &[&Table]) -> Message {
    let tables: Vec<&Table> = tables.iter().copied().filter(|t| t.rows() > 0).collect();
    let mut text = format!("{intro}\n");
    if let Some(note) = note {
        text.push_str(note);
        text.push('\n');
    }
    text.push('\n');
    for (i, rows) in tables.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        match pretty_format_batches(&rows.batches) {
            Ok(table) => text.push_str(&table.to_string()),
            Err(error) => text.push_str(&format!("(the rows cannot be shown: {error})")),
        }
        text.push('\n');
    }
    text.push_str("\n-- \nSent by dpf\n");

    let mut html = String::from("<!DOCTYPE html>\n<html><body style=\"font-family: sans-serif\">\n");
    html.push_str(&format!("<p>{}</p>\n", escape(intro)));
    if let Some(note) = note {
        html.push_str(&format!("<p>{}</p>\n", escape(note)));
    }
    for rows in &tables {
        html.push_str(&html_table(&rows.batches));
    }
    html.push_str("<p style=\"color: #666\">Sent by dpf</p>\n</body></html>\n");
    Message { subject, text, html }
}

fn html_table(batches: &[RecordBatch]) -> String {
    let Some(first) = batches.first() else {
        return String::new();
    };
    let mut out = String::from("<table style=\"border-collapse: collapse\" border=\"1\" cellpadding=\"4\">\n<tr>");
    for field in first.schema().fields() {
        out.push_str(&format!("<th>{}</th>", escape(field.name())));
    }
    out.push_str("</tr>\n");
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
            .collect();
        for row in 0..batch.num_rows() {
            out.push_str("<tr>");
            for formatter in &formatters {
                let value = match formatter {
                    Ok(f) => f.value(row).to_string(),
                    Err(_) => "?".to_owned(),
                };
                out.push_str(&format!("<td>{}</td>", escape(&value)));
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</table>\n");
    out
}

/// Text made safe to place inside HTML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_fills_the_subject() {
        assert_eq!(
            escape("<script>alert('x')</script> & co"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"
        );
        let fields = Fields {
            product: "p",
            task: "t",
            run_id: "r",
            target: "local",
            count: 3,
        };
        assert_eq!(subject("{product}: {count} rows ({run_id})", &fields), "p: 3 rows (r)");
    }
}
