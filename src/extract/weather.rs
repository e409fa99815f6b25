//! `extract_weather`: the Open-Meteo forecast shorthand of the older DAG-factory files.

use serde::{Deserialize, Serialize};

use crate::spec::product::one_or_many_or_csv;

/// Parameters of `extract_weather`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractWeather {
    #[serde(default = "default_api_url")]
    pub api_url: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Open-Meteo hourly variables (`"temperature_2m,precipitation"` or a list).
    #[serde(deserialize_with = "one_or_many_or_csv")]
    pub metrics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_days: Option<u32>,
    #[serde(default = "super::http::default_timeout")]
    pub timeout_seconds: f64,
}

fn default_api_url() -> String {
    "https://api.open-meteo.com/v1/forecast".to_owned()
}
