//! Golden tests: every program under `fixtures/programs/` is evaluated three ways (the
//! incremental engine through its API, the reference evaluator, and the `vigil run` command
//! line with one and two workers) and each `.output` relation is compared with
//! `expected/<R>.csv` as a set of lines. Every program under `fixtures/errors/` must fail to
//! load with the diagnostics its `// error: LINE:COL: text` header lines name; the whole
//! rendered diagnostics are also compared with `<name>.stderr` (`UPDATE_EXPECT=1` rewrites
//! those files, for a person to review).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_engine::{Engine, Options, Value, io, reference};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn program_cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("programs"))
        .expect("fixtures/programs exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.join("prog.dl").exists())
        .collect();
    cases.sort();
    cases
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

/// `expected/<R>.csv` of a case, by relation name.
fn expected_outputs(case: &Path) -> HashMap<String, BTreeSet<String>> {
    let mut expected = HashMap::new();
    if let Ok(entries) = std::fs::read_dir(case.join("expected")) {
        for entry in entries {
            let path = entry.expect("readable directory").path();
            if path.extension().is_some_and(|e| e == "csv") {
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                expected.insert(name, lines(&std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    expected
}

fn format(tuples: &[Vec<Value>]) -> BTreeSet<String> {
    lines(&io::format_tuples(tuples, "\t"))
}

/// Compares what a run produced with what is expected; returns the differences.
fn compare(case: &Path, how: &str, produced: &HashMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut failures = Vec::new();
    for (relation, expected) in expected_outputs(case) {
        let actual = produced.get(&relation).cloned().unwrap_or_default();
        if actual != expected {
            let missing: Vec<_> = expected.difference(&actual).collect();
            let extra: Vec<_> = actual.difference(&expected).collect();
            failures.push(format!(
                "{} ({how}): `{relation}` differs; missing {missing:?}, unexpected {extra:?}",
                case.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    failures
}

fn check_failures(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!("{} failure(s):\n{}", failures.len(), failures.join("\n"));
    }
}

#[test]
fn golden_programs_through_the_engine_and_the_reference_evaluator() {
    let cases = program_cases();
    assert!(
        cases.len() >= 60,
        "expected at least 60 golden programs, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let program = match vigil_engine::compile_file(&case.join("prog.dl")) {
            Ok(program) => program,
            Err(diagnostics) => {
                failures.push(format!("{name}: does not load:\n{diagnostics}"));
                continue;
            }
        };
        // Inputs from the facts directory.
        let mut inputs: Vec<(usize, Vec<Vec<Value>>)> = Vec::new();
        let mut ok = true;
        for (id, relation) in program.relations.iter().enumerate() {
            if relation.input.is_some() {
                match io::read_facts(relation, &case.join("facts")) {
                    Ok(tuples) => inputs.push((id, tuples)),
                    Err(error) => {
                        failures.push(format!("{name}: {error}"));
                        ok = false;
                    }
                }
            }
        }
        if !ok {
            continue;
        }

        // The reference evaluator.
        let reference_inputs: HashMap<usize, reference::Tuples> = inputs
            .iter()
            .map(|(id, tuples)| (*id, tuples.iter().cloned().collect()))
            .collect();
        let results = reference::evaluate(&program, &reference_inputs);
        let produced: HashMap<String, BTreeSet<String>> = program
            .relations
            .iter()
            .enumerate()
            .map(|(id, relation)| {
                (
                    relation.name.clone(),
                    format(&results[id].iter().cloned().collect::<Vec<_>>()),
                )
            })
            .collect();
        failures.extend(compare(case, "reference", &produced));

        // The engine, loading everything in one transaction.
        let names: Vec<String> = program.relations.iter().map(|r| r.name.clone()).collect();
        let mut engine = match Engine::new(program, Options::default()) {
            Ok(engine) => engine,
            Err(error) => {
                failures.push(format!("{name}: the engine does not start: {error}"));
                continue;
            }
        };
        let mut transaction = engine.transaction();
        for (id, tuples) in &inputs {
            for tuple in tuples {
                transaction
                    .insert(&names[*id], tuple)
                    .expect("facts files are typed");
            }
        }
        if let Err(error) = transaction.commit() {
            failures.push(format!("{name}: commit failed: {error}"));
            continue;
        }
        let produced: HashMap<String, BTreeSet<String>> = names
            .iter()
            .map(|relation| {
                (
                    relation.clone(),
                    format(&engine.read(relation, &[]).unwrap()),
                )
            })
            .collect();
        failures.extend(compare(case, "engine", &produced));
    }
    check_failures(failures);
}

fn run_cli(
    case: &Path,
    extra: &[&str],
) -> Result<(HashMap<String, BTreeSet<String>>, String), String> {
    let output_dir = std::env::temp_dir().join(format!(
        "vigil-golden-{}-{}-{}",
        std::process::id(),
        case.file_name().unwrap().to_string_lossy(),
        extra.join("")
    ));
    let _ = std::fs::remove_dir_all(&output_dir);
    std::fs::create_dir_all(&output_dir).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("run")
        .arg(case.join("prog.dl"))
        .arg("-F")
        .arg(case.join("facts"))
        .arg("-D")
        .arg(&output_dir)
        .args(extra)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&output_dir);
        return Err(String::from_utf8_lossy(&output.stderr).to_string());
    }
    let mut produced = HashMap::new();
    for entry in std::fs::read_dir(&output_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        produced.insert(name, lines(&std::fs::read_to_string(&path).unwrap()));
    }
    let _ = std::fs::remove_dir_all(&output_dir);
    Ok((
        produced,
        String::from_utf8_lossy(&output.stdout).to_string(),
    ))
}

#[test]
fn golden_programs_through_the_command_line() {
    let mut failures = Vec::new();
    for case in program_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        for extra in [&[][..], &["-j", "2"][..]] {
            match run_cli(&case, extra) {
                Ok((produced, stdout)) => {
                    // Outputs to stdout (IO=stdout) are checked through expected/stdout.txt.
                    failures.extend(compare(
                        &case,
                        &format!("vigil run {}", extra.join(" ")),
                        &produced,
                    ));
                    if let Ok(expected) = std::fs::read_to_string(case.join("expected/stdout.txt"))
                        && lines(&expected) != lines(&stdout)
                    {
                        failures.push(format!(
                            "{name} (vigil run): stdout differs:\n{stdout}\nexpected:\n{expected}"
                        ));
                    }
                }
                Err(stderr) => failures.push(format!(
                    "{name} (vigil run {}): failed: {stderr}",
                    extra.join(" ")
                )),
            }
        }
    }
    check_failures(failures);
}

#[test]
fn wrong_programs_report_every_expected_diagnostic() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("errors"))
        .expect("fixtures/errors exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "dl"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 25,
        "expected at least 25 wrong programs, found {}",
        cases.len()
    );
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&case).unwrap();
        let expectations: Vec<(usize, usize, String)> = text
            .lines()
            .filter_map(|line| line.trim().strip_prefix("// error:"))
            .map(|rest| {
                let mut parts = rest.trim().splitn(3, ':');
                let line: usize = parts
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .expect("LINE in an error header");
                let column: usize = parts
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .expect("COL in an error header");
                (
                    line,
                    column,
                    parts.next().unwrap_or("").trim().to_lowercase(),
                )
            })
            .collect();
        assert!(!expectations.is_empty(), "{name} has no `// error:` header");
        let diagnostics = match vigil_engine::compile_file(&case) {
            Ok(_) => {
                failures.push(format!("{name}: loads without errors"));
                continue;
            }
            Err(diagnostics) => diagnostics,
        };
        let found: Vec<(usize, usize, String)> = diagnostics
            .list
            .iter()
            .filter(|d| d.is_error())
            .map(|d| {
                let file = diagnostics.sources.file(d.span.file);
                let (line, column) = file.line_col(d.span.start as usize);
                (line, column, d.message.to_lowercase())
            })
            .collect();
        for (line, column, substring) in &expectations {
            if !found.iter().any(|(l, c, message)| {
                l == line && c == column && message.contains(substring.as_str())
            }) {
                failures.push(format!(
                    "{name}: no error at {line}:{column} containing {substring:?}; found:\n{}",
                    found
                        .iter()
                        .map(|(l, c, m)| format!("  {l}:{c}: {m}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
        // The rendered diagnostics, with paths relative to the fixtures.
        let rendered = diagnostics
            .to_string()
            .replace(&fixtures().display().to_string(), "fixtures");
        let snapshot = case.with_extension("stderr");
        if update {
            std::fs::write(&snapshot, format!("{rendered}\n")).unwrap();
        } else if let Ok(expected) = std::fs::read_to_string(&snapshot) {
            if expected.trim_end() != rendered.trim_end() {
                failures.push(format!(
                    "{name}: rendered diagnostics differ from {}:\n{rendered}",
                    snapshot.display()
                ));
            }
        } else {
            failures.push(format!(
                "{name}: no {} (run with UPDATE_EXPECT=1 and review it)",
                snapshot.display()
            ));
        }
    }
    check_failures(failures);
}
