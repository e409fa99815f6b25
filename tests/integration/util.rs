//! What the integration tests share, all in this one place:
//! - the real binary run with a cleared environment, everything reported on failure ([`dpf`],
//!   [`Dpf`], [`Run`], [`Child`]);
//! - a workspace with its product files and data dir, the files it holds and its outbox;
//! - the receipt's parts, and the example products replayed from their recorded fixtures;
//! - [`ProductYaml`], the one builder of product files, with the [`records`] its extracts get
//!   from a server that [`serve`]s them;
//! - the gcp target against the emulators: a project per test, the Secret Manager and SendGrid
//!   doubles, BigQuery queries and REST requests.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::secret_manager::{Answer, SecretManager};
use crate::server::{Reply, Server};

/// The repository root, where `products/` and `tests/corpus/` live.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A secret value that must never appear in any output: every invocation's stdout and stderr are
/// searched for it. Tests use it wherever a secret can go.
pub(crate) const CANARY: &str = "canary-5e3b9d1c-secret-never-printed";

/// A `dpf` invocation being set up.
pub(crate) struct Dpf {
    command: Command,
    shown: Vec<String>,
}

/// `dpf` run from the repository root with an empty environment.
pub(crate) fn dpf() -> Dpf {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dpf"));
    command.env_clear().current_dir(root());
    Dpf {
        command,
        shown: vec!["dpf".into()],
    }
}

impl Dpf {
    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            self.shown.push(arg.as_ref().to_string_lossy().into_owned());
            self.command.arg(arg);
        }
        self
    }

    pub(crate) fn env(mut self, key: &str, value: &str) -> Self {
        self.shown.insert(0, format!("{key}={value}"));
        self.command.env(key, value);
        self
    }

    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Runs and checks the exit code; on a mismatch prints the command, stdout and stderr.
    #[track_caller]
    pub(crate) fn expect(mut self, code: i32) -> Run {
        let output = self.command.output().expect("dpf runs");
        let run = Run {
            command: self.shown.join(" "),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(!run.stderr.contains("panicked"), "dpf panicked\n{run}");
        run.assert_no_canary();
        assert_eq!(run.code, code, "unexpected exit code\n{run}");
        run
    }
}

