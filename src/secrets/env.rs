//! `.env` files: `NAME=value` lines, `#` comments, optional `export ` and quotes.

use std::collections::HashMap;
use std::path::Path;

/// The variables of the `.env` file at `path`; none when it does not exist.
pub(super) fn read(path: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

fn parse(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, value) = line.split_once('=')?;
            let value = value.trim();
            let value = ['"', '\'']
                .iter()
                .find_map(|&q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)))
                .unwrap_or(value);
            Some((name.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_lines() {
        let vars = super::parse("# token\nexport A=1\nB = \"two words\"\nC='x'\nbroken\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x");
        assert_eq!(vars.len(), 3);
    }
}
