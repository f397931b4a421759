//! Mutated workflow and registry files through load and validation: no panic, no stack overflow, and every
//! problem located (a file, a line and column inside it, one line of message).
//!
//! A seeded mutator of our own rather than proptest: byte-level mutation needs no strategies, a failing case
//! is reproduced from its seed and number, and the dev-dependency tree stays as it is. The number of cases is
//! `CONVEYOR_FUZZ_CASES` (default 2000); `benches/fuzz_definitions.sh` raises it.

use std::fs;
use std::path::Path;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;

const BUNDLED: [&str; 4] = [
    include_str!("../../workflows/daily_grant_pipeline.toml"),
    include_str!("../../workflows/inbox_intake.toml"),
    include_str!("../../workflows/nightly_report.toml"),
    include_str!("../../workflows/release_checks.toml"),
];
const BUNDLED_REGISTRY: &str = include_str!("../../workflows/conveyor.toml");

/// A workflow that uses every option, so that mutations reach every check.
const RICH: &str = r#"id = "Rich"
description = "every option"
overlap = "queue"
catchup = "all"
max_active_runs = 3
timeout = "2h"
jitter = "30s"
keep_runs = 50
on_interrupt = "fail"
[trigger]
type = "schedule"
cron = "*/5 * * * *"
timezone = "Europe/Paris"
[params]
mode = { type = "string", default = "full" }
limit = 10
[on_failure]
run = "echo failed"
[[tasks]]
name = "Ingest"
service = "GrantIngestionService"
retries = 3
retry_delay = "5s"
backoff = 1.5
timeout = "10m"
fallback = ["PolicyService"]
env = { A_B = "1" }
[[tasks]]
name = "Score"
agent = "EligibilityAgent"
when = "size(input.applications) > 0 && params.mode == 'full'"
depends_on = ["Ingest"]
[[tasks]]
name = "Review"
layer = "GovernanceLayer"
depends_on = ["Score"]
when = "input.applications.exists(a, a.score > 0.5)"
"#;

/// Values a mutation may put in place of another: what has broken or could break a loader. Sizes are just
/// past each limit, to keep a case cheap; the fixtures hold the full-size ones (100k parentheses).
fn hostile_values() -> Vec<String> {
    vec![
        format!("\"{}1{}\"", "(".repeat(10_000), ")".repeat(10_000)),
        format!("\"{}\"", "(".repeat(70)),
        format!("\"1{}\"", "+1".repeat(3000)),
        "\"input.a.map(x, x.map(y, y.map(z, z)))\"".into(),
        format!("\"{}1\"", "true ? 1 : ".repeat(150)),
        "\"99999999999d\"".into(),
        "\"18446744073709551615s\"".into(),
        "\"-1s\"".into(),
        "\"*/0 * * * *\"".into(),
        "\"0 0 31 2 *\"".into(),
        "\"* * * * * * * *\"".into(),
        "\"Mars/Olympus\"".into(),
        "\"\0\"".into(),
        "\"a\0b\"".into(),
        "99999999999999999999999999".into(),
        "-9223372036854775808".into(),
        "1e308".into(),
        "nan".into(),
        "-inf".into(),
        "\"\"".into(),
        "\"\\u0000\"".into(),
        "\"line\\nbreak\"".into(),
        "'''multi\nline'''".into(),
        format!("{}1{}", "[".repeat(1000), "]".repeat(1000)),
        format!("{}{}", "{ a = ".repeat(1000), "1 }".repeat(1000)),
        format!("\"{}\"", "x".repeat(5000)),
        "[\"T\", \"T\", \"Ghost\"]".into(),
    ]
}

/// Whole lines a mutation may insert.
fn hostile_lines() -> Vec<String> {
    vec![
        format!("[{}]", vec!["a"; 1000].join(".")),
        "[[tasks]]".into(),
        "[[tasks]]\nname = \"X\"\nrun = \"true\"\ndepends_on = [\"X\"]".into(),
        "[trigger]\ntype = \"event\"\nwatch = \"\"".into(),
        "\0\0\0".into(),
        "when = \"(((\"".into(),
        "[layers.Bad]\nrules = [ { name = \"r\", expr = \"item.(\" } ]\napproval = \"[[[[[[[[[[\"".into(),
        "cron = \"*/0 * * * *\"".into(),
        "timeout = \"99999999999d\"".into(),
        "\u{feff}id = \"BOM\"".into(),
    ]
}

struct Mutator {
    rng: SmallRng,
    values: Vec<String>,
    lines: Vec<String>,
}

impl Mutator {
    fn new(seed: u64) -> Self {
        Mutator { rng: SmallRng::seed_from_u64(seed), values: hostile_values(), lines: hostile_lines() }
    }

