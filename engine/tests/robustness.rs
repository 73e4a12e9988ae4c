//! Loading never panics, whatever the text: every golden program, cut short at many places and
//! with single characters deleted or replaced, either loads or yields diagnostics that render.

use std::path::Path;

fn programs() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/programs");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path().join("prog.dl");
        if let Ok(text) = std::fs::read_to_string(path) {
            texts.push(text);
        }
    }
    texts.sort();
    texts
}

fn load(text: &str) {
    match vigil_engine::compile_source("mutant.dl", text) {
        Err(diagnostics) => {
            assert!(!diagnostics.list.is_empty());
            let rendered = diagnostics.to_string();
            assert!(rendered.contains("mutant.dl:"), "{rendered}");
        }
        // A program that loads can also be planned.
        Ok(program) => {
            let interner = vigil_engine::value::Interner::new();
            vigil_engine::dataflow::plan::plan(&program, &interner)
                .expect("a checked program plans");
        }
    }
}

#[test]
fn mutated_programs_never_panic() {
    let replacements = [
        '(', ')', '.', ',', '!', '_', '"', ':', '1', 'x', ' ', '{', '}', ';', '=',
    ];
    let mut cases = 0;
    for (index, text) in programs().iter().enumerate() {
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        // A deterministic spread of positions per program.
        for (step, &position) in boundaries
            .iter()
            .enumerate()
            .filter(|(step, _)| (step + index) % 7 == 0)
        {
            load(&text[..position]);
            if position < text.len() {
                let next = boundaries[step + 1];
                let mut deleted = text.clone();
                deleted.replace_range(position..next, "");
                load(&deleted);
                let mut replaced = text.clone();
                replaced.replace_range(
                    position..next,
                    &replacements[step % replacements.len()].to_string(),
                );
                load(&replaced);
            }
            cases += 3;
        }
    }
    assert!(cases > 1000, "only {cases} mutants");
}
