//! Values behind `${env:…}`, `${secret:…}` and `${file:…}` references, resolved once per run, and the
//! redaction that keeps them out of every output: anything printed, logged or recorded passes through
//! [`Secrets::redact`], which puts the reference back in place of its value.

mod env;
pub(crate) mod gcp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use crate::spec::reference::{Reference, references};

/// Values shorter than this are not searched for in output: a variable holding `1` would otherwise
/// turn every `1` printed into a reference. Secrets are always redacted, whatever their length.
const MIN_REDACTED_LEN: usize = 4;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    #[error(
        "`{reference}` is not set: on the local target it is read from the environment variable `{name}` \
         or from `.env` in the working directory"
    )]
    Unset { reference: String, name: String },
    #[error("`{reference}` is read from Secret Manager when the run starts, and was not")]
    NotRead { reference: String },
    #[error("`{reference}`: {message}")]
    Manager {
        reference: String,
        message: String,
        transient: bool,
    },
    #[error(
        "`{reference}`: no Google Cloud project to read the secret from: set GCP_PROJECT or \
         GOOGLE_CLOUD_PROJECT, or name it in full (`${{secret:projects/P/secrets/S/versions/latest}}`)"
    )]
    NoProject { reference: String },
    #[error("`{reference}`: cannot read `{path}`")]
    File {
        reference: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed reference in a param: {0}")]
    Malformed(String),
}

/// How references turn into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Their values, from the environment, `.env` or files.
    Values,
    /// Their own text (`${secret:NAME}`): what recorded fixtures hold, so replay needs no credentials.
    Literal,
}

/// The references of one run and what they resolved to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Secrets {
    inner: Arc<Mutex<Resolved>>,
}

#[derive(Debug, Default)]
struct Resolved {
    values: HashMap<String, String>,
    /// (value, the reference to print instead), longest value first.
    redactions: Vec<(String, String)>,
    dotenv: Option<HashMap<String, String>>,
    /// Whether `${secret:NAME}` is read from Secret Manager (the gcp target) rather than the environment.
    manager: bool,
    /// The project of `${secret:NAME}` in Secret Manager, once known.
    project: Option<String>,
}

impl Secrets {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Secrets that read `${secret:NAME}` from Secret Manager, in the product's project.
    pub(crate) fn from_secret_manager() -> Self {
        let secrets = Self::default();
        secrets.inner.lock().expect("secrets lock").manager = true;
        secrets
    }

    /// Resolves every reference in `texts` (task id, text) now, reading the Secret Manager ones
    /// concurrently, so that a missing or unreadable one fails the run before any task runs. The first
    /// failure comes with the task whose text holds it.
    pub(crate) async fn prefetch(&self, texts: &[(String, String)]) -> Result<(), (String, SecretError)> {
        let mut wanted: Vec<(String, String, String)> = Vec::new(); // (task, written, name)
        for (task, text) in texts {
            let found = references(text).map_err(|e| (task.clone(), SecretError::Malformed(e.message)))?;
            for (range, reference) in found {
                let Reference::Secret(name) = reference else { continue };
                let written = text[range].to_owned();
                if wanted.iter().any(|(_, w, _)| *w == written) || self.cached(&written) {
                    continue;
                }
                if let Some(full) = self.manager_name(&name).await.map_err(|e| (task.clone(), e))? {
                    wanted.push((task.clone(), written, full));
                }
            }
        }
        if !wanted.is_empty() {
            let manager = gcp::SecretManager::connect().await.map_err(|e| {
                let (task, written, _) = &wanted[0];
                (task.clone(), manager_error(written, e))
            })?;
            let read = futures::future::join_all(wanted.iter().map(|(_, _, name)| manager.access(name))).await;
            for ((task, written, _), value) in wanted.iter().zip(read) {
                let value = value.map_err(|e| (task.clone(), manager_error(written, e)))?;
                let mut resolved = self.inner.lock().expect("secrets lock");
                resolved.add_redaction(&value, written, true);
                resolved.values.insert(written.clone(), value);
            }
        }
        for (task, text) in texts {
            self.resolve(text, Mode::Values).map_err(|e| (task.clone(), e))?;
        }
        Ok(())
    }

