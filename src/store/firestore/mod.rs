//! `store_to_firestore`: one document per row in a Firestore collection (or the local document store).

mod documents;
pub(crate) mod gcp;
mod id;
mod value;

pub(crate) use documents::{Documents, IdError};
use serde::{Deserialize, Serialize};

use crate::spec::de::one_or_many;

/// Parameters of `store_to_firestore`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreToFirestore {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Collection id or path (`weather/vancouver/records`).
    pub collection: String,
    /// Columns forming the deterministic document id; generated ids when empty.
    #[serde(default, deserialize_with = "one_or_many", skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
    /// Update only the written fields of an existing document.
    #[serde(default)]
    pub merge: bool,
}

/// Why `path` is not a valid Firestore collection path, if it is not.
pub(crate) fn collection_problem(path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    for segment in &segments {
        if segment.is_empty() {
            return Some("path segments cannot be empty (no leading, trailing or double `/`)");
        }
        if *segment == "." || *segment == ".." {
            return Some("ids cannot be `.` or `..`");
        }
        if segment.len() > 2 && segment.starts_with("__") && segment.ends_with("__") {
            return Some("ids matching __.*__ are reserved by Firestore");
        }
        if segment.len() > 1500 {
            return Some("ids are at most 1500 bytes");
        }
    }
    if segments.len().is_multiple_of(2) {
        return Some("this path names a document; a collection path has an odd number of segments");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_paths() {
        assert!(collection_problem("weather_records").is_none());
        assert!(collection_problem("weather/vancouver/records").is_none());
        assert!(collection_problem("weather/vancouver").is_some());
        assert!(collection_problem("__stats__").is_some());
        assert!(collection_problem("a//b").is_some());
    }
}
