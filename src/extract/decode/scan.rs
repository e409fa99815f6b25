//! Values found in a JSON body by scanning its bytes, without parsing the values around them: a large
//! columnar page is split into its columns this way, and pagination guesses the next page's cursor or
//! URL from the body's last fields, so that the next request is under way while the records are decoded.

use std::ops::Range;

use serde_json::Value;

/// The value at the dot path `path` of a JSON object body when its first step is one of the body's
/// last top-level fields, read back from the body's end: no more than [`NEAR_END`] bytes are looked
/// at, so the records before it are not scanned. A guess, to start the next request early: the
/// decoded page says for sure (a key may repeat, and the body may be broken further up).
pub(crate) fn lookup_near_end(body: &[u8], path: &str) -> Option<Value> {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let value = field_near_end(body, head)?;
    let at = match rest {
        None => value,
        Some(rest) => {
            let inner = locate(&body[value.clone()], rest)?;
            value.start + inner.start..value.start + inner.end
        }
    };
    serde_json::from_slice(&body[at]).ok()
}

/// How far back from a body's end [`lookup_near_end`] reads.
const NEAR_END: usize = 64 * 1024;

/// Where the value of the top-level field `key` sits, found among the fields that end the body.
fn field_near_end(body: &[u8], key: &str) -> Option<Range<usize>> {
    let floor = body.len().saturating_sub(NEAR_END);
    let mut end = back_space(body, body.len());
    if end == 0 || body[end - 1] != b'}' {
        return None;
    }
    // `end` is the index of the byte just after the fields still to read (a comma or the brace).
    end -= 1;
    loop {
        let value_end = back_space(body, end);
        let value_start = value_start_back(body, value_end, floor)?;
        let colon = back_space(body, value_start);
        if colon == 0 || body[colon - 1] != b':' {
            return None;
        }
        let key_end = back_space(body, colon - 1);
        if key_end == 0 || body[key_end - 1] != b'"' {
            return None;
        }
        let key_start = string_start_back(body, key_end - 1, floor)?;
        if same_key(&body[key_start..key_end], key) {
            return Some(value_start..value_end);
        }
        let before = back_space(body, key_start);
        if before == 0 || body[before - 1] != b',' {
            return None;
        }
        end = before - 1;
    }
}

/// The index before `end` and any whitespace just before it.
fn back_space(text: &[u8], mut end: usize) -> usize {
    while end > 0 && matches!(text[end - 1], b' ' | b'\n' | b'\r' | b'\t') {
        end -= 1;
    }
    end
}

/// Where the value that ends just before `end` starts, looking no further back than `floor`.
fn value_start_back(text: &[u8], end: usize, floor: usize) -> Option<usize> {
    if end <= floor {
        return None;
    }
    match text[end - 1] {
        b'"' => string_start_back(text, end - 1, floor),
        close @ (b'}' | b']') => {
            let open = if close == b'}' { b'{' } else { b'[' };
            let mut depth = 0usize;
            let mut i = end;
            loop {
                i = floor + memchr::memrchr3(b'"', open, close, &text[floor..i])?;
                match text[i] {
                    b'"' => i = string_start_back(text, i, floor)?,
                    byte if byte == close => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i);
                        }
                    }
                }
            }
        }
        _ => {
            let length = text[floor..end]
                .iter()
                .rev()
                .position(|b| matches!(b, b',' | b':' | b'{' | b'[' | b' ' | b'\n' | b'\r' | b'\t'))?;
            Some(end - length)
        }
    }
}

/// Where the string whose closing quote is at `close` opens: the nearest quote before it that no
/// backslash escapes.
fn string_start_back(text: &[u8], close: usize, floor: usize) -> Option<usize> {
    let mut at = close;
    loop {
        at = floor + memchr::memrchr(b'"', text.get(floor..at)?)?;
        let backslashes = text[floor..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some(at);
        }
    }
}