    fn cached(&self, written: &str) -> bool {
        self.inner.lock().expect("secrets lock").values.contains_key(written)
    }

    /// The Secret Manager version that `${secret:name}` reads, if it reads one: a full name
    /// (`projects/P/secrets/S/versions/V`), or NAME in the product's project on the gcp target.
    async fn manager_name(&self, name: &str) -> Result<Option<String>, SecretError> {
        if name.starts_with("projects/") {
            return Ok(Some(name.to_owned()));
        }
        let (manager, known) = {
            let resolved = self.inner.lock().expect("secrets lock");
            (resolved.manager, resolved.project.clone())
        };
        if !manager {
            return Ok(None);
        }
        let project = match known {
            Some(project) => project,
            None => {
                let project = match crate::target::gcp::project::configured(None) {
                    Some(project) => Some(project),
                    None => crate::target::gcp::project::detected().await,
                };
                let project = project.ok_or_else(|| SecretError::NoProject {
                    reference: format!("${{secret:{name}}}"),
                })?;
                self.inner.lock().expect("secrets lock").project = Some(project.clone());
                project
            }
        };
        Ok(Some(format!("projects/{project}/secrets/{name}/versions/latest")))
    }

    /// `text` with each reference replaced (and `$${` unescaped).
    pub(crate) fn resolve(&self, text: &str, mode: Mode) -> Result<String, SecretError> {
        let found = references(text).map_err(|error| SecretError::Malformed(error.message))?;
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (range, reference) in found {
            out.push_str(&text[at..range.start].replace("$${", "${"));
            let written = &text[range.clone()];
            match mode {
                Mode::Literal => out.push_str(written),
                Mode::Values => out.push_str(&self.value(written, &reference)?),
            }
            at = range.end;
        }
        out.push_str(&text[at..].replace("$${", "${"));
        Ok(out)
    }

    /// Every string inside `value` resolved.
    pub(crate) fn resolve_json(&self, value: &Value, mode: Mode) -> Result<Value, SecretError> {
        crate::spec::map_strings(value, &mut |text| self.resolve(text, mode))
    }

    fn value(&self, written: &str, reference: &Reference) -> Result<String, SecretError> {
        let mut resolved = self.inner.lock().expect("secrets lock");
        if let Some(value) = resolved.values.get(written) {
            return Ok(value.clone());
        }
        let value = match reference {
            Reference::Env(name) => lookup(&mut resolved, name, written)?,
            Reference::Secret(name) if resolved.manager || name.starts_with("projects/") => {
                return Err(SecretError::NotRead {
                    reference: written.to_owned(),
                });
            }
            Reference::Secret(name) => lookup(&mut resolved, name, written)?,
            Reference::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|source| SecretError::File {
                    reference: written.to_owned(),
                    path: path.clone(),
                    source,
                })?,
        };
        let always = matches!(reference, Reference::Secret(_));
        resolved.add_redaction(&value, written, always);
        resolved.values.insert(written.to_owned(), value.clone());
        Ok(value)
    }

    /// Registers a value derived from secrets (an `Authorization` header, say) to be redacted as `shown`.
    pub(crate) fn add_redaction(&self, value: &str, shown: &str) {
        self.inner
            .lock()
            .expect("secrets lock")
            .add_redaction(value, shown, true);
    }

    /// `value` with every string in it redacted, then passed through `then`.
    pub(crate) fn redact_value(&self, value: &serde_json::Value, then: impl Fn(String) -> String) -> serde_json::Value {
        let mapped = crate::spec::map_strings(value, &mut |text| {
            Ok::<_, std::convert::Infallible>(then(self.redact(text)))
        });
        mapped.unwrap_or_else(|never| match never {})
    }

    /// `text` with every resolved value replaced by the reference it came from.
    pub(crate) fn redact(&self, text: &str) -> String {
        let resolved = self.inner.lock().expect("secrets lock");
        let mut out = text.to_owned();
        for (value, shown) in &resolved.redactions {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), shown);
            }
        }
        out
    }
}

