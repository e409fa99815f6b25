//! `${kind:name}` references inside string params: `${env:NAME}`, `${secret:NAME}`,
//! `${secret:projects/P/secrets/S/versions/V}` and `${file:PATH}`. `$${` writes a literal `${`.

use std::ops::Range;

/// A reference to a value resolved at run time; its value is never printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Env(String),
    Secret(String),
    File(String),
}

/// A malformed reference, with the byte range inside the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceError {
    pub range: Range<usize>,
    pub message: String,
    pub help: Option<String>,
}

/// The references in `text`, each with its byte range, or the first malformed one.
pub fn references(text: &str) -> Result<Vec<(Range<usize>, Reference)>, ReferenceError> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("${") {
        let start = at + offset;
        if start > 0 && text.as_bytes()[start - 1] == b'$' {
            at = start + 2;
            continue;
        }
        let Some(length) = text[start..].find('}') else {
            return Err(ReferenceError {
                range: start..text.len(),
                message: "`${` is not closed by `}`".to_owned(),
                help: Some("write `$${` for a literal `${`".to_owned()),
            });
        };
        let range = start..start + length + 1;
        let inner = &text[start + 2..start + length];
        found.push((
            range.clone(),
            parse(inner).map_err(|(message, help)| ReferenceError { range, message, help })?,
        ));
        at = start + length + 1;
    }
    Ok(found)
}

fn parse(inner: &str) -> Result<Reference, (String, Option<String>)> {
    let kinds = "`${env:NAME}`, `${secret:NAME}` or `${file:PATH}`";
    let Some((kind, name)) = inner.split_once(':') else {
        return Err((format!("`${{{inner}}}` has no kind"), Some(format!("write {kinds}"))));
    };
    match kind.trim() {
        "env" if is_variable_name(name) => Ok(Reference::Env(name.to_owned())),
        "env" => Err((
            format!("`{name}` is not an environment variable name"),
            Some("names use letters, digits and underscores, not starting with a digit".to_owned()),
        )),
        "secret" if is_variable_name(name) || is_secret_version(name) => Ok(Reference::Secret(name.to_owned())),
        "secret" => Err((
            format!("`{name}` is not a secret name"),
            Some("write `${secret:NAME}` or `${secret:projects/P/secrets/S/versions/V}`".to_owned()),
        )),
        "file" if !name.trim().is_empty() => Ok(Reference::File(name.to_owned())),
        "file" => Err(("`${file:}` names no file".to_owned(), None)),
        other => {
            let help = crate::diagnostic::closest(other, ["env", "secret", "file"])
                .map_or_else(|| format!("write {kinds}"), |best| format!("did you mean `{best}`?"));
            Err((format!("unknown reference kind `{other}`"), Some(help)))
        }
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `projects/P/secrets/S/versions/V` with V a number or `latest`.
fn is_secret_version(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    matches!(parts.as_slice(), ["projects", project, "secrets", secret, "versions", version]
        if !project.is_empty() && is_variable_name(secret)
            && (*version == "latest" || version.parse::<u64>().is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        let found = references("Bearer ${secret:TOKEN} ${env:HOME}/${file:./key.pem} $${not}").unwrap();
        let kinds: Vec<_> = found.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(
            kinds,
            [
                Reference::Secret("TOKEN".into()),
                Reference::Env("HOME".into()),
                Reference::File("./key.pem".into())
            ]
        );
        assert_eq!(found[0].0, 7..22);
        assert!(references("${secret:projects/p1/secrets/s/versions/latest}").is_ok());
    }

    #[test]
    fn rejects_malformed_references() {
        let error = references("x ${secret:TOKEN").unwrap_err();
        assert_eq!(error.range, 2..16);
        assert!(references("${secrt:X}").unwrap_err().help.unwrap().contains("`secret`"));
        assert!(references("${env:1X}").is_err());
        assert!(references("${TOKEN}").is_err());
        assert!(references("${secret:projects/p/secrets/s/versions/x}").is_err());
    }
}
