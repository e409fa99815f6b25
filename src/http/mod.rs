//! HTTP exchanges of a run: live over the network, live and recorded into fixtures, or replayed from
//! fixtures with no network at all.

mod body;
mod error;
pub(crate) mod fixtures;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use url::Url;

use crate::secrets::Secrets;
pub(crate) use body::DEFAULT_MAX_MB;
use error::MAX_REDIRECTS;
pub(crate) use error::{HttpError, UrlError, retry_after, transient_status};
pub(crate) use fixtures::{Exchange, Fixtures};

/// One request, as the extract means it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub timeout: Duration,
    /// The most decoded bytes, in megabytes, one response may hold.
    pub max_response_mb: u64,
}

impl Request {
    /// The request's identity in fixtures: method, URL with decoded and sorted query, body; secrets
    /// replaced by their references. Headers are left out: they carry credentials, not identity.
    pub(crate) fn key(&self, secrets: &Secrets) -> String {
        let mut pairs: Vec<(String, String)> = self.url.query_pairs().into_owned().collect();
        pairs.sort();
        let mut key = format!(
            "{} {}{}",
            self.method,
            self.url.origin().ascii_serialization(),
            percent_decoded(self.url.path())
        );
        for (i, (name, value)) in pairs.iter().enumerate() {
            key.push(if i == 0 { '?' } else { '&' });
            key.push_str(&format!("{name}={value}"));
        }
        if let Some(body) = &self.body {
            key.push(' ');
            key.push_str(body);
        }
        secrets.redact(&key)
    }
}

fn percent_decoded(path: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| path.to_owned(), |(_, v)| v.into_owned())
}

/// A response: status, headers (names in lower case) and the decoded body.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where requests go.
pub(crate) enum Transport {
    Live(Clients),
    /// Live, and every successful exchange kept to be written as fixtures.
    Record(Clients, Mutex<HashMap<String, Vec<Exchange>>>),
    Replay(Fixtures),
}

/// The clients live requests go through. `http://` URLs take one without certificate roots, so the
/// system's roots (a few milliseconds of reading files) load only for the first `https://` request.
/// A redirect never crosses from one to the other: it stays within one origin.
pub(crate) struct Clients {
    tls: OnceLock<reqwest::Client>,
    plain: OnceLock<reqwest::Client>,
}

impl Clients {
    /// Clients built when first needed; `tls`, when given, serves `https://` (the run's shared client).
    pub(crate) fn new(tls: Option<reqwest::Client>) -> Self {
        Clients {
            tls: tls.map(OnceLock::from).unwrap_or_default(),
            plain: OnceLock::new(),
        }
    }

    fn for_url(&self, url: &Url) -> &reqwest::Client {
        match url.scheme() {
            "http" => self
                .plain
                .get_or_init(|| builder().tls_certs_only([]).build().expect(BUILT)),
            _ => self.tls.get_or_init(client),
        }
    }
}

impl Transport {
    /// Requests through `clients`, the run's.
    pub(crate) fn live(clients: Clients) -> Self {
        Transport::Live(clients)
    }

    /// Requests through `clients`, each exchange kept to be written as a fixture.
    pub(crate) fn record(clients: Clients) -> Self {
        Transport::Record(clients, Mutex::default())
    }