/// Every redaction of the process, for the panic hook, which has no run at hand.
fn process_redactions() -> &'static Mutex<Vec<(String, String)>> {
    static ALL: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    ALL.get_or_init(Mutex::default)
}

/// `text` with every value any run of this process resolved replaced by its reference.
fn redact_everywhere(text: &str) -> String {
    let all = process_redactions()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = text.to_owned();
    for (value, shown) in all.iter() {
        out = out.replace(value.as_str(), shown);
    }
    out
}

/// Makes panic messages pass through redaction before they are printed: a secret in a value that
/// reaches a panic is shown as its reference, like everywhere else.
pub(crate) fn redact_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("dpf: internal error{place}: {}", redact_everywhere(&payload));
        eprintln!("dpf: this is a bug; please report it with the command that led to it");
    }));
}

impl Resolved {
    fn add_redaction(&mut self, value: &str, shown: &str, always: bool) {
        if value.is_empty() || (!always && value.chars().count() < MIN_REDACTED_LEN) {
            return;
        }

        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let in_path = encoded.replace('+', "%20");
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        let mut all = process_redactions()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for variant in [value, encoded.as_str(), in_path.as_str(), escaped] {
            if !self.redactions.iter().any(|(v, _)| v == variant) {
                self.redactions.push((variant.to_owned(), shown.to_owned()));
                all.push((variant.to_owned(), shown.to_owned()));
            }
        }
        self.redactions.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        all.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
    }
}

fn manager_error(written: &str, error: gcp::AccessError) -> SecretError {
    SecretError::Manager {
        reference: written.to_owned(),
        message: error.message,
        transient: error.transient,
    }
}

impl SecretError {
    /// Whether trying again later may help: Secret Manager was unreachable or overloaded.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, SecretError::Manager { transient: true, .. })
    }
}

fn lookup(resolved: &mut Resolved, name: &str, written: &str) -> Result<String, SecretError> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Ok(value);
    }
    let dotenv = resolved
        .dotenv
        .get_or_insert_with(|| env::read(std::path::Path::new(".env")));
    dotenv.get(name).cloned().ok_or_else(|| SecretError::Unset {
        reference: written.to_owned(),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_redacts() {
        // SAFETY: the variable name is unique to this test.
        unsafe { std::env::set_var("DPF_TEST_RESOLVE_TOKEN", "s3cr3t/value") };
        let secrets = Secrets::new();
        let text = "Bearer ${secret:DPF_TEST_RESOLVE_TOKEN} $${env:X}";
        assert_eq!(
            secrets.resolve(text, Mode::Values).unwrap(),
            "Bearer s3cr3t/value ${env:X}"
        );
        assert_eq!(
            secrets.resolve(text, Mode::Literal).unwrap(),
            "Bearer ${secret:DPF_TEST_RESOLVE_TOKEN} ${env:X}"
        );
        assert_eq!(
            secrets.redact("GET /x?key=s3cr3t%2Fvalue and s3cr3t/value"),
            "GET /x?key=${secret:DPF_TEST_RESOLVE_TOKEN} and ${secret:DPF_TEST_RESOLVE_TOKEN}"
        );
        let error = secrets
            .resolve("${secret:DPF_TEST_UNSET_SECRET}", Mode::Values)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("`${secret:DPF_TEST_UNSET_SECRET}` is not set")
        );
        // What reaches a panic message is redacted too.
        assert_eq!(
            redact_everywhere("called `Result::unwrap()` on s3cr3t/value"),
            "called `Result::unwrap()` on ${secret:DPF_TEST_RESOLVE_TOKEN}"
        );
    }
}
