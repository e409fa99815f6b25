//! Bad input never panics: truncated and mutated product files always give diagnostics (or a
//! valid product that plans), through the library and through the binary.
//!
//! The library-level harness runs `DPF_FUZZ_MUTANTS` mutants (default 10,000) on every core, and
//! stops early after `DPF_FUZZ_SECONDS` (default 60), so CI spends a bounded time on it; a long
//! run is `DPF_FUZZ_MUTANTS=1000000 cargo nextest run --release -E 'test(mutated_files)'`.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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
    ":",
    "-",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "\t",
    "\n",
    "&a",
    "*a",
    "!!int ",
    "%",
    "|",
    ">",
    "#",
    "${",
    "}",
    "  ",
    ",",
    "?",
    "@",
    "`",
    "é",
    "\u{feff}",
    "0x",
    ".inf",
    "~",
    "<<: *a",
    "\r",
    "\r\n",
    "{{ ds }}",
    "&b [*a, *a, *a]",
];

fn seeds() -> Vec<String> {
    let mut seeds: Vec<String> = [
        "products/weather_data_product.yaml",
        "products/sales_data_product.yaml",
        "tests/corpus/valid/graph.yaml",
        "tests/corpus/invalid/many-problems.yaml",
        "tests/corpus/invalid/E003-alias-bomb.yaml",
        "tests/corpus/invalid/E002-duplicate-key-cr-line-ends.yaml",
    ]
    .iter()
    .map(|p| fs::read_to_string(root().join(p)).unwrap())
    .collect();
    let weather = seeds[0].clone();
    seeds.push(format!("\u{feff}{weather}"));
    seeds.push(weather.replace('\n', "\r"));
    seeds.push(weather.replace('\n', "\r\n"));
    seeds.push(format!("name: deep\ntasks: {}{}\n", "[".repeat(60), "]".repeat(60)));
    seeds
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

/// A number from the environment, else `default`.
fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Every mutant yields either a typed product or at least one error, with spans inside the file.
#[test]
fn mutated_files_give_diagnostics_never_panics() {
    let (mutants, seconds) = (setting("DPF_FUZZ_MUTANTS", 10_000), setting("DPF_FUZZ_SECONDS", 60));
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let started = Instant::now();
    let seeds = seeds();
    let (checked, invalid) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for worker in 0..workers {
            let (seeds, checked, invalid) = (&seeds, &checked, &invalid);
            scope.spawn(move || {
                let mut rng = Rng(0x5eed_1234_abcd_0001 ^ ((worker as u64 + 1) << 40));
                for round in (worker..mutants).step_by(workers) {
                    if round.is_multiple_of(256) && Instant::now() > deadline {
                        return;
                    }
                    if !check_mutant(&mut rng, &seeds[round % seeds.len()], round) {
                        invalid.fetch_add(1, Ordering::Relaxed);
                    }
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let (checked, invalid) = (checked.into_inner(), invalid.into_inner());
    eprintln!(
        "{checked} mutated product files checked in {:.1} s on {workers} threads, {invalid} of them invalid",
        started.elapsed().as_secs_f64()
    );
    assert!(checked >= mutants.min(3000), "only {checked} mutants in {seconds} s");
    assert!(
        invalid > checked / 3,
        "the mutations should mostly break the files ({invalid} of {checked})"
    );
}

/// Checks one mutant of `seed`; returns whether it was a valid product.
fn check_mutant(rng: &mut Rng, seed: &str, round: usize) -> bool {
    let text = if round.is_multiple_of(10) {
        // Plain truncation at every kind of position.
        let cut = rng.below(seed.len());
        seed.char_indices()
            .map(|(i, _)| i)
            .take_while(|&i| i <= cut)
            .last()
            .map_or("", |i| &seed[..i])
            .to_owned()
    } else {
        mutate(rng, seed)
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
                logical: None,
                secrets: dpf::target::SecretSource::Env,
                cursors: dpf::plan::Cursors::Unknown,
                alerts: dpf::target::AlertSink::Deliver,
                shard: None,
            };
            let plan = dpf::plan::build(product, &context);
            assert_eq!(plan.steps.len(), product.tasks.len());
            true
        }
        None => {
            assert!(
                checked.has_errors(),
                "no product and no error in round {round}:\n{text}"
            );
            false
        }
    }
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
        if i.is_multiple_of(20) {
            // Bytes that are not UTF-8 (Latin-1 text, a stray byte) are found by the binary's reader.
            let mut bytes = text.into_bytes();
            bytes.insert(rng.below(bytes.len() + 1), 0xe9);
            fs::write(&path, bytes).unwrap();
            expected_invalid.push(path);
            continue;
        }
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
