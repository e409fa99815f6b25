//! What the integration tests share: the real binary run with a cleared environment (everything
//! reported on failure), a workspace with a product and a data dir, the receipt's parts, and one
//! product builder with its records.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

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
    pub(crate) fn terminate(self) -> Run {
        self.signal("TERM");
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

    pub(crate) fn query(&self, sql: &str) -> Vec<Value> {
        let run = dpf()
            .args(["query", sql, "--format", "json", "--data-dir"])
            .args([self.data()])
            .expect(0);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}\n{run}"))
    }
}

pub(crate) fn receipt(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("no receipt on stdout: {e}\n{run}"))
}

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

/// `items_product`: a task `extract_items` that extracts from `url`/items with `params` (YAML lines
/// indented for `params:`), then `tasks` (YAML list items), retried `retries` times at once.
pub(crate) fn items_product(url: &str, retries: u32, params: &str, tasks: &str) -> String {
    format!(
        r#"name: items_product
retries: {retries}
retry_delay_minutes: 0.0005
tasks:
  - id: extract_items
    function: extract_http
    params:
      url: {url}/items
{params}
{tasks}"#
    )
}

/// `count` records with ids from `first`.
pub(crate) fn records(first: usize, count: usize) -> Vec<Value> {
    (first..first + count)
        .map(|i| json!({"id": i, "name": format!("item {i}"), "price": i as f64 * 1.5}))
        .collect()
}
