//! The channels an alert goes by.

use serde::{Deserialize, Serialize};

/// Where an alert goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Slack,
}
