//! `extract_weather`: the Open-Meteo forecast shorthand of the older DAG-factory files.

use serde::{Deserialize, Serialize};

use super::http::{ExtractHttp, Format, Method};
use crate::spec::de::one_or_many_or_csv;

/// Parameters of `extract_weather`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractWeather {
    #[serde(default = "default_api_url")]
    pub api_url: String,
    pub latitude: Coordinate,
    pub longitude: Coordinate,
    /// Open-Meteo hourly variables (`"temperature_2m,precipitation"` or a list).
    #[serde(deserialize_with = "one_or_many_or_csv")]
    pub metrics: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast_days: Option<u32>,
    #[serde(default = "super::http::default_timeout")]
    pub timeout_seconds: f64,
    /// The most the response may hold once decoded, in megabytes.
    #[serde(default = "super::http::default_max_response_mb")]
    pub max_response_mb: u64,
}

/// A latitude or longitude: degrees, or a fan-out's `{{ item.<field> }}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Coordinate {
    Degrees(f64),
    Item(String),
}

impl Coordinate {
    fn value(&self) -> serde_json::Value {
        match self {
            Coordinate::Degrees(degrees) => (*degrees).into(),
            Coordinate::Item(template) => template.clone().into(),
        }
    }
}

impl std::fmt::Display for Coordinate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Coordinate::Degrees(degrees) => write!(f, "{degrees}"),
            Coordinate::Item(template) => f.write_str(template),
        }
    }
}

impl ExtractWeather {
    /// The same request as an `extract_http` task: GET `api_url?latitude=..&longitude=..&hourly=metrics`,
    /// rows from the response's `hourly` columns, with the location copied into each row.
    pub fn to_http(&self) -> ExtractHttp {
        let mut query = serde_json::Map::new();
        query.insert("latitude".into(), self.latitude.value());
        query.insert("longitude".into(), self.longitude.value());
        query.insert("hourly".into(), self.metrics.join(",").into());
        if let Some(days) = self.forecast_days {
            query.insert("forecast_days".into(), days.into());
        }
        ExtractHttp {
            url: self.api_url.clone(),
            method: Method::Get,
            query,
            headers: Default::default(),
            body: None,
            auth: None,
            format: Format::Json,
            records: Some("hourly".to_owned()),
            include: vec!["latitude".to_owned(), "longitude".to_owned()],
            pagination: None,
            timeout_seconds: self.timeout_seconds,
            max_response_mb: self.max_response_mb,
        }
    }
}

fn default_api_url() -> String {
    "https://api.open-meteo.com/v1/forecast".to_owned()
}