    /// Sends `request`; `progress` hears the body's bytes as they arrive. A non-2xx status is an error.
    pub(crate) async fn send(
        &self,
        task: &str,
        request: &Request,
        secrets: &Secrets,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Response, HttpError> {
        let response = match self {
            Transport::Live(clients) => live(clients.for_url(&request.url), request, secrets, progress).await?,
            Transport::Record(clients, exchanges) => {
                let response = live(clients.for_url(&request.url), request, secrets, progress).await?;
                if (200..300).contains(&response.status) {
                    exchanges
                        .lock()
                        .expect("recording lock")
                        .entry(task.to_owned())
                        .or_default()
                        .push(Exchange::new(request.key(secrets), &response, secrets));
                }
                response
            }
            Transport::Replay(fixtures) => {
                let response = fixtures.take_for(task, &request.key(secrets))?;
                progress(response.body.len());
                response
            }
        };
        if !(200..300).contains(&response.status) {
            return Err(status_error(request, &response, secrets));
        }
        Ok(response)
    }

    /// The exchanges of `task` recorded so far (none unless recording).
    pub(crate) fn take_recorded(&self, task: &str) -> Vec<Exchange> {
        match self {
            Transport::Record(_, exchanges) => exchanges
                .lock()
                .expect("recording lock")
                .remove(task)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Makes ring the process's TLS crypto provider, once; every HTTP and gRPC client needs one.
pub(crate) fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `text` as an `http` or `https` URL; `dpf validate` checks literal ones with it.
pub(crate) fn http_url(text: &str) -> Result<Url, UrlError> {
    let url = Url::parse(text).map_err(|source| UrlError::Invalid {
        text: text.to_owned(),
        source,
    })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        scheme => Err(UrlError::Scheme {
            text: text.to_owned(),
            scheme: scheme.to_owned(),
        }),
    }
}

/// Why a header cannot be sent as it is, if it cannot: checked before any request goes out, and
/// by `dpf validate` for the headers a product writes out.
pub(crate) fn header_problem(name: &str, value: &str) -> Option<(&'static str, &'static str)> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some(("name", "header names are letters, digits and !#$%&'*+-.^_`|~"));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Some(("value", "header values cannot hold line breaks or NUL"));
    }
    if reqwest::header::HeaderValue::from_str(value).is_err() {
        return Some(("value", "header values cannot hold control characters"));
    }
    None
}

/// The HTTP client for every scheme, with the system's certificate roots.
pub(crate) fn client() -> reqwest::Client {
    builder().build().expect(BUILT)
}

const BUILT: &str = "the HTTP client's settings are valid";

fn builder() -> reqwest::ClientBuilder {
    install_crypto();
    // Credentials (an API key in any header) must not follow a redirect to another origin.
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        let crosses = attempt
            .previous()
            .last()
            .is_some_and(|from| from.origin() != attempt.url().origin());
        // `previous` holds the first request's URL too: MAX_REDIRECTS redirects are followed.
        if crosses || attempt.previous().len() > MAX_REDIRECTS {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .user_agent(concat!("dpf/", env!("CARGO_PKG_VERSION")))
        // dpf decodes gzip itself, to bound what a response expands to (`body`).
        .no_gzip()
        .redirect(redirects)
        .connect_timeout(Duration::from_secs(10))
}

async fn live(
    client: &reqwest::Client,
    request: &Request,
    secrets: &Secrets,
    progress: &mut dyn FnMut(usize),
) -> Result<Response, HttpError> {
    let shown = || secrets.redact(request.url.as_str());
    let mut builder = client
        .request(request.method.clone(), request.url.clone())
        .timeout(request.timeout);
    for (name, value) in &request.headers {
        if let Some((_, problem)) = header_problem(name, value) {
            return Err(HttpError::Header {
                name: secrets.redact(name),
                problem,
            });
        }
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
    }
    if !request
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("accept-encoding"))
    {
        builder = builder.header(reqwest::header::ACCEPT_ENCODING, "gzip");
    }
    let timeout = |error: &reqwest::Error| error.is_timeout();
    let mut response = builder.send().await.map_err(|source| {
        if timeout(&source) {
            HttpError::Timeout {
                url: shown(),
                seconds: request.timeout.as_secs_f64(),
            }
        } else if source.is_builder() || rejected_certificate(&source) {
            // A header or URL that cannot be sent, a certificate that is not trusted: no retry will
            // change them.
            HttpError::Request { url: shown(), source }
        } else {
            HttpError::Connect { url: shown(), source }
        }
    })?;
    let status = response.status().as_u16();
    // The redirects the client stopped following: to another origin, or too many.
    if matches!(status, 301 | 302 | 303 | 307 | 308)
        && let Some(location) = response.headers().get(reqwest::header::LOCATION)
        && let Ok(next) = response.url().join(&String::from_utf8_lossy(location.as_bytes()))
    {
        let crosses = next.origin() != response.url().origin();
        let (url, to) = (shown(), secrets.redact(next.as_str()));
        return Err(if crosses {
            HttpError::CrossOrigin { url, to }
        } else {
            HttpError::RedirectLoop { url, to }
        });
    }
    let gzip = response
        .headers()
        .get(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    // The body is kept decoded: its encoding and length headers no longer describe it.
    let headers = response
        .headers()
        .iter()
        .filter(|(n, _)| !gzip || (*n != reqwest::header::CONTENT_ENCODING && *n != reqwest::header::CONTENT_LENGTH))
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let refused = |source| HttpError::Refused { url: shown(), source };
    let expected = response.content_length().unwrap_or(0);
    // An error's body only gives its excerpt: a megabyte of it is plenty, and a broken one says
    // nothing that would change how the status is handled.
    let success = (200..300).contains(&status);
    let limit_mb = if success { request.max_response_mb } else { 1 };
    let mut body = body::Body::new(gzip, limit_mb, expected as usize);
    if success {
        body.refuses(expected).map_err(refused)?;
    }
    let mut received = 0;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                received += chunk.len();
                match body.push(&chunk) {
                    Ok(decoded) => progress(decoded),
                    Err(_) if !success => break,
                    Err(error) => return Err(refused(error)),
                }
            }
            Ok(None) => break,
            Err(source) if timeout(&source) => {
                return Err(HttpError::SlowBody {
                    url: shown(),
                    seconds: request.timeout.as_secs_f64(),
                    received,
                });
            }
            Err(source) => return Err(HttpError::Body { url: shown(), source }),
        }
    }
    let body = if success {
        body.finish().map_err(refused)?
    } else {
        body.excerpt()
    };
    Ok(Response { status, headers, body })
}

