//! A value found in a JSON body by scanning its bytes, without parsing the values around it: pagination
//! reads the next page's cursor or URL this way before the page's records are decoded, so the next
//! request is under way while they are.

use std::ops::Range;

use serde_json::Value;

/// The value at the dot path `path` (`links.next`) of a JSON object body, when every step is an object
/// that has the key (the first one, when a key repeats). A body that is not valid JSON may give `None`:
/// decoding it reports why.
pub(crate) fn lookup(body: &[u8], path: &str) -> Option<Value> {
    serde_json::from_slice(&body[locate(body, path)?]).ok()
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

/// Just past the value that starts at `start`. An array's brackets balance outside its strings
/// whatever objects it holds (and an object's braces whatever arrays), so only its own pair and
/// quotes are looked for, a vectorised search at a time.
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    match text.get(start)? {
        b'"' => string_end(text, start),
        &open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut depth = 0usize;
            let mut i = start;
            loop {
                i += memchr::memchr3(b'"', open, close, text.get(i..)?)?;
                match text[i] {
                    b'"' => {
                        i = string_end(text, i)?;
                        continue;
                    }
                    byte if byte == open => depth += 1,
                    _ => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                }
                i += 1;
            }
        }
        _ => {
            let length = text[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(text.len() - start);
            Some(start + length)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::lookup;

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
                    }
                }
            }
        }
    }
}
