//! Recorded HTTP exchanges: one JSON file per extract task, `<fixtures>/<task>.json`, holding each
//! request's identity (secrets as references) and the response that answered it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Response;
use crate::secrets::Secrets;

const VERSION: u32 = 1;

/// Response headers worth keeping: the body's type and pagination links.
const KEPT_HEADERS: [&str; 2] = ["content-type", "link"];

#[derive(Debug, thiserror::Error)]
pub(crate) enum FixtureError {
    #[error("no recorded responses for task `{task}`: {} does not exist; record them with `dpf run PRODUCT --record`", path.display())]
    Missing { task: String, path: PathBuf },
    #[error("cannot read the fixtures in {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a fixture file: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "no recorded response for `{request}` in {}; it has: {recorded}. Record again with `dpf run PRODUCT --record` \
         if the product's request changed",
        path.display()
    )]
    NotRecorded {
        request: String,
        path: PathBuf,
        recorded: String,
    },
    #[error("cannot write the fixtures to {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    exchanges: Vec<Exchange>,
}

/// One request and its response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Exchange {
    /// Method, URL (query decoded and sorted) and body, as [`super::Request::key`] writes them.
    pub request: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// A JSON body, kept as JSON so fixtures read and diff well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Any other body, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Exchange {
    /// The exchange with every secret value replaced by its reference.
    pub(crate) fn new(request: String, response: &Response, secrets: &Secrets) -> Self {
        let headers = response
            .headers
            .iter()
            .filter(|(name, _)| KEPT_HEADERS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), secrets.redact(value)))
            .collect();
        let text = secrets.redact(&String::from_utf8_lossy(&response.body));
        let json = serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|_| response.header("content-type").is_none_or(|kind| kind.contains("json")));
        Exchange {
            request,
            status: response.status,
            headers,
            text: json.is_none().then_some(text),
            json,
        }
    }

    fn response(&self) -> Response {
        let body = match (&self.json, &self.text) {
            (Some(json), _) => serde_json::to_vec(json).expect("JSON values serialize"),
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => Vec::new(),
        };
        Response {
            status: self.status,
            headers: self.headers.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
            body,
        }
    }
}

/// Recorded responses, served by request; a request asked again gets the next recording of it, and
/// the last one again once they are used up.
#[derive(Debug, Default)]
pub(crate) struct Fixtures {
    dir: PathBuf,
    tasks: Mutex<HashMap<String, TaskFixtures>>,
}

#[derive(Debug)]
struct TaskFixtures {
    path: PathBuf,
    responses: HashMap<String, VecDeque<Exchange>>,
    order: Vec<String>,
}

impl Fixtures {
    pub(crate) fn new(dir: &Path) -> Self {
        Fixtures {
            dir: dir.to_path_buf(),
            tasks: Mutex::default(),
        }
    }

    /// Loads the fixtures of `task`, so that [`Fixtures::take`] serves them.
    pub(crate) fn load(&self, task: &str) -> Result<(), FixtureError> {
        let path = path(&self.dir, task);
        let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => FixtureError::Missing {
                task: task.to_owned(),
                path: path.clone(),
            },
            _ => FixtureError::Read {
                path: path.clone(),
                source,
            },
        })?;
        let file: File = serde_json::from_str(&text).map_err(|source| FixtureError::Format {
            path: path.clone(),
            source,
        })?;
        let mut responses: HashMap<String, VecDeque<Exchange>> = HashMap::new();
        let mut order = Vec::new();
        for exchange in file.exchanges {
            if !responses.contains_key(&exchange.request) {
                order.push(exchange.request.clone());
            }
            responses
                .entry(exchange.request.clone())
                .or_default()
                .push_back(exchange);
        }
        self.tasks
            .lock()
            .expect("fixtures lock")
            .insert(task.to_owned(), TaskFixtures { path, responses, order });
        Ok(())
    }

    /// The recorded response to `request` for `task`.
    pub(crate) fn take_for(&self, task: &str, request: &str) -> Result<Response, FixtureError> {
        let mut tasks = self.tasks.lock().expect("fixtures lock");
        let fixtures = tasks.get_mut(task).expect("fixtures are loaded before the task runs");
        match fixtures.responses.get_mut(request) {
            Some(queue) if queue.len() > 1 => Ok(queue.pop_front().expect("not empty").response()),
            Some(queue) => Ok(queue.front().expect("never emptied").response()),
            None => {
                let mut recorded: Vec<String> = fixtures.order.iter().take(3).map(|r| format!("`{r}`")).collect();
                if fixtures.order.len() > 3 {
                    recorded.push(format!("and {} more", fixtures.order.len() - 3));
                }
                Err(FixtureError::NotRecorded {
                    request: request.to_owned(),
                    path: fixtures.path.clone(),
                    recorded: if recorded.is_empty() {
                        "no exchanges".to_owned()
                    } else {
                        recorded.join(", ")
                    },
                })
            }
        }
    }
}

/// Writes the exchanges of `task` into `dir`, replacing what was recorded before.
pub(crate) fn save(dir: &Path, task: &str, exchanges: Vec<Exchange>) -> Result<PathBuf, FixtureError> {
    let path = path(dir, task);
    let file = File {
        version: VERSION,
        exchanges,
    };
    let mut text = serde_json::to_string_pretty(&file).expect("fixtures serialize");
    text.push('\n');
    crate::atomic::write(&path, text.as_bytes()).map_err(|source| FixtureError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn path(dir: &Path, task: &str) -> PathBuf {
    dir.join(format!("{task}.json"))
}