/// Where the value at the dot path `path` of a JSON object body sits.
pub(super) fn locate(body: &[u8], path: &str) -> Option<Range<usize>> {
    let mut at = 0..body.len();
    for key in path.split('.') {
        let mut fields = Fields::of(body, at.start)?;
        at = fields.find(|(name, _)| same_key(&body[name.clone()], key))?.1;
    }
    Some(at)
}

/// The fields of the JSON object that starts at an offset of `text` (after any whitespace): the
/// range of each quoted key and of its value. Iteration ends at the object's end, or early, with
/// [`Fields::broken`] set, where the text is not JSON.
pub(super) struct Fields<'a> {
    text: &'a [u8],
    at: usize,
    ended: bool,
    pub(super) broken: bool,
}

impl<'a> Fields<'a> {
    pub(super) fn of(text: &'a [u8], start: usize) -> Option<Self> {
        let at = skip_space(text, start);
        if text.get(at) != Some(&b'{') {
            return None;
        }
        let first = skip_space(text, at + 1);
        let ended = text.get(first) == Some(&b'}');
        Some(Fields {
            text,
            at: if ended { first + 1 } else { first },
            ended,
            broken: false,
        })
    }

    /// Just past the object's closing brace, once every field was read.
    pub(super) fn end(&self) -> Option<usize> {
        (self.ended && !self.broken).then_some(self.at)
    }

    /// Where the value of the first field named `key` starts, its own extent left unscanned.
    pub(super) fn value_start(mut self, key: &str) -> Option<usize> {
        loop {
            let (name, start) = self.next_key()?;
            if same_key(&self.text[name], key) {
                return Some(start);
            }
            self.skip_value(start)?;
            if self.ended {
                return None;
            }
        }
    }

    /// The next key and where its value starts.
    fn next_key(&mut self) -> Option<(Range<usize>, usize)> {
        let text = self.text;
        let i = self.at;
        if text.get(i) != Some(&b'"') {
            return None;
        }
        let name = i..string_end(text, i)?;
        let colon = skip_space(text, name.end);
        if text.get(colon) != Some(&b':') {
            return None;
        }
        Some((name, skip_space(text, colon + 1)))
    }

    /// The value starting at `start`, moving on to the next field or past the end.
    fn skip_value(&mut self, start: usize) -> Option<Range<usize>> {
        let text = self.text;
        let value = start..value_end(text, start)?;
        let i = skip_space(text, value.end);
        match text.get(i) {
            Some(b',') => self.at = skip_space(text, i + 1),
            Some(b'}') => (self.at, self.ended) = (i + 1, true),
            _ => return None,
        }
        Some(value)
    }
}

impl Iterator for Fields<'_> {
    type Item = (Range<usize>, Range<usize>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.ended || self.broken {
            return None;
        }
        let field = self
            .next_key()
            .and_then(|(name, start)| Some((name, self.skip_value(start)?)));
        self.broken = field.is_none();
        field
    }
}

/// Whether the JSON string `quoted` (quotes included) is `key`.
fn same_key(quoted: &[u8], key: &str) -> bool {
    let inner = &quoted[1..quoted.len() - 1];
    if inner.contains(&b'\\') {
        serde_json::from_slice::<String>(quoted).is_ok_and(|name| name == key)
    } else {
        inner == key.as_bytes()
    }
}

fn skip_space(text: &[u8], mut i: usize) -> usize {
    while text.get(i).is_some_and(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// Just past the string that opens at `start`.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        match text[i] {
            b'"' => return Some(i + 1),
            _ => i += 2,
        }
    }
}

/// Just past the value that starts at `start`.
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    match text.get(start)? {
        b'"' => string_end(text, start),
        b'{' => container_end(text, start, b'{', b'}'),
        b'[' => container_end(text, start, b'[', b']'),
        _ => {
            let length = text[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(text.len() - start);
            Some(start + length)
        }
    }
}

