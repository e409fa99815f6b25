//! Bad input never panics: truncated and mutated product files always give diagnostics (or a
//! valid product), through the library and through the binary.

use std::fs;

use dpf::spec::SourceFile;
use dpf::validate::check_source;
use serde_json::Value;

use crate::util::{dpf, root};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const NOISE: &[&str] = &[
    ":", "-", "- ", "[", "]", "{", "}", "\"", "'", "\t", "\n", "&a", "*a", "!!int ", "%", "|", ">", "#", "${", "}",
    "  ", ",", "?", "@", "`", "é", "\u{feff}", "0x", ".inf", "~", "<<: *a",
];

fn seeds() -> Vec<String> {
    [
        "products/weather_data_product.yaml",
        "products/sales_data_product.yaml",
        "tests/corpus/valid/graph.yaml",
    ]
    .iter()
    .map(|p| fs::read_to_string(root().join(p)).unwrap())
    .collect()
}

fn mutate(rng: &mut Rng, seed: &str) -> String {
    let mut text: Vec<char> = seed.chars().collect();
    for _ in 0..=rng.below(3) {
        let at = rng.below(text.len() + 1);
        match rng.below(6) {
            0 => text.truncate(at),
            1 if at < text.len() => {
                let end = (at + 1 + rng.below(12)).min(text.len());
                text.drain(at..end);
            }
            2 => {
                let noise = NOISE[rng.below(NOISE.len())];
                text.splice(at..at, noise.chars());
            }
            3 => {
                // Duplicate a line (duplicate keys, repeated tasks).
                let line_start = text[..at].iter().rposition(|&c| c == '\n').map_or(0, |i| i + 1);
                let line_end = text[at..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(text.len(), |i| at + i + 1);
                let line: Vec<char> = text[line_start..line_end].to_vec();
                text.splice(line_start..line_start, line);
            }
            4 => {
                // Shift a line's indentation.
                let line_start = text[..at].iter().rposition(|&c| c == '\n').map_or(0, |i| i + 1);
                text.splice(line_start..line_start, "  ".chars());
            }
            _ => {
                let replacement = ["tasks", "params", "id", "function", "query", "input", "key"][rng.below(7)];
                let word_end = text[at..]
                    .iter()
                    .position(|c| !c.is_alphanumeric() && *c != '_')
                    .map_or(text.len(), |i| at + i);
                text.splice(at..word_end, replacement.chars());
            }
        }
    }
    text.into_iter().collect()
}

/// Every mutant yields either a typed product or at least one error, with spans inside the file.
#[test]
fn mutated_files_give_diagnostics_never_panics() {
    let seeds = seeds();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut invalid = 0;
    for round in 0..3000 {
        let seed = &seeds[round % seeds.len()];
        let text = if round % 10 == 0 {
            // Plain truncation at every kind of position.
            let cut = rng.below(seed.len());
            seed.char_indices()
                .map(|(i, _)| i)
                .take_while(|&i| i <= cut)
                .last()
                .map_or("", |i| &seed[..i])
                .to_owned()
        } else {
            mutate(&mut rng, seed)
        };
        let checked = check_source(SourceFile::new("mutant.yaml", text.clone()));
        for d in &checked.diagnostics {
            assert!(
                d.span.start <= d.span.end
                    && d.span.end <= text.len()
                    && text.is_char_boundary(d.span.start)
                    && text.is_char_boundary(d.span.end),
                "span {:?} out of bounds in round {round}:\n{text}",
                d.span
            );
        }
        match &checked.product {
            Some(product) => {
                assert!(!checked.has_errors());
                // A valid mutant must also plan.
                let context = dpf::plan::Context {
                    file: std::path::Path::new("mutant.yaml"),
                    target: dpf::target::Target::Local,
                    data_dir: std::path::Path::new(".dpf"),
                    now: chrono::Utc::now(),
                };
                let plan = dpf::plan::build(product, &context);
                assert_eq!(plan.steps.len(), product.tasks.len());
            }
            None => {
                assert!(
                    checked.has_errors(),
                    "no product and no error in round {round}:\n{text}"
                );
                invalid += 1;
            }
        }
    }
    assert!(
        invalid > 1000,
        "the mutations should mostly break the files ({invalid})"
    );
}

/// The binary over a folder of mutants: exit 1, one JSON report, every invalid file named in it.
#[test]
fn binary_reports_every_mutant() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = seeds();
    let mut rng = Rng(0xbad_c0de_0002);
    let mut expected_invalid = Vec::new();
    for i in 0..300 {
        let text = mutate(&mut rng, &seeds[i % seeds.len()]);
        // Unique names, so the only cross-file check (duplicate product names) stays out of the way.
        let text = text.replacen("_data_product", &format!("_mutant_{i}"), 1);
        let path = dir.path().join(format!("m{i:03}.yaml"));
        fs::write(&path, &text).unwrap();
        if check_source(SourceFile::new(&path, text)).has_errors() {
            expected_invalid.push(path);
        }
    }
    let run = dpf()
        .args(["validate", "--format", "json"])
        .args([dir.path()])
        .expect(1);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let files: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .map(|d| d["file"].as_str().unwrap())
        .collect();
    for path in &expected_invalid {
        assert!(
            files.contains(&path.to_str().unwrap()),
            "{} missing from the report",
            path.display()
        );
    }
    assert!(report["summary"]["invalid"].as_u64().unwrap() as usize >= expected_invalid.len());
}
