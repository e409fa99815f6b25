//! `store_to_firestore`: one document per row in a Firestore collection (or the local document store).

pub mod gcp;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};

use crate::spec::product::one_or_many;

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
pub fn collection_problem(path: &str) -> Option<&'static str> {
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

/// The document id for a row's key values: the values joined with `|`, made safe for Firestore
/// (`/` and `%` percent-encoded; `.`, `..` and `__…__` prefixed). Deterministic, so a rerun overwrites.
pub fn document_id(values: &[String]) -> String {
    let joined = values.join("|").replace('%', "%25").replace('/', "%2F");
    let reserved = joined == "." || joined == ".." || (joined.starts_with("__") && joined.ends_with("__"));
    let id = if reserved { format!("id{joined}") } else { joined };
    if id.len() <= 1500 {
        return id;
    }
    let mut cut = 1500;
    while !id.is_char_boundary(cut) {
        cut -= 1;
    }
    id[..cut].to_owned()
}

/// An id for a row without key columns: 20 letters and digits, like Firestore's own, derived from
/// `seed` (the run and the task) and the row's position, so that a retried run overwrites the
/// documents of its earlier attempt instead of adding new ones.
pub fn generated_id(seed: &str, row: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Two FNV-1a hashes with different offsets: 128 bits, stable across builds and platforms.
    let fnv = |offset: u64| {
        let mut hash = offset;
        for byte in seed.bytes().chain((row as u64).to_le_bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    };
    let (mut high, mut low) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142));
    (0..20)
        .map(|i| {
            let half = if i % 2 == 0 { &mut high } else { &mut low };
            let c = ALPHABET[(*half % ALPHABET.len() as u64) as usize];
            *half /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

/// The document id of each row of `batch`, whose first row is row `offset` of the task's rows:
/// from the `key` columns when there are any, else [`generated_id`].
pub fn document_ids(key: &[String], seed: &str, offset: usize, batch: &RecordBatch) -> Result<Vec<String>, String> {
    if key.is_empty() {
        return Ok((0..batch.num_rows())
            .map(|row| generated_id(seed, offset + row))
            .collect());
    }
    let options = FormatOptions::default().with_null("null");
    let formatters = key
        .iter()
        .map(|column| {
            let array = batch
                .column_by_name(column)
                .ok_or_else(|| format!("key column `{column}` is not a column of the rows"))?;
            ArrayFormatter::try_new(array.as_ref(), &options).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            let values: Vec<String> = formatters.iter().map(|f| f.value(row).to_string()).collect();
            document_id(&values)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids() {
        let id = document_id(&["2025-01-01T00:00:00".into(), "49.28".into(), "a/b".into()]);
        assert_eq!(id, "2025-01-01T00:00:00|49.28|a%2Fb");
        assert_eq!(document_id(&["..".into()]), "id..");
        assert_eq!(document_id(&["__x__".into()]), "id__x__");
        let id = generated_id("run_a", 0);
        assert_eq!(id.len(), 20);
        assert_eq!(id, generated_id("run_a", 0));
        assert_ne!(id, generated_id("run_a", 1));
        assert_ne!(id, generated_id("run_b", 0));
    }

    #[test]
    fn collection_paths() {
        assert!(collection_problem("weather_records").is_none());
        assert!(collection_problem("weather/vancouver/records").is_none());
        assert!(collection_problem("weather/vancouver").is_some());
        assert!(collection_problem("__stats__").is_some());
        assert!(collection_problem("a//b").is_some());
    }
}
