//! Literal values that look like credentials: they belong in a secret store, not in a product file.

/// Why `value` (under `key`) looks like a credential, if it does.
pub(super) fn looks_like_credential(key: &str, value: &str) -> Option<&'static str> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let key = key.to_ascii_lowercase().replace('-', "_");
    let secret_keys = [
        "token",
        "password",
        "secret",
        "api_key",
        "apikey",
        "access_token",
        "client_secret",
        "authorization",
        "x_api_key",
        "slack_webhook",
        "private_key",
    ];
    if secret_keys.contains(&key.as_str()) && value.len() >= 6 {
        return Some("a literal value under a credential key");
    }
    let known: [(&str, &str); 8] = [
        ("SG.", "shaped like a SendGrid API key"),
        ("xoxb-", "shaped like a Slack bot token"),
        ("xoxp-", "shaped like a Slack user token"),
        ("ghp_", "shaped like a GitHub token"),
        ("github_pat_", "shaped like a GitHub token"),
        ("-----BEGIN", "a PEM private key"),
        ("AIza", "shaped like a Google API key"),
        ("sk_live_", "shaped like a Stripe secret key"),
    ];
    for (prefix, why) in known {
        if value.starts_with(prefix) && value.len() >= 20 {
            return Some(why);
        }
    }
    if value.len() == 20
        && value.starts_with("AKIA")
        && value.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Some("shaped like an AWS access key id");
    }
    if value.contains("hooks.slack.com/services/") {
        return Some("a Slack webhook URL, which is itself a credential");
    }
    if let Some(token) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("Basic "))
        && token.len() >= 8
        && !token.contains(char::is_whitespace)
    {
        return Some("a literal Authorization value");
    }
    if value.starts_with("eyJ") && value.matches('.').count() == 2 && value.len() >= 30 {
        return Some("shaped like a JSON Web Token");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_credentials_not_ordinary_values() {
        assert!(looks_like_credential("token", "abc123def456").is_some());
        assert!(looks_like_credential("Authorization", "Bearer abcdefgh1234").is_some());
        assert!(looks_like_credential("url", "https://hooks.slack.com/services/T0/B0/xyz").is_some());
        assert!(looks_like_credential("note", "SG.aaaaaaaaaaaaaaaaaaaaaaaaaa").is_some());
        assert!(looks_like_credential("table", "weather_records").is_none());
        assert!(looks_like_credential("token", "").is_none());
        assert!(looks_like_credential("description", "Bearer token from the secret store").is_none());
    }
}