/// Whether TLS failed because the server's certificate was refused (untrusted, expired, wrong name).
fn rejected_certificate(error: &(dyn std::error::Error + 'static)) -> bool {
    let refused = |tls: &rustls::Error| {
        matches!(
            tls,
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
        )
    };
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return refused(tls);
        }
        // An I/O error wraps the TLS error as its payload, not as its source.
        cause = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    false
}

fn status_error(request: &Request, response: &Response, secrets: &Secrets) -> HttpError {
    // Redacted before it is cut: a secret the server echoes across the cut is still found whole.
    let text = secrets.redact(String::from_utf8_lossy(&response.body).trim());
    let excerpt = if text.is_empty() {
        String::new()
    } else {
        let cut: String = text.chars().take(300).collect();
        let more = if cut.len() < text.len() { "…" } else { "" };
        format!(": {cut}{more}")
    };
    HttpError::Status {
        url: secrets.redact(request.url.as_str()),
        status: response.status,
        retry_after: response.header("retry-after").and_then(retry_after),
        excerpt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_canonical() {
        let request = |url: &str| Request {
            method: reqwest::Method::GET,
            url: Url::parse(url).unwrap(),
            headers: vec![("authorization".into(), "Bearer x".into())],
            body: None,
            timeout: Duration::from_secs(1),
            max_response_mb: DEFAULT_MAX_MB,
        };
        let secrets = Secrets::new();
        assert_eq!(
            request("https://api.example.com/v1/a%20b?z=1&a=%24%7Bsecret%3AK%7D").key(&secrets),
            "GET https://api.example.com/v1/a b?a=${secret:K}&z=1"
        );
        assert_eq!(
            request("https://api.example.com/v1?z=1&a=2").key(&secrets),
            request("https://api.example.com/v1?a=2&z=1").key(&secrets)
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }
}
