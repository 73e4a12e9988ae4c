//! Tab completion for the REPL: command names, relation names where an atom or a relation is
//! expected, and file names after `.load` and `.facts`.

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// The dot commands, with the space that precedes an argument where they take one.
const COMMANDS: [&str; 11] = [
    ".changes ",
    ".decls",
    ".dump ",
    ".facts ",
    ".help",
    ".load ",
    ".quit",
    ".rules ",
    ".size ",
    ".tick ",
    ".time",
];

/// Words that start a command.
const KEYWORDS: [&str; 5] = ["begin", "commit", "rollback", "whatif ", "why "];

/// What comes before a word when the word is an atom's relation name.
const BEFORE_ATOM: [&str; 6] = ["?-", "+", "-", "why", "not", "--json"];

/// What comes before a word when the word names a relation on its own.
const BEFORE_RELATION: [&str; 3] = [".dump", ".size", ".rules"];

/// The completer the line editor calls; it knows the relations of the loaded program.
pub struct ReplHelper {
    relations: Vec<String>,
    files: FilenameCompleter,
}

impl ReplHelper {
    pub fn new(relations: Vec<String>) -> ReplHelper {
        ReplHelper {
            relations,
            files: FilenameCompleter::new(),
        }
    }

    /// Replaces the relation names, after `.load`.
    pub fn set_relations(&mut self, relations: Vec<String>) {
        self.relations = relations;
    }

    /// The candidates for the word that ends at the cursor, which starts at `start`.
    fn candidates(&self, before: &str, start: usize) -> Vec<Pair> {
        let word = &before[start..];
        let prefix = before[..start].trim_end();
        let open = before[..start].matches('(').count() > before[..start].matches(')').count();
        if open {
            return Vec::new();
        }
        let relations = |suffix: &str| -> Vec<Pair> {
            self.relations
                .iter()
                .filter(|name| name.starts_with(word))
                .map(|name| Pair {
                    display: name.clone(),
                    replacement: format!("{name}{suffix}"),
                })
                .collect()
        };
        if BEFORE_RELATION.contains(&prefix) {
            return relations("");
        }
        let mut candidates =
            if prefix.is_empty() || BEFORE_ATOM.iter().any(|before| prefix.ends_with(before)) {
                relations("(")
            } else {
                Vec::new()
            };
        if prefix.is_empty() {
            candidates.extend(
                KEYWORDS
                    .iter()
                    .filter(|keyword| keyword.starts_with(word))
                    .map(|keyword| Pair {
                        display: keyword.trim_end().to_string(),
                        replacement: keyword.to_string(),
                    }),
            );
        }
        candidates.sort_by(|a, b| a.display.cmp(&b.display));
        candidates
    }
}

fn is_word(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == '?'
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        context: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        if trimmed.starts_with(".load ") || trimmed.starts_with(".facts ") {
            return self.files.complete(line, pos, context);
        }
        let start = before
            .char_indices()
            .rev()
            .find(|&(_, character)| !is_word(character))
            .map_or(0, |(index, character)| index + character.len_utf8());
        if before[..start].trim_start() == "." {
            let typed = &before[start - 1..];
            let commands = COMMANDS
                .iter()
                .filter(|command| command.starts_with(typed))
                .map(|command| Pair {
                    display: command.trim_end().to_string(),
                    replacement: command.to_string(),
                })
                .collect();
            return Ok((start - 1, commands));
        }
        Ok((start, self.candidates(before, start)))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::DefaultHistory;

    fn complete(line: &str) -> (usize, Vec<String>) {
        let helper = ReplHelper::new(vec![
            "edge".to_string(),
            "path".to_string(),
            "power".to_string(),
        ]);
        let history = DefaultHistory::new();
        let (start, pairs) = helper
            .complete(line, line.len(), &Context::new(&history))
            .unwrap();
        (
            start,
            pairs.into_iter().map(|pair| pair.replacement).collect(),
        )
    }

    #[test]
    fn relation_names_where_an_atom_starts() {
        assert_eq!(complete("?- p"), (3, vec!["path(".into(), "power(".into()]));
        assert_eq!(complete("+e"), (1, vec!["edge(".into()]));
        assert_eq!(complete("+edge(1, 2). -pa"), (14, vec!["path(".into()]));
        assert_eq!(complete("why not pa"), (8, vec!["path(".into()]));
        assert_eq!(complete("whatif +e"), (8, vec!["edge(".into()]));
        assert_eq!(complete(".dump po"), (6, vec!["power".into()]));
    }

    #[test]
    fn commands_and_keywords_at_the_start() {
        assert_eq!(complete(".d"), (0, vec![".decls".into(), ".dump ".into()]));
        assert_eq!(
            complete("  .ti"),
            (2, vec![".tick ".into(), ".time".into()])
        );
        assert_eq!(complete("w"), (0, vec!["whatif ".into(), "why ".into()]));
        assert_eq!(complete("e"), (0, vec!["edge(".into()]));
    }

    #[test]
    fn nothing_inside_an_atom_or_after_a_value() {
        assert_eq!(complete("?- path(1, p").1, Vec::<String>::new());
        assert_eq!(complete("?- path(1, 2) p").1, Vec::<String>::new());
    }
}
