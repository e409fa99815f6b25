//! The channels an alert goes by.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an alert goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Slack,
}

impl Channel {
    /// The channel's name, as `channels:` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Slack => "slack",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_product_files_spelling() {
        for channel in [Channel::Email, Channel::Slack] {
            assert_eq!(serde_json::to_value(channel).unwrap(), channel.as_str());
        }
    }
}
