//! Document ids: one per distinct key tuple, stable across runs, valid for Firestore.
//!
//! An id is the key values joined with `|`, each value made safe first: `%` and `/` are
//! percent-encoded (`%25`, `%2F`), and so is `|` when the key has more than one column (`%7C`). A
//! null is the bare word `null`; the text `"null"` is written `%6Eull`, its first letter encoded. An
//! id that Firestore reserves (`.`, `..`, `__…__`) gets the prefix `id`, and an id that would read
//! like such a prefixed one starts with `%69` (`i`) instead. Percent-decoding any of these gives
//! the joined values back, so two key tuples never share an id. An id longer than Firestore's
//! 1,500 bytes keeps its first 1,466 bytes and ends in `%~` and 128 bits of its SHA-256; `%~`
//! appears in no other id, and an empty id (one empty value) is `%~` alone.
//!
//! Keys are scalar values (text, numbers, booleans, dates, times): a list, struct or map column
//! is refused as a key, since its text form can be the same for different values.
//!
//! An id is the same as earlier versions of dpf gave it unless the key has a value holding `|`
//! (with more than one column) or the text `"null"`, the joined id reads like a prefixed reserved
//! one (`id..`, `id__a|b__`), it is over 1,500 bytes, or it is one empty value (which Firestore
//! refuses): the keys that could share an id before, or had no valid one. So existing collections
//! keep their documents' ids.

/// Firestore's limit on a document id, in bytes.
pub(super) const MAX_ID_BYTES: usize = 1500;
/// Marks a shortened id (followed by a hash) or the empty one; no escaped value contains it.
const MARK: &str = "%~";
/// Hex digits of the hash that ends a shortened id.
const HASH_DIGITS: usize = 32;

/// An id before shortening: the joined, escaped values.
pub(super) struct FullId(pub(super) String);

impl FullId {
    pub(super) fn into_id(self) -> String {
        let FullId(id) = self;
        if id.is_empty() {
            return MARK.to_owned();
        }
        if id.len() <= MAX_ID_BYTES {
            return id;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
        let mut cut = MAX_ID_BYTES - MARK.len() - HASH_DIGITS;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut short = String::with_capacity(MAX_ID_BYTES);
        short.push_str(&id[..cut]);
        short.push_str(MARK);
        for byte in &digest.as_ref()[..HASH_DIGITS / 2] {
            short.push_str(&format!("{byte:02x}"));
        }
        short
    }
}

pub(super) fn full_id(values: &[Option<&str>]) -> FullId {
    let several = values.len() > 1;
    let mut joined = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            joined.push('|');
        }
        match value {
            None => joined.push_str("null"),
            Some("null") => joined.push_str("%6Eull"),
            Some(text) => {
                for c in text.chars() {
                    match c {
                        '%' => joined.push_str("%25"),
                        '/' => joined.push_str("%2F"),
                        '|' if several => joined.push_str("%7C"),
                        c => joined.push(c),
                    }
                }
            }
        }
    }
    if reserved(&joined) {
        joined.insert_str(0, "id");
    } else if joined.strip_prefix("id").is_some_and(reserved) {
        joined.replace_range(..1, "%69");
    }
    FullId(joined)
}

/// Whether Firestore reserves `id` for itself.
fn reserved(id: &str) -> bool {
    // `__` alone counts too, as it did in earlier versions: a prefix more than needed is harmless.
    id == "." || id == ".." || (id.starts_with("__") && id.ends_with("__"))
}

