//! `store_to_bigquery`: loads rows into a BigQuery table (or the local warehouse).

pub(crate) mod gcp;

use serde::{Deserialize, Serialize};

use crate::spec::de::one_or_many;

/// Parameters of `store_to_bigquery`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreToBigquery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub dataset: String,
    pub table: String,
    #[serde(default)]
    pub write: WriteMode,
    /// Columns identifying a row (required for `merge`).
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    #[serde(default)]
    pub method: LoadMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_by: Vec<String>,
}

impl StoreToBigquery {
    /// Where this store puts the rows that quarantine checks rejected: `<table>__rejected` in
    /// the same dataset, merged on the run id and the row's position so that a rerun of the run
    /// writes each row once.
    pub(crate) fn rejected(&self) -> StoreToBigquery {
        StoreToBigquery {
            project: self.project.clone(),
            dataset: self.dataset.clone(),
            table: format!("{}__rejected", self.table),
            write: WriteMode::Merge,
            key: vec!["_dpf_run_id".to_owned(), "_dpf_row".to_owned()],
            method: LoadMethod::Load,
            partition_by: None,
            cluster_by: Vec::new(),
        }
    }
}

/// How rows meet what the table already holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    #[default]
    Append,
    Replace,
    Merge,
}

/// How rows reach BigQuery.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMethod {
    #[default]
    Load,
    Streaming,
}

/// Why `name` is not a valid Google Cloud project id, if it is not.
pub(crate) fn project_problem(name: &str) -> Option<&'static str> {
    // Domain-scoped projects look like `example.com:my-project`.
    let id = name.rsplit_once(':').map_or(name, |(_, id)| id);
    let valid = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    (!valid).then_some("project ids are 6–30 lower-case letters, digits and hyphens, starting with a letter")
}

/// Why `name` is not a valid BigQuery dataset id, if it is not.
pub(crate) fn dataset_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 1024 {
        return Some("dataset names have 1 to 1024 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Some("dataset names use only letters, digits and underscores");
    }
    None
}

/// Why `name` is not a valid BigQuery table id, if it is not.
pub(crate) fn table_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 1024 {
        return Some("table names have 1 to 1024 bytes");
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
    {
        return Some("table names use letters, digits, underscores, dashes and spaces");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_rules() {
        assert!(project_problem("my-project-123").is_none());
        assert!(project_problem("example.com:my-project").is_none());
        assert!(project_problem("My_Project").is_some());
        assert!(dataset_problem("weather_data").is_none());
        assert!(dataset_problem("weather-data").is_some());
        assert!(table_problem("weather records-2025").is_none());
        assert!(table_problem("weather.records").is_some());
    }
}
