//! `dpf validate`: one product file per check, with the rendered diagnostics snapshotted.

use std::fs;

use serde_json::Value;

use crate::util::{dpf, root};

/// Every file (or folder) in the invalid corpus is named after the code it must produce.
#[test]
fn each_check_reports_its_code_at_the_offending_node() {
    let mut entries: Vec<_> = fs::read_dir(root().join("tests/corpus/invalid"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 20, "the corpus has one file per check");
    for path in entries {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let relative = path.strip_prefix(root()).unwrap().to_owned();
        let warning_only = stem.starts_with('W');
        let run = dpf()
            .args(["validate".as_ref(), relative.as_os_str()])
            .args(["--color", "never"])
            .expect(if warning_only { 0 } else { 1 });
        if let Some(code) = stem
            .split('-')
            .next()
            .filter(|c| c.len() == 4 && c[1..].bytes().all(|b| b.is_ascii_digit()))
        {
            assert!(
                run.stdout.contains(&format!("[{code}]")),
                "{stem} must report {code}\n{run}"
            );
        }
        insta::assert_snapshot!(stem, run.stdout);
    }
}

#[test]
fn valid_products_pass() {
    let run = dpf().args(["validate"]).expect(0);
    assert_eq!(run.stdout, "3 product files valid\n");
    let run = dpf().args(["validate", "tests/corpus/valid", "products"]).expect(0);
    assert!(run.stdout.ends_with("product files valid\n"), "{run}");
}

/// `auth` and `pagination` take only the keys of their `type`; any other is reported where it is written.
#[test]
fn auth_and_pagination_take_only_the_keys_of_their_type() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typed.yaml");
    let product = [
        "name: typed_keys",
        "tasks:",
        "  - id: pull",
        "    function: extract_http",
        "    params:",
        "      url: https://api.example.com/items",
        "      auth: {type: basic, username: u, password: p, token: t}",
        "      pagination: {type: link_header, cursor_path: x}",
    ]
    .join("\n");
    fs::write(&file, product).unwrap();
    let run = dpf()
        .args(["validate".as_ref(), file.as_os_str()])
        .args(["--format", "json"])
        .expect(1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let found: Vec<(u64, u64, &str, &str)> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
                d["code"].as_str().unwrap(),
                d["message"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                7,
                53,
                "E104",
                "key `token` does not apply to `type: basic` in `params.auth` of task `pull`"
            ),
            (
                8,
                39,
                "E104",
                "key `cursor_path` does not apply to `type: link_header` in `params.pagination` of task `pull`"
            ),
        ],
        "{run}"
    );
    // The example products keep their YAML.
    let run = dpf().args(["validate", "products"]).expect(0);
    assert!(run.stdout.ends_with("product files valid\n"), "{run}");
}

#[test]
fn warnings_fail_only_when_denied() {
    let file = "tests/corpus/invalid/W300-possible-credential.yaml";
    dpf().args(["validate", file]).expect(0);
    dpf().args(["validate", file, "--deny-warnings"]).expect(1);
}

#[test]
fn json_output_has_stable_fields_and_exact_positions() {
    let run = dpf()
        .args(["validate", "tests/corpus/invalid", "--format", "json"])
        .expect(1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["version"], 1);
    let diagnostics = report["diagnostics"].as_array().unwrap();
    assert_eq!(
        report["summary"]["errors"].as_u64().unwrap() as usize
            + report["summary"]["warnings"].as_u64().unwrap() as usize,
        diagnostics.len()
    );
    for d in diagnostics {
        for field in [
            "file",
            "line",
            "column",
            "end_line",
            "end_column",
            "severity",
            "code",
            "name",
            "message",
        ] {
            assert!(!d[field].is_null(), "{field} missing in {d}");
        }
    }
    // The position is the offending YAML node's, checked against the file itself.
    let sql = diagnostics
        .iter()
        .find(|d| d["code"] == "E206")
        .expect("an invalid-sql diagnostic");
    let text = fs::read_to_string(root().join(sql["file"].as_str().unwrap())).unwrap();
    let line = text.lines().nth(sql["line"].as_u64().unwrap() as usize - 1).unwrap();
    let column = sql["column"].as_u64().unwrap() as usize;
    assert!(
        line.chars().nth(column - 1).is_some_and(|c| !c.is_whitespace()),
        "{line:?} at {column}"
    );
}

#[test]
fn github_annotations_point_at_file_and_line() {
    let run = dpf()
        .args([
            "validate",
            "tests/corpus/invalid/E104-unknown-key.yaml",
            "--format",
            "github",
        ])
        .expect(1);
    let first = run.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("::error file=tests/corpus/invalid/E104-unknown-key.yaml,line="),
        "{first}"
    );
    assert!(first.contains("title=E104 unknown-key::unknown key"), "{first}");
}

#[test]
fn usage_errors_exit_2() {
    let run = dpf().args(["validate", "no/such/folder"]).expect(2);
    assert!(run.stderr.contains("error: `no/such/folder` does not exist"), "{run}");
    dpf().args(["validate", "--format", "xml"]).expect(2);
    dpf().args(["frobnicate"]).expect(2);
    let empty = tempfile::tempdir().unwrap();
    let run = dpf().args(["validate", "."]).current_dir(empty.path()).expect(2);
    assert!(run.stderr.contains("no product files"), "{run}");
}

#[test]
fn schema_prints_the_committed_file() {
    let run = dpf().args(["schema"]).expect(0);
    let committed = fs::read_to_string(root().join("schemas/data_product.schema.json")).unwrap();
    assert_eq!(run.stdout, committed);
    let _: Value = serde_json::from_str(&run.stdout).unwrap();
}

#[test]
fn version_is_printed() {
    let run = dpf().args(["--version"]).expect(0);
    assert_eq!(run.stdout, format!("dpf {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn completions_and_the_manual_page_are_read_by_bash_and_man() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dpf.bash");
    std::fs::write(&script, dpf().args(["completions", "bash"]).expect(0).stdout).unwrap();
    // bash completes `dpf pl` to `plan` with the script loaded.
    let completed = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}'; COMP_WORDS=(dpf pl); COMP_CWORD=1; COMP_LINE='dpf pl'; COMP_POINT=6; \
             _dpf dpf pl dpf; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&completed.stdout);
    assert!(
        completed.status.success() && words.split_whitespace().any(|w| w == "plan"),
        "{words}"
    );
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        assert!(
            !dpf().args(["completions", shell]).expect(0).stdout.is_empty(),
            "{shell}"
        );
    }

    let page = dir.path().join("dpf.1");
    std::fs::write(&page, dpf().args(["man"]).expect(0).stdout).unwrap();
    let shown = std::process::Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "100")
        .output()
        .expect("man runs");
    let text = String::from_utf8_lossy(&shown.stdout);
    let warnings = String::from_utf8_lossy(&shown.stderr);
    assert!(shown.status.success() && warnings.trim().is_empty(), "{warnings}");
    assert!(text.contains("SUBCOMMANDS") && text.contains("dpf-validate"), "{text}");
}