/// The result of one invocation.
pub(crate) struct Run {
    pub command: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    fn assert_no_canary(&self) {
        for text in [&self.stdout, &self.stderr] {
            assert!(!text.contains(CANARY), "the canary secret was printed\n{self}");
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nexit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl Dpf {
    /// Starts dpf without waiting for it.
    pub(crate) fn spawn(mut self) -> Child {
        let child = self
            .command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("dpf starts");
        Child {
            child,
            command: self.shown.join(" "),
        }
    }
}

/// A running dpf.
pub(crate) struct Child {
    child: std::process::Child,
    command: String,
}

impl Child {
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits for dpf to stop.
    #[track_caller]
    pub(crate) fn terminate(self) -> Run {
        self.signal("TERM");
        self.wait()
    }

    /// Waits for dpf to end by itself.
    #[track_caller]
    pub(crate) fn wait(self) -> Run {
        let output = self.child.wait_with_output().expect("dpf stops");
        let run = Run {
            command: self.command,
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        assert!(!run.stderr.contains("panicked"), "dpf panicked\n{run}");
        run.assert_no_canary();
        run
    }

    /// Kills dpf with SIGKILL: no chance to clean up.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary folder with a product file and a data dir.
pub(crate) struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub(crate) fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    /// Writes `products/<name>.yaml`.
    pub(crate) fn product(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.path().join("products").join(format!("{name}.yaml"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// `dpf run FILE` with this workspace's data dir, a JSON receipt on stdout and JSON logs.
    pub(crate) fn run(&self, product: &Path) -> Dpf {
        dpf().current_dir(self.path()).args([
            "run".as_ref(),
            product.as_os_str(),
            "--data-dir".as_ref(),
            self.data().as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
            "--log-format".as_ref(),
            "json".as_ref(),
        ])
    }

    /// The documents of `collection` in the local document store, by id, with their fields.
    #[track_caller]
    pub(crate) fn documents(&self, collection: &str) -> BTreeMap<String, Value> {
        let sqlite = rusqlite::Connection::open(self.data().join("firestore.db")).unwrap();
        let mut statement = sqlite
            .prepare("SELECT id, fields FROM documents WHERE collection = ?1")
            .unwrap();
        statement
            .query_map([collection], |row| {
                let fields: String = row.get(1)?;
                Ok((row.get(0)?, serde_json::from_str(&fields).unwrap()))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[track_caller]
    pub(crate) fn query(&self, sql: &str) -> Vec<Value> {
        let run = dpf()
            .args(["query", sql, "--format", "json", "--data-dir"])
            .args([self.data()])
            .expect(0);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
    }
}

/// Every file below `dir` (none when there is no `dir`) with its text, in the order of their paths.
pub(crate) fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out.sort();
    out
}

/// The alerts the local target wrote to the workspace's outbox, oldest first (their file names
/// start with the time they were sent).
pub(crate) fn outbox(ws: &Workspace) -> Vec<String> {
    files(&ws.data().join("outbox"))
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

pub(crate) fn receipt(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no receipt on stdout: {e}\n{run}"))
}

#[track_caller]
pub(crate) fn task<'a>(receipt: &'a Value, id: &str) -> &'a Value {
    receipt["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {receipt:#}"))
}

/// The error of task `id` in the receipt of `run`.
pub(crate) fn task_error(run: &Run, id: &str) -> String {
    let receipt = receipt(run);
    task(&receipt, id)["error"]
        .as_str()
        .unwrap_or_else(|| panic!("task {id} has no error\n{run}"))
        .to_owned()
}

/// `dpf run PRODUCT --replay`: an example product of the repository on its recorded fixtures, into
/// the workspace's data dir, with a JSON receipt and no logs.
pub(crate) fn replay_command(ws: &Workspace, product: &str) -> Dpf {
    dpf()
        .args([
            "run",
            product,
            "--replay",
            "--format",
            "json",
            "--log-format",
            "off",
            "--data-dir",
        ])
        .args([ws.data()])
}

/// `dpf backfill FILE` from `from` to `to` in the workspace's data dir.
pub(crate) fn backfill(ws: &Workspace, file: &std::path::Path, from: &str, to: &str) -> Dpf {
    dpf()
        .current_dir(ws.path())
        .args([
            "backfill".as_ref(),
            file.as_os_str(),
            "--data-dir".as_ref(),
            ws.data().as_os_str(),
        ])
        .args(["--from", from, "--to", to, "--log-format", "off"])
}

/// The receipt of a [`replay_command`] that succeeds: on the local target, or on the gcp target in
/// `project`.
#[track_caller]
pub(crate) fn replay(ws: &Workspace, product: &str, project: Option<&str>) -> Value {
    let command = replay_command(ws, product);
    let command = match project {
        Some(project) => gcp(command, project),
        None => command,
    };
    receipt(&command.expect(0))
}

/// A product file, written top-level key by key and task by task; its text (`to_string()`) is for
/// [`Workspace::product`]:
///
/// ```text
/// ProductYaml::items(&server.url, "      records: data")
///     .retries(2)
///     .store_warehouse("dataset: shop, table: items, write: merge, key: id")
///     .task(ALERT)
///     .to_string()
/// ```
///
/// The YAML given is as it stands in the file: a task starts with `  - id:`, its keys are indented
/// 4 spaces and the lines under its `params:` 6.
pub(crate) struct ProductYaml {
    /// `name:` and the other top-level keys, a line each.
    head: String,
    /// The items of `tasks:`.
    tasks: String,
}

impl ProductYaml {
    /// A product called `name`, with no tasks yet.
    pub(crate) fn new(name: &str) -> Self {
        ProductYaml {
            head: format!("name: {name}\n"),
            tasks: String::new(),
        }
    }

    /// `items_product`, whose task `extract_items` gets `url`/items with `params`.
    pub(crate) fn items(url: &str, params: &str) -> Self {
        ProductYaml::new("items_product").extract("extract_items", &format!("{url}/items"), params)
    }

    /// A top-level `key: value` (`start_date`, `schedule`, …), `value` as YAML.
    pub(crate) fn set(mut self, key: &str, value: &str) -> Self {
        self.head.push_str(&format!("{key}: {value}\n"));
        self
    }

    /// Every task retried up to `retries` times, each after 30 ms rather than minutes.
    pub(crate) fn retries(self, retries: u32) -> Self {
        let product = self.set("retries", &retries.to_string());
        match retries {
            0 => product,
            _ => product.set("retry_delay_minutes", "0.0005"),
        }
    }

    /// YAML lines after the last task's, ending with a line break; nothing when `yaml` is empty.
    fn lines(mut self, yaml: &str) -> Self {
        self.tasks.push_str(yaml);
        if !yaml.is_empty() && !yaml.ends_with('\n') {
            self.tasks.push('\n');
        }
        self
    }

    /// Tasks as they stand in the file (YAML list items); nothing when `yaml` is empty.
    pub(crate) fn task(self, yaml: &str) -> Self {
        self.lines(yaml)
    }

    /// An `extract_http` task `id` that gets `url`, with more `params` (none when empty).
    pub(crate) fn extract(self, id: &str, url: &str, params: &str) -> Self {
        self.lines(&format!(
            "  - id: {id}\n    function: extract_http\n    params:\n      url: {url}\n"
        ))
        .lines(params)
    }

    /// The `checks:` of the task added last, as they stand in the file (`    checks:` and its
    /// items); nothing when `yaml` is empty.
    pub(crate) fn checks(self, yaml: &str) -> Self {
        self.lines(yaml)
    }

    /// A `store_to_bigquery` task `to_warehouse`; `params` are the inside of a flow mapping,
    /// `dataset: shop, table: items, write: merge`.
    pub(crate) fn store_warehouse(self, params: &str) -> Self {
        self.task(&format!(
            "  - id: to_warehouse\n    function: store_to_bigquery\n    params: {{ {params} }}\n"
        ))
    }

    /// A `store_to_firestore` task `to_documents`; `params` as for [`Self::store_warehouse`].
    pub(crate) fn store_documents(self, params: &str) -> Self {
        self.task(&format!(
            "  - id: to_documents\n    function: store_to_firestore\n    params: {{ {params} }}\n"
        ))
    }
}

impl std::fmt::Display for ProductYaml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}tasks:\n{}", self.head, self.tasks)
    }
}

/// `count` records with ids from `first`.
pub(crate) fn records(first: usize, count: usize) -> Vec<Value> {
    (first..first + count)
        .map(|i| json!({"id": i, "name": format!("item {i}"), "price": i as f64 * 1.5}))
        .collect()
}

/// A server that answers each request with the next of `pages` as JSON, and with the last one
/// again after that.
pub(crate) fn serve(pages: Vec<Value>) -> Server {
    Server::start(move |_, number| Reply::json(pages[number.min(pages.len() - 1)].to_string()))
}

/// The emulators' addresses, from the environment `scripts/test` sets up.
pub(crate) struct Emulators {
    pub bigquery: String,
    pub firestore: String,
}

/// The [`Emulators`]; without them, how to run the suite.
pub(crate) fn emulators() -> Emulators {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the gcp-target tests run against emulators that scripts/test starts \
                 (run the suite with scripts/test; it needs python3 with venv, the Google Cloud CLI's \
                 Firestore emulator and Java)"
            )
        })
    };
    Emulators {
        bigquery: var("BIGQUERY_EMULATOR_HOST"),
        firestore: var("FIRESTORE_EMULATOR_HOST"),
    }
}

/// A project id of this test's own: 6–30 lower-case letters, digits and hyphens.
pub(crate) fn new_project(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let name: String = name.chars().filter(|c| c.is_ascii_lowercase()).take(12).collect();
    format!("t-{name}-{}-{n}", std::process::id())
}

/// `command` on the gcp target against the emulators, in `project`.
pub(crate) fn gcp(command: Dpf, project: &str) -> Dpf {
    let emulators = emulators();
    let doubles = doubles();
    doubles.secrets.insert(
        &format!("projects/{project}/secrets/SENDGRID_API_KEY/versions/latest"),
        Answer::Value(SENDGRID_KEY.to_owned()),
    );
    command
        .args(["--target", "gcp"])
        .env("GCP_PROJECT", project)
        .env("BIGQUERY_EMULATOR_HOST", &emulators.bigquery)
        .env("FIRESTORE_EMULATOR_HOST", &emulators.firestore)
        .env("DPF_SECRET_MANAGER_URL", &doubles.secrets.url)
        .env("SENDGRID_API_URL", &doubles.sendgrid.url)
}

/// The SendGrid API key the Secret Manager double holds for every test project.
pub(crate) const SENDGRID_KEY: &str = "SG.test-key-from-secret-manager";

/// A SendGrid stand-in: records each request and answers 202, as SendGrid does.
pub(crate) fn sendgrid() -> Server {
    Server::start(|_, _| Reply::status(202, ""))
}

/// The Secret Manager and SendGrid doubles of this test process.
struct Doubles {
    secrets: SecretManager,
    sendgrid: Server,
}

fn doubles() -> &'static Doubles {
    static DOUBLES: OnceLock<Doubles> = OnceLock::new();
    DOUBLES.get_or_init(|| Doubles {
        secrets: SecretManager::start(&[]),
        sendgrid: sendgrid(),
    })
}