    fn mutate(&mut self, text: &str) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        for _ in 0..self.rng.random_range(1..=3) {
            self.mutate_once(&mut bytes);
        }
        bytes
    }

    fn position(&mut self, bytes: &[u8]) -> usize {
        self.rng.random_range(0..=bytes.len())
    }

    fn mutate_once(&mut self, bytes: &mut Vec<u8>) {
        match self.rng.random_range(0..8) {
            0 if !bytes.is_empty() => {
                let at = self.rng.random_range(0..bytes.len());
                bytes[at] = match self.rng.random_range(0..4) {
                    0 => 0,
                    1 => 0xff,
                    2 => bytes[at] ^ (1 << self.rng.random_range(0..8)),
                    _ => *b"[]{}\"'=.,#\n\\".get(self.rng.random_range(0..12)).unwrap(),
                };
            }
            1 => {
                let at = self.position(bytes);
                bytes.truncate(at);
            }
            2 if !bytes.is_empty() => {
                let from = self.rng.random_range(0..bytes.len());
                let to = (from + self.rng.random_range(1..64)).min(bytes.len());
                bytes.drain(from..to);
            }
            3 if !bytes.is_empty() => {
                let from = self.rng.random_range(0..bytes.len());
                let to = (from + self.rng.random_range(1..200)).min(bytes.len());
                let copy = bytes[from..to].to_vec();
                let at = self.position(bytes);
                bytes.splice(at..at, copy);
            }
            4 | 5 => self.replace_a_value(bytes),
            _ => {
                // A hostile line at the start of some line, or at the end.
                let line = self.lines[self.rng.random_range(0..self.lines.len())].clone();
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
                    .collect();
                let at = starts[self.rng.random_range(0..starts.len())];
                bytes.splice(at..at, format!("{line}\n").into_bytes());
            }
        }
    }

    /// The value after some `=` (to the end of its line) replaced by a hostile one.
    fn replace_a_value(&mut self, bytes: &mut Vec<u8>) {
        let equals: Vec<usize> = bytes.iter().enumerate().filter(|(_, b)| **b == b'=').map(|(i, _)| i).collect();
        if equals.is_empty() {
            return;
        }
        let at = equals[self.rng.random_range(0..equals.len())] + 1;
        let end = bytes[at..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |n| at + n);
        let value = self.values[self.rng.random_range(0..self.values.len())].clone();
        bytes.splice(at..end, format!(" {value}").into_bytes());
    }
}

/// Every problem names one of the files loaded, a line and column inside it, and a one-line message.
fn assert_located(catalog: &Catalog, files: &[(&Path, &[u8])], case: &str) {
    for problem in catalog.problems() {
        let Some((_, bytes)) = files.iter().find(|(path, _)| *path == problem.file) else {
            panic!("{case}: a problem about a file that was not loaded: {problem}");
        };
        let lines = bytes.iter().filter(|b| **b == b'\n').count() + 1;
        assert!(problem.line >= 1 && problem.line <= lines, "{case}: line out of the file ({lines} lines): {problem}");
        assert!(problem.column >= 1, "{case}: column 0: {problem}");
        assert!(
            !problem.message.is_empty() && !problem.message.contains('\n'),
            "{case}: not a one-line message: {problem:?}"
        );
    }
}

fn cases() -> usize {
    std::env::var("CONVEYOR_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000)
}

fn seed() -> u64 {
    std::env::var("CONVEYOR_FUZZ_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or(20261126)
}

#[test]
fn mutated_workflows_and_registries_load_without_panicking_and_every_problem_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let (registry_path, workflow_path) = (dir.path().join(REGISTRY_FILE), dir.path().join("w.toml"));
    // Where the case being tried is written first, when set: a stack overflow aborts before any report.
    let dump = std::env::var_os("CONVEYOR_FUZZ_DUMP");
    let seeds: Vec<&str> = BUNDLED.iter().copied().chain([RICH]).collect();
    let (cases, seed) = (cases(), seed());
    let mut mutator = Mutator::new(seed);
    let mut broken = 0;
    for case in 0..cases {
        let workflow = seeds[mutator.rng.random_range(0..seeds.len())];
        let workflow = mutator.mutate(workflow);
        let registry = if mutator.rng.random_bool(0.3) {
            mutator.mutate(BUNDLED_REGISTRY)
        } else {
            BUNDLED_REGISTRY.as_bytes().to_vec()
        };
        if let Some(dump) = &dump {
            fs::write(Path::new(dump).with_extension("workflow.toml"), &workflow).unwrap();
            fs::write(Path::new(dump).with_extension("registry.toml"), &registry).unwrap();
        }
        fs::write(&registry_path, &registry).unwrap();
        fs::write(&workflow_path, &workflow).unwrap();
        let catalog = load_folder(dir.path());
        let label = format!("seed {seed}, case {case}");
        assert_located(&catalog, &[(&registry_path, &registry), (&workflow_path, &workflow)], &label);
        broken += usize::from(catalog.problem_count() > 0);
    }
    // Most mutations break something: a fuzzer whose cases all pass would be testing nothing.
    assert!(broken * 2 > cases, "only {broken} of {cases} cases had a problem");
}

/// The hostile files found so far, each loaded as the workflow (or, named `*.registry.toml`, as the registry)
/// beside the bundled registry.
#[test]
fn every_hostile_fixture_loads_without_panicking_and_its_problems_are_located() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile");
    let mut names: Vec<_> = fs::read_dir(&fixtures).unwrap().map(|entry| entry.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 8, "the fixtures are missing: {}", fixtures.display());
    for fixture in names {
        let bytes = fs::read(&fixture).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let is_registry = fixture.to_string_lossy().ends_with(".registry.toml");
        let (registry, workflow) = if is_registry {
            (bytes.clone(), BUNDLED[0].as_bytes().to_vec())
        } else {
            (BUNDLED_REGISTRY.as_bytes().to_vec(), bytes.clone())
        };
        let (registry_path, workflow_path) = (dir.path().join(REGISTRY_FILE), dir.path().join("w.toml"));
        fs::write(&registry_path, &registry).unwrap();
        fs::write(&workflow_path, &workflow).unwrap();
        let catalog = load_folder(dir.path());
        let label = fixture.display().to_string();
        assert!(catalog.problem_count() > 0, "{label}: expected at least one problem");
        assert_located(&catalog, &[(&registry_path, &registry), (&workflow_path, &workflow)], &label);
    }
}