/// Just past the array or object that opens at `start`. Its brackets balance outside its strings
/// whatever else it holds, so only its own pair, quotes and backslashes are looked for: sixteen bytes
/// are compared at a time, and only the bytes found are looked at one by one.
fn container_end(text: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut i = start;
    while let Some(block) = text.get(i..i + 16) {
        let [quotes, backslashes, opens, closes] = masks(block, [b'"', b'\\', open, close]);
        // The bit of the block to go on from: past a backslash's escaped byte, which may be the first
        // of the next block.
        let mut from = 0;
        loop {
            let found = if in_string {
                quotes | backslashes
            } else {
                quotes | opens | closes
            };
            let pending = found & (u32::MAX << from);
            if pending == 0 {
                break;
            }
            let at = pending.trailing_zeros();
            from = at + 1;
            match block[at as usize] {
                b'\\' => from += 1,
                b'"' => in_string = !in_string,
                byte if byte == open => depth += 1,
                _ => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + from as usize);
                    }
                }
            }
        }
        i += 16.max(from as usize);
    }
    // The last bytes, one at a time.
    while let Some(&byte) = text.get(i) {
        i += 1;
        match byte {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            byte if byte == open => depth += 1,
            byte if byte == close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// For each of `bytes`, the positions in `block` (16 bytes) that hold it, as bits.
#[cfg(target_arch = "x86_64")]
fn masks(block: &[u8], bytes: [u8; 4]) -> [u32; 4] {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    assert!(block.len() >= 16);
    // SAFETY: every x86_64 processor has SSE2; the block has 16 bytes (checked above), and the load
    // needs no alignment.
    unsafe {
        let vector = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        bytes.map(|byte| _mm_movemask_epi8(_mm_cmpeq_epi8(vector, _mm_set1_epi8(byte as i8))) as u32)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8], bytes: [u8; 4]) -> [u32; 4] {
    bytes.map(|byte| (0..16).filter(|&i| block[i] == byte).fold(0, |mask, i| mask | 1 << i))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The value at the dot path `path` (`links.next`) of a JSON object body, when every step is an
    /// object that has the key (the first one, when a key repeats), found by the forward scan.
    fn lookup(body: &[u8], path: &str) -> Option<Value> {
        serde_json::from_slice(&body[locate(body, path)?]).ok()
    }

    #[test]
    fn finds_values_past_records_without_parsing_them() {
        let body = br#" { "data" : [ {"id": 1, "note": "a \"}] quoted", "tags": ["x,y"]} ],
            "meta": {"next": "https://api/x?page=2", "count": 3.5e2, "empty": {}},
            "n\u0065xt": null, "page": 2 } "#;
        assert_eq!(lookup(body, "meta.next"), Some(json!("https://api/x?page=2")));
        assert_eq!(lookup(body, "meta.count"), Some(json!(350.0)));
        assert_eq!(lookup(body, "meta.empty"), Some(json!({})));
        assert_eq!(lookup(body, "next"), Some(json!(null)));
        assert_eq!(lookup(body, "page"), Some(json!(2)));
        assert_eq!(
            lookup(body, "data"),
            Some(json!([{"id": 1, "note": "a \"}] quoted", "tags": ["x,y"]}]))
        );
        for missing in ["meta.none", "none", "page.next", "data.id"] {
            assert_eq!(lookup(body, missing), None, "{missing}");
        }
        assert_eq!(lookup(br#"{"a":1,"a":2}"#, "a"), Some(json!(1)));
        assert_eq!(lookup(b"{}", "a"), None);
        assert_eq!(lookup(b"[1]", "a"), None);
        assert_eq!(lookup(br#"{"a":"cut"#, "a"), None);
        assert_eq!(lookup(br#"{"a" 1}"#, "a"), None);
        for cut in [
            &br#"{"a":"x\"#[..],
            br#"{"a":["#,
            br#"{"a":[1,[2]"#,
            br#"{"b":"\"#,
            br#"{"a\"#,
        ] {
            assert_eq!(lookup(cut, "a"), None, "{}", String::from_utf8_lossy(cut));
        }
    }

    #[test]
    fn long_values_are_skipped_whatever_falls_at_the_block_edges() {
        // Escapes, quotes and brackets at every offset from the 16-byte blocks the scan reads.
        for pad in 0..40 {
            let filler = "x".repeat(pad);
            let records: Vec<_> = (0..5)
                .map(|i| json!({"id": i, "note": format!("{filler}\\\"]}}[{{\\"), "tags": [filler.clone(), "\\"]}))
                .collect();
            let doc = json!({"data": records, "pad": filler, "next": format!("p{pad}")});
            let text = doc.to_string();
            assert_eq!(lookup(text.as_bytes(), "next"), Some(doc["next"].clone()), "{text}");
            assert_eq!(lookup(text.as_bytes(), "data"), Some(doc["data"].clone()), "{text}");
            // Cut anywhere inside the records, the value has no end.
            let cut = &text[..text.find("],\"pad\"").unwrap() - pad % 7];
            assert_eq!(lookup(cut.as_bytes(), "data"), None, "{cut}");
        }
    }

    #[test]
    fn fields_at_the_end_are_found_from_the_end() {
        let records = serde_json::to_string(&vec![json!({"next": "inner", "x": "a\\\"}"}); 5000]).unwrap();
        for (tail, path, expected) in [
            (
                r#""next":"https://api/x?page=2""#,
                "next",
                Some(json!("https://api/x?page=2")),
            ),
            (r#""next" : "a\"b\\" , "page" : 3"#, "next", Some(json!("a\"b\\"))),
            (
                r#""links":{"self":"s","next":"n2"},"count":-1.5e2"#,
                "links.next",
                Some(json!("n2")),
            ),
            (
                r#""links":{"next":null},"n":[1,[2],"]"]"#,
                "links.next",
                Some(json!(null)),
            ),
            (r#""cursor":12345,"ok":true"#, "cursor", Some(json!(12345))),
            (r#""page":2"#, "next", None),
        ] {
            let body = format!(r#"{{"data":{records},{tail}}} "#);
            assert_eq!(lookup_near_end(body.as_bytes(), path), expected, "{tail}");
            // The forward scan agrees where the key is found.
            if expected.is_some() {
                assert_eq!(lookup(body.as_bytes(), path), expected, "{tail}");
            }
        }
        // Before the records, or past a broken end, it is not found from the end.
        let first = format!(r#"{{"next":"n","data":{records}}}"#);
        assert_eq!(lookup_near_end(first.as_bytes(), "next"), None);
        assert_eq!(lookup(first.as_bytes(), "next"), Some(json!("n")));
        for broken in [
            r#"{"next":"n""#,
            r#"{"next":"n"]"#,
            r#"{"next":"n",}"#,
            r#"{"next":}"#,
            "{}",
            "",
        ] {
            assert_eq!(lookup_near_end(broken.as_bytes(), "next"), None, "{broken}");
        }
    }

    #[test]
    fn agrees_with_a_parser_on_generated_documents() {
        // Every field of documents that nest and quote in many ways is found as a parser finds it.
        let values = [
            json!(null),
            json!(-0.5),
            json!("}\\\"]"),
            json!([1, [2, {"x": "]"}], []]),
            json!({"k": {"k": "v"}}),
            json!(true),
        ];
        for (i, a) in values.iter().enumerate() {
            for b in &values[i..] {
                let doc = json!({"first": a, "second": {"inner": b, "other": a}, "third": b});
                for text in [doc.to_string(), serde_json::to_string_pretty(&doc).unwrap()] {
                    for path in ["first", "second", "second.inner", "second.other", "third"] {
                        let parsed = path.split('.').try_fold(&doc, |at, key| at.get(key)).cloned();
                        assert_eq!(lookup(text.as_bytes(), path), parsed, "{path} in {text}");
                        // From the end, every field is reached (the document is small).
                        assert_eq!(lookup_near_end(text.as_bytes(), path), parsed, "{path} in {text}");
                    }
                }
            }
        }
    }
}