/// `method url` to an emulator, authorized as its owner, with `body` as JSON; the answer must be
/// a success and is its JSON (null when it has none).
pub(crate) fn http(method: &str, url: &str, body: Option<Value>) -> Value {
    // One client on one runtime for the whole process: its pooled connections belong to the
    // runtime that opened them, so both live as long as the process.
    static CLIENT: OnceLock<(tokio::runtime::Runtime, reqwest::Client)> = OnceLock::new();
    let (runtime, client) = CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        (runtime, reqwest::Client::new())
    });
    runtime.block_on(async {
        let mut request = client
            .request(method.parse().unwrap(), url)
            .header("Authorization", "Bearer owner");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {url}: {status}\n{text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    })
}

/// The rows of a standard-SQL query in the BigQuery emulator, as JSON objects of strings.
#[track_caller]
pub(crate) fn bigquery(project: &str, sql: &str) -> Vec<BTreeMap<String, Value>> {
    let url = format!("http://{}/bigquery/v2/projects/{project}/queries", emulators().bigquery);
    let answer = http("POST", &url, Some(json!({"query": sql, "useLegacySql": false})));
    assert!(answer.get("errors").is_none(), "{sql}: {answer}");
    let fields: Vec<String> = answer["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    answer["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|row| {
            fields
                .iter()
                .zip(row["f"].as_array().unwrap())
                .map(|(name, cell)| (name.clone(), cell["v"].clone()))
                .collect()
        })
        .collect()
}

/// Runs `program`, a real checker of a format that scripts/test installs, with `args` in the
/// repository; its verdict, and what it said.
pub(crate) fn check_with(program: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run ({e}): scripts/test installs it"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}
