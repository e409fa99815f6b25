//! Runs the real binary with a cleared environment and reports everything on failure.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root, where `products/` and `tests/corpus/` live.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A secret value that must never appear in any output: every invocation's stdout and stderr are
/// searched for it. Tests use it wherever a secret can go.
pub const CANARY: &str = "canary-5e3b9d1c-secret-never-printed";

/// A `dpf` invocation being set up.
pub struct Dpf {
    command: Command,
    shown: Vec<String>,
}

/// `dpf` run from the repository root with an empty environment.
pub fn dpf() -> Dpf {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dpf"));
    command.env_clear().current_dir(root());
    Dpf {
        command,
        shown: vec!["dpf".into()],
    }
}

impl Dpf {
    pub fn args<I, S>(mut self, args: I) -> Self
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

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.shown.insert(0, format!("{key}={value}"));
        self.command.env(key, value);
        self
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// Runs and checks the exit code; on a mismatch prints the command, stdout and stderr.
    pub fn expect(mut self, code: i32) -> Run {
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
pub struct Run {
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
    pub fn spawn(mut self) -> Child {
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
pub struct Child {
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
    pub fn terminate(self) -> Run {
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
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