/// An id for a row without key columns: 20 letters and digits, like Firestore's own, derived from
/// `seed` (the run and the task) and the row's position, so that a retried run overwrites the
/// documents of its earlier attempt instead of adding new ones.
pub(super) fn generated_id(seed: &str, row: usize) -> String {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The document id of one key tuple (`None` is a null value).
    fn document_id(values: &[Option<&str>]) -> String {
        full_id(values).into_id()
    }

    /// The ids of dpf 0.1: values joined with `|`, null as `null`, cut at 1,500 bytes.
    fn earlier_id(values: &[Option<&str>]) -> String {
        let values: Vec<&str> = values.iter().map(|v| v.unwrap_or("null")).collect();
        let joined = values.join("|").replace('%', "%25").replace('/', "%2F");
        let reserved = joined == "." || joined == ".." || (joined.starts_with("__") && joined.ends_with("__"));
        let id = if reserved { format!("id{joined}") } else { joined };
        let mut cut = id.len().min(MAX_ID_BYTES);
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        id[..cut].to_owned()
    }

    /// Values chosen to collide under a naive encoding, and ordinary ones.
    fn atoms() -> Vec<Option<String>> {
        let long = "é".repeat(800);
        [
            "",
            "a",
            "b",
            "a|b",
            "b|c",
            "|",
            "||",
            "%",
            "%7C",
            "%25",
            "/",
            "%2F",
            "null",
            "%6Eull",
            ".",
            "..",
            "__x__",
            "id..",
            "id.",
            "idid..",
            "%69d..",
            "_",
            "__",
            "%~",
            "2025-01-01T00:00:00",
            "49.28",
        ]
        .into_iter()
        .map(|s| Some(s.to_owned()))
        .chain([
            None,
            Some(long.clone()),
            Some(format!("{long}x")),
            Some(format!("{long}|")),
        ])
        .collect()
    }

    fn tuples(len: usize) -> Vec<Vec<Option<String>>> {
        if len == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for start in tuples(len - 1) {
            for atom in atoms() {
                let mut tuple = start.clone();
                tuple.push(atom);
                out.push(tuple);
            }
        }
        out
    }

    fn id_of(tuple: &[Option<String>]) -> String {
        let values: Vec<Option<&str>> = tuple.iter().map(Option::as_deref).collect();
        document_id(&values)
    }

    #[test]
    fn distinct_keys_get_distinct_valid_ids() {
        for len in 1..=3 {
            let mut seen: HashMap<String, Vec<Option<String>>> = HashMap::new();
            for tuple in tuples(len) {
                let id = id_of(&tuple);
                assert!(!id.is_empty() && id.len() <= MAX_ID_BYTES, "{tuple:?} → {id}");
                assert!(!id.contains('/') && !reserved(&id), "{tuple:?} → {id}");
                if let Some(other) = seen.insert(id.clone(), tuple.clone()) {
                    panic!("{other:?} and {tuple:?} share the id {id}");
                }
            }
        }
    }

    #[test]
    fn ids_are_the_earlier_ones_except_where_keys_could_collide() {
        let mut same = 0;
        for len in 1..=3 {
            for tuple in tuples(len) {
                let values: Vec<Option<&str>> = tuple.iter().map(Option::as_deref).collect();
                let texts: Vec<&str> = values.iter().map(|v| v.unwrap_or("null")).collect();
                let joined = texts.join("|").replace('%', "%25").replace('/', "%2F");
                let could_collide = values.contains(&Some("null"))
                    || (len > 1 && values.iter().flatten().any(|text| text.contains('|')))
                    || joined.is_empty()
                    || joined.strip_prefix("id").is_some_and(reserved)
                    || joined.len() + 2 > MAX_ID_BYTES;
                if !could_collide {
                    assert_eq!(document_id(&values), earlier_id(&values), "{values:?}");
                    same += 1;
                }
            }
        }
        assert!(same > 10_000, "{same}");
        // The single-column key keeps `|` as it is: no separator to confuse it with.
        assert_eq!(document_id(&[Some("a|b")]), "a|b");
        assert_eq!(document_id(&[Some("a|b"), Some("c")]), "a%7Cb|c");
        assert_eq!(document_id(&[None, Some("n")]), "null|n");
        assert_eq!(document_id(&[Some("null"), Some("n")]), "%6Eull|n");
        assert_eq!(document_id(&[Some("..")]), "id..");
        assert_eq!(document_id(&[Some("id..")]), "%69d..");
    }

    #[test]
    fn long_ids_are_shortened_with_a_hash() {
        let long = "k".repeat(3000);
        let a = document_id(&[Some(&long), Some("1")]);
        let b = document_id(&[Some(&long), Some("2")]);
        assert_ne!(a, b);
        assert_eq!(a.len(), MAX_ID_BYTES);
        assert!(
            a.starts_with("kkk") && a[..MAX_ID_BYTES - HASH_DIGITS].ends_with(MARK),
            "{a}"
        );
        assert_eq!(a, document_id(&[Some(&long), Some("1")]));
    }

    #[test]
    fn generated_ids_are_stable_and_distinct() {
        let id = generated_id("run_a", 0);
        assert_eq!(id.len(), 20);
        assert_eq!(id, generated_id("run_a", 0));
        assert_ne!(id, generated_id("run_a", 1));
        assert_ne!(id, generated_id("run_b", 0));
    }
}
