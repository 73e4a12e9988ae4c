//! `vigil repl`: the interactive query loop.
//!
//! One line is one command (see [`HELP`]). Answers go to standard output; errors go to
//! standard error as `LINE:COL: error: message`, followed by the line and a caret under the
//! place the error is about, and never end the session. With standard input a terminal, lines
//! are edited with rustyline (history, completion); otherwise no banner and no prompt are
//! printed, so that `vigil repl prog.dl < script` prints only the answers, and the exit status
//! says whether every command succeeded.
//!
//! The session parses every command and prints every answer; what answers is a [`Backend`]:
//! an engine in this process ([`local`]), or with `--connect URL` a running `vigil serve`
//! ([`remote`]), so that both print alike.

mod backend;
mod complete;
mod local;
mod remote;
pub(crate) mod schema;

use anyhow::Result;
use backend::{Backend, Delta, Write};
use clap::Args;
use complete::ReplHelper;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};
use std::io::{BufRead, IsTerminal};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vigil_engine::query::{self, Atom, Change, Parser, QueryError};
use vigil_engine::{EngineError, format_tuple};

#[derive(Args)]
pub struct ReplArgs {
    /// The program to load; without one the REPL starts with an empty program (see `.load`).
    program: Option<PathBuf>,
    /// Directory of the input facts (`R.facts`), read at the start and by every `.load`.
    #[arg(short = 'F', long = "fact-dir")]
    facts: Option<PathBuf>,
    /// Prints each line read, after its prompt, before the answer: a script's output then
    /// reads like the session at a terminal.
    #[arg(long)]
    echo: bool,
    /// Runs the commands on the `vigil serve` daemon at this URL (`http://HOST:PORT`) instead
    /// of on a local engine.
    #[arg(long, value_name = "URL", conflicts_with_all = ["program", "facts"])]
    connect: Option<String>,
    /// The bearer token for `--connect`; by default the VIGIL_TOKEN environment variable.
    #[arg(long, requires = "connect")]
    token: Option<String>,
}

/// What `.help` prints.
const HELP: &str = "\
Queries
  ?- path(1, X).        the matching rows: with variables, their values (`X = 3.`);
  path(1, X)?             without, the rows themselves; then the count, or `no.`
                        Arguments are values (1, -2, 3.5, 0x10, \"text\"), variables
                        (a repeated variable means equal values) and `_`.
Changes
  +edge(1, 2).          insert; `-edge(1, 2).` retracts; several on one line are one
                        transaction. Prints the change set: `+1 path(1, 2)` per row
                        that appeared, `-1 ...` per row that disappeared, and
                        `not there: -edge(7, 8)` for a retraction of a missing row.
                        A keyed relation takes `_` in its stamp column, and in its
                        non-key columns when retracting.
  begin                 opens a transaction: the changes that follow wait for
  commit                  `commit`, which applies them together, or `rollback`,
  rollback                which drops them. Queries see the committed state.
  whatif +a(1). -b(2).  the change set these changes would give, applying nothing;
                        in a transaction, with the pending changes (alone: `whatif`).
Explanations
  why path(1, 3)        how the row is derived, down to the input facts
  why not path(3, _)    which body literal fails (variables count as `_`)
  why --json ...        the same, as JSON
Commands
  .decls                the declarations and I/O directives
  .rules [R]            the rules (of R)
  .dump R               every row of R
  .size [R]             the number of rows (of every relation)
  .load FILE            replaces the program: a new engine, with the facts of -F
                          (not with --connect: a daemon keeps its program)
  .facts DIR            reads the facts of the input relations from DIR (not with
                          --connect: insert them, or give the daemon `facts`)
  .tick SECONDS         moves the event time (the clock relation, stamps) forward;
                          in a transaction, the time the transaction commits at
  .time                 the logical time (transactions committed) and event time
  .actions [N]          the last N (10) lines of the daemon's action journal: what
                          its actuators did (only with --connect)
  .changes [all|outputs]
                        which relations change sets show: every relation (the
                          default), or only the `.output` ones
  .help                 this text
  .quit                 ends the session, as does Ctrl-D; Ctrl-C drops the line
`//` starts a comment. Errors go to standard error, and make the exit status 1; an
error never ends the session. With standard input not a terminal there is no prompt
(`--echo` prints each line after one). The history is kept in $VIGIL_HISTORY, else
$XDG_STATE_HOME/vigil/history, else ~/.vigil_history (an empty VIGIL_HISTORY keeps
none; nor is a line that starts with a space kept). Tab completes commands and relation
names.
";

pub fn repl(args: ReplArgs) -> Result<ExitCode> {
    let backend: Box<dyn Backend> = match &args.connect {
        Some(url) => {
            let token = args
                .token
                .clone()
                .or_else(|| std::env::var("VIGIL_TOKEN").ok())
                .filter(|token| !token.is_empty());
            Box::new(remote::Remote::new(url, token)?)
        }
        None => match local::Local::start(args.program.clone(), args.facts.clone())? {
            Some(local) => Box::new(local),
            None => return Ok(ExitCode::FAILURE),
        },
    };
    let mut session = Session {
        backend,
        transaction: None,
        shown: Shown::All,
        line_number: 0,
        failed: false,
    };
    if std::io::stdin().is_terminal() {
        println!(
            "Vigil {}: {}. `.help` lists the commands.",
            env!("CARGO_PKG_VERSION"),
            session.backend.banner(),
        );
        interactive(&mut session)?;
    } else {
        piped(&mut session, args.echo)?;
    }
    Ok(if session.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads lines from a terminal, with rustyline.
fn interactive(session: &mut Session) -> Result<()> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .history_ignore_space(true)
        .max_history_size(10_000)?
        .build();
    let mut editor: Editor<ReplHelper, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ReplHelper::new(session.relation_names())));
    let history = history_path();
    if let Some(path) = history.as_deref().filter(|path| path.exists())
        && let Err(error) = editor.load_history(path)
    {
        eprintln!(
            "warning: the history in {} cannot be read: {error}",
            path.display()
        );
    }
    let mut history_failed = false;
    loop {
        let line = match editor.readline(&session.prompt()) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        };
        if !line.trim().is_empty() {
            editor.add_history_entry(line.as_str())?;
            if let Some(path) = &history
                && let Err(error) = append_history(&mut editor, path)
                && !history_failed
            {
                history_failed = true;
                eprintln!(
                    "warning: the history cannot be written to {}: {error}",
                    path.display()
                );
            }
        }
        let flow = session.execute(&line);
        if let Some(helper) = editor.helper_mut() {
            helper.set_relations(session.relation_names());
        }
        if let Flow::Quit = flow {
            break;
        }
    }
    session.quit();
    Ok(())
}

/// Reads lines from a pipe or a file: no banner, no prompt unless `echo`.
fn piped(session: &mut Session, echo: bool) -> Result<()> {
    let mut input = std::io::stdin().lock();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        if input.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        let text = String::from_utf8_lossy(&buffer);
        let line = text.trim_end_matches(['\n', '\r']);
        if echo {
            println!("{}{line}", session.prompt());
        }
        if let Flow::Quit = session.execute(line) {
            break;
        }
    }
    session.quit();
    Ok(())
}

/// `$VIGIL_HISTORY`, else `$XDG_STATE_HOME/vigil/history`, else `~/.vigil_history`; none if
/// `VIGIL_HISTORY` is empty or there is no home.
fn history_path() -> Option<PathBuf> {
    let variable = |name: &str| std::env::var_os(name);
    if let Some(path) = variable("VIGIL_HISTORY") {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    if let Some(state) = variable("XDG_STATE_HOME").filter(|state| !state.is_empty()) {
        return Some(Path::new(&state).join("vigil").join("history"));
    }
    variable("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| Path::new(&home).join(".vigil_history"))
}

/// Appends the new history entries to the file, creating its directory if needed: written
/// line by line, the history survives a session that does not end cleanly.
fn append_history(editor: &mut Editor<ReplHelper, DefaultHistory>, path: &Path) -> Result<()> {
    if let Some(directory) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(directory)?;
    }
    editor.append_history(path)?;
    Ok(())
}

/// `1 row`, `2 rows`.
fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// The REPL's state: what answers, and what the person set up.
struct Session {
    backend: Box<dyn Backend>,
    /// The transaction that `begin` opened.
    transaction: Option<Pending>,
    shown: Shown,
    /// The number of the line being executed, from 1.
    line_number: usize,
    /// Some command failed.
    failed: bool,
}

/// The changes of an open transaction, checked and waiting for `commit`.
struct Pending {
    changes: Vec<Change>,
    /// Seconds by which `.tick` moved the transaction's time past the engine's.
    advance: i64,
    /// The line of `begin`.
    opened: usize,
}

/// Which relations change sets show.
#[derive(Clone, Copy)]
enum Shown {
    All,
    Outputs,
}

enum Flow {
    Continue,
    Quit,
}

/// A command that failed: what went wrong, and where in its line.
struct Failure {
    /// The bytes of the line the error is about; `None` for the whole command.
    span: Option<Range<usize>>,
    message: String,
    /// Printed before the message: the diagnostics of a program that did not load.
    detail: Option<String>,
}

impl Failure {
    fn at(span: Range<usize>, message: impl Into<String>) -> Failure {
        Failure {
            span: Some(span),
            message: message.into(),
            detail: None,
        }
    }

    /// An error about the whole command (a transaction refused as a whole, a daemon that
    /// cannot be reached).
    fn whole(message: impl Into<String>) -> Failure {
        Failure {
            span: None,
            message: message.into(),
            detail: None,
        }
    }

    /// Places an error about the whole command on `span`.
    fn or_at(self, span: Range<usize>) -> Failure {
        Failure {
            span: Some(self.span.unwrap_or(span)),
            ..self
        }
    }
}

impl From<QueryError> for Failure {
    fn from(error: QueryError) -> Failure {
        Failure::at(error.span.clone(), error.to_string())
    }
}

fn is_word(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == '?'
}

impl Session {
    fn prompt(&self) -> String {
        match &self.transaction {
            None => "vigil> ".to_string(),
            Some(pending) => format!(
                "vigil [transaction, {}]> ",
                plural(pending.changes.len(), "change")
            ),
        }
    }

    /// For completion: none until a daemon's program has been fetched.
    fn relation_names(&self) -> Vec<String> {
        self.backend
            .known_schema()
            .map(schema::Schema::names)
            .unwrap_or_default()
    }

    /// Runs one line; reports its error, if any.
    fn execute(&mut self, line: &str) -> Flow {
        self.line_number += 1;
        match self.command(line) {
            Ok(flow) => flow,
            Err(failure) => {
                self.failed = true;
                self.report(line, &failure);
                Flow::Continue
            }
        }
    }

    /// Ends the session: an open transaction is dropped, and said so.
    fn quit(&mut self) {
        if let Some(pending) = self.transaction.take() {
            eprintln!(
                "warning: the open transaction ({}) was not committed",
                plural(pending.changes.len(), "change")
            );
        }
    }

    /// `LINE:COL: error: message`, then the line with a caret under the span.
    fn report(&self, line: &str, failure: &Failure) {
        if let Some(detail) = &failure.detail {
            eprintln!("{}", detail.trim_end());
        }
        let whole = line.len() - line.trim_start().len()..line.trim_end().len();
        let span = failure.span.clone().unwrap_or(whole);
        let start = span.start.min(line.len());
        let end = span.end.clamp(start, line.len());
        let before = &line[..start];
        let column = before.chars().count() + 1;
        eprintln!("{}:{column}: error: {}", self.line_number, failure.message);
        let padding: String = before
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let carets = "^".repeat(line[start..end].chars().count().max(1));
        eprintln!("  | {line}");
        eprintln!("  | {padding}{carets}");
    }

    /// Recognises the command by its first characters or word, and runs it.
    fn command(&mut self, line: &str) -> Result<Flow, Failure> {
        let mut parser = Parser::new(line);
        if parser.at_end() {
            return Ok(Flow::Continue);
        }
        let start = parser.position();
        let rest = parser.rest();
        let whole = start..line.trim_end().len();
        if rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            return self.dot_command(line, start);
        }
        if parser.eat("?-") {
            let atom = parser.atom()?;
            if !parser.eat(".") {
                parser.eat("?");
            }
            parser.expect_end()?;
            return self.query(line, &atom);
        }
        if rest.starts_with(['+', '-']) {
            let changes = parser.changes()?;
            parser.expect_end()?;
            return self.change(changes, whole);
        }
        let word_end = start + rest.find(|c: char| !is_word(c)).unwrap_or(rest.len());
        let word = start..word_end;
        for keyword in ["begin", "commit", "rollback"] {
            if parser.keyword(keyword) {
                parser.eat(".");
                parser.expect_end()?;
                return match keyword {
                    "begin" => self.begin(word),
                    "commit" => self.commit(word),
                    _ => self.rollback(word),
                };
            }
        }
        if parser.keyword("whatif") {
            let changes = if self.transaction.is_some() && parser.at_end() {
                Vec::new()
            } else {
                parser.changes()?
            };
            parser.expect_end()?;
            return self.what_if(&changes, whole);
        }
        if parser.keyword("why") {
            let json = parser.keyword("--json");
            let negated = parser.keyword("not");
            let json = json || parser.keyword("--json");
            let atom = parser.atom()?;
            if !parser.eat(".") {
                parser.eat("?");
            }
            parser.expect_end()?;
            let text = self.backend.explain(line, &atom, negated, json)?;
            println!("{text}");
            return Ok(Flow::Continue);
        }
        if word.is_empty() {
            return Err(parser.unexpected("a command or a query").into());
        }
        if !line[word_end..].trim_start().starts_with('(') {
            return Err(Failure::at(
                word.clone(),
                format!(
                    "unknown command `{}`: `.help` lists the commands",
                    &line[word]
                ),
            ));
        }
        let atom = parser.atom()?;
        if parser.eat("?") {
            parser.expect_end()?;
            return self.query(line, &atom);
        }
        let text = &line[atom.span.clone()];
        Err(Failure::at(
            atom.span.clone(),
            format!(
                "`{text}` is neither a query nor a change: `?- {text}.` or `{text}?` queries it, \
                 `+{text}.` inserts it"
            ),
        ))
    }

    fn query(&mut self, line: &str, atom: &Atom) -> Result<Flow, Failure> {
        let answer = self.backend.query(line, atom)?;
        for row in &answer.rows {
            if answer.variables.is_empty() {
                println!("{}", format_tuple(&atom.relation, row));
            } else {
                let values: Vec<String> = answer
                    .variables
                    .iter()
                    .zip(row)
                    .map(|(name, value)| format!("{name} = {}", query::format_value(value)))
                    .collect();
                println!("{}.", values.join(", "));
            }
        }
        println!("{}", count_line(answer.rows.len()));
        Ok(Flow::Continue)
    }

    /// `+a. -b.`: one transaction now, or more changes for the open one.
    /// `command` is the span of the whole line, where a rejected transaction is reported.
    fn change(&mut self, changes: Vec<Change>, command: Range<usize>) -> Result<Flow, Failure> {
        if let Some(pending) = &mut self.transaction {
            // Checked now, so that the mistake is reported on its own line.
            self.backend.check(&pending.changes, &changes)?;
            pending.changes.extend(changes);
            return Ok(Flow::Continue);
        }
        let write = Write {
            changes: &changes,
            at: None,
            event: format!("repl line {}", self.line_number),
            what_if: false,
        };
        self.apply(write, |failure| failure.or_at(command))
    }

    /// Commits a transaction, or computes its what-if, and prints the change set; `place`
    /// puts an error on the line.
    fn apply(
        &mut self,
        write: Write<'_>,
        place: impl FnOnce(Failure) -> Failure,
    ) -> Result<Flow, Failure> {
        let changes = self.backend.apply(write).map_err(place)?;
        self.print_changes(&changes);
        Ok(Flow::Continue)
    }

    fn begin(&mut self, word: Range<usize>) -> Result<Flow, Failure> {
        if let Some(pending) = &self.transaction {
            return Err(Failure::at(
                word,
                format!(
                    "a transaction is already open, since line {}",
                    pending.opened
                ),
            ));
        }
        self.transaction = Some(Pending {
            changes: Vec::new(),
            advance: 0,
            opened: self.line_number,
        });
        Ok(Flow::Continue)
    }

    fn commit(&mut self, word: Range<usize>) -> Result<Flow, Failure> {
        let Some(pending) = self.transaction.take() else {
            return Err(Failure::at(
                word,
                "no transaction is open: `begin` opens one",
            ));
        };
        let fail = |failure: Failure| Failure::at(word.clone(), failure.message);
        let write = Write {
            changes: &pending.changes,
            at: self.event_time(pending.advance).map_err(fail)?,
            event: format!("repl lines {}-{}", pending.opened, self.line_number),
            what_if: false,
        };
        self.apply(write, fail)
    }

    /// The event time `advance` seconds after the current one; `None` (the current one) for 0.
    fn event_time(&mut self, advance: i64) -> Result<Option<i64>, Failure> {
        if advance == 0 {
            return Ok(None);
        }
        let now = self.backend.clock()?.now;
        now.checked_add(advance)
            .map(Some)
            .ok_or_else(|| Failure::whole("the event time would overflow"))
    }

    fn rollback(&mut self, word: Range<usize>) -> Result<Flow, Failure> {
        let Some(pending) = self.transaction.take() else {
            return Err(Failure::at(
                word,
                "no transaction is open: `begin` opens one",
            ));
        };
        println!("rolled back {}.", plural(pending.changes.len(), "change"));
        Ok(Flow::Continue)
    }

    /// The change set of the open transaction's changes and `changes`, without applying any.
    fn what_if(&mut self, changes: &[Change], command: Range<usize>) -> Result<Flow, Failure> {
        let (mut all, advance) = match &self.transaction {
            Some(pending) => (pending.changes.clone(), pending.advance),
            None => (Vec::new(), 0),
        };
        all.extend_from_slice(changes);
        let write = Write {
            changes: &all,
            at: self.event_time(advance)?,
            event: format!("repl line {}", self.line_number),
            what_if: true,
        };
        self.apply(write, |failure| failure.or_at(command))
    }

    /// Prints a change set: the rows of the relations shown, the retractions of missing
    /// rows, and how many changes are hidden.
    fn print_changes(&mut self, changes: &Delta) {
        let schema = match self.shown {
            Shown::All => None,
            // Every relation, if a daemon does not say which are outputs.
            Shown::Outputs => self.backend.schema().ok(),
        };
        let mut printed = 0;
        let mut hidden = 0;
        for (relation, rows) in &changes.relations {
            if schema.is_some_and(|schema| !schema.is_output(relation)) {
                hidden += rows.len();
                continue;
            }
            for (tuple, diff) in rows {
                println!("{diff:+} {}", format_tuple(relation, tuple));
                printed += 1;
            }
        }
        for absent in &changes.absent {
            println!("not there: -{absent}");
        }
        let more = plural(hidden, "change");
        match (printed, hidden) {
            (0, 0) => println!("no changes."),
            (0, _) => println!("no changes to the outputs; {more} elsewhere (`.changes all`)."),
            (_, 0) => {}
            (_, _) => println!("and {more} elsewhere (`.changes all`)."),
        }
    }

    fn dot_command(&mut self, line: &str, start: usize) -> Result<Flow, Failure> {
        let name_end = line[start + 1..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .map_or(line.len(), |length| start + 1 + length);
        let name = &line[start..name_end];
        let span = start..name_end;
        let arguments = words(line, name_end);
        let at_most = |count: usize| match arguments.get(count) {
            Some((_, extra)) => Err(Failure::at(
                extra.clone(),
                match count {
                    0 => format!("`{name}` takes no argument"),
                    _ => format!("`{name}` takes one argument"),
                },
            )),
            None => Ok(()),
        };
        if let Some(message) = self.backend.unsupported(name) {
            return Err(Failure::at(span, message));
        }
        let one = |what: &str| match arguments.first() {
            Some((argument, argument_span)) => {
                at_most(1)?;
                Ok((*argument, argument_span.clone()))
            }
            None => Err(Failure::at(
                name_end..name_end,
                format!("`{name}` takes {what}"),
            )),
        };
        match name {
            ".help" => {
                at_most(0)?;
                print!("{HELP}");
            }
            ".quit" => {
                at_most(0)?;
                return Ok(Flow::Quit);
            }
            ".decls" => {
                at_most(0)?;
                for line in self.backend.schema()?.declarations() {
                    println!("{line}");
                }
            }
            ".rules" => {
                at_most(1)?;
                let relation = match arguments.first() {
                    Some((name, span)) => Some(self.relation(name, span.clone())?),
                    None => None,
                };
                let clauses = self.backend.schema()?.clauses(relation);
                for clause in &clauses {
                    println!("{clause}");
                }
                if clauses.is_empty() {
                    println!("no rules.");
                }
            }
            ".dump" => {
                let (relation, span) = one("a relation name")?;
                self.relation(relation, span.clone())?;
                let tuples = self
                    .backend
                    .dump(relation)
                    .map_err(|failure| failure.or_at(span))?;
                for tuple in &tuples {
                    println!("{}", format_tuple(relation, tuple));
                }
                println!("{}", count_line(tuples.len()));
            }
            ".size" => {
                at_most(1)?;
                let only = match arguments.first() {
                    Some((name, span)) => Some(self.relation(name, span.clone())?),
                    None => None,
                };
                for (name, size) in self.backend.sizes()? {
                    if only.is_none_or(|only| only == name) {
                        println!("{name}\t{size}");
                    }
                }
            }
            ".load" => {
                let (path, span) = path_argument(line, name_end, "a program file")?;
                self.no_transaction(span.clone(), ".load")?;
                let loaded = self.backend.load(path, span)?;
                println!("{loaded}");
            }
            ".facts" => {
                let (dir, span) = path_argument(line, name_end, "a facts directory")?;
                self.no_transaction(span.clone(), name)?;
                let count = self.backend.read_facts(dir, span)?;
                println!("read {} from {dir}.", plural(count, "fact"));
            }
            ".tick" => {
                let (seconds, span) = one("a number of seconds")?;
                self.tick(seconds, span)?;
            }
            ".time" => {
                at_most(0)?;
                let clock = self.backend.clock()?;
                println!("logical time: {}", clock.time);
                println!("event time: {}", clock.now);
                if let Some(pending) = &self.transaction {
                    println!(
                        "open transaction: {}, at event time {}",
                        plural(pending.changes.len(), "change"),
                        clock.now.saturating_add(pending.advance)
                    );
                }
            }
            ".actions" => {
                at_most(1)?;
                let limit = match arguments.first() {
                    Some((text, span)) => match text.parse::<usize>() {
                        Ok(limit) if limit > 0 => limit,
                        _ => {
                            return Err(Failure::at(
                                span.clone(),
                                format!(
                                    "`.actions` takes a number of lines, 1 or more, not `{text}`"
                                ),
                            ));
                        }
                    },
                    None => 10,
                };
                let actions = self.backend.actions(limit)?;
                for action in &actions {
                    let mut line = format!(
                        "{} {} {} {} {}: {}",
                        action.seq,
                        {
                            // HH:MM:SS, UTC.
                            let seconds = action.time.rem_euclid(86_400);
                            format!(
                                "{:02}:{:02}:{:02}",
                                seconds / 3600,
                                seconds / 60 % 60,
                                seconds % 60
                            )
                        },
                        action.outcome,
                        action.kind,
                        action.target,
                        action.command
                    );
                    if action.attempt > 1 {
                        line.push_str(&format!(" (attempt {})", action.attempt));
                    }
                    if !action.reason.is_empty() {
                        line.push_str(&format!(": {}", action.reason));
                    }
                    println!("{line}");
                }
                println!("{}", plural(actions.len(), "action"));
            }
            ".changes" => {
                at_most(1)?;
                match arguments.first() {
                    Some(("all", _)) => self.shown = Shown::All,
                    Some(("outputs", _)) => self.shown = Shown::Outputs,
                    Some((other, span)) => {
                        return Err(Failure::at(
                            span.clone(),
                            format!("`.changes` takes `all` or `outputs`, not `{other}`"),
                        ));
                    }
                    None => {}
                }
                println!(
                    "change sets show {}.",
                    match self.shown {
                        Shown::All => "every relation",
                        Shown::Outputs => "the .output relations",
                    }
                );
            }
            _ => {
                return Err(Failure::at(
                    span,
                    format!("unknown command `{name}`: `.help` lists the commands"),
                ));
            }
        }
        Ok(Flow::Continue)
    }

    /// A relation named in a command, if the program has it.
    fn relation<'n>(&mut self, name: &'n str, span: Range<usize>) -> Result<&'n str, Failure> {
        match self.backend.schema()?.relation(name) {
            Some(_) => Ok(name),
            None => Err(Failure::at(
                span,
                EngineError::UnknownRelation(name.to_string()).to_string(),
            )),
        }
    }

    fn no_transaction(&self, span: Range<usize>, command: &str) -> Result<(), Failure> {
        match &self.transaction {
            Some(pending) => Err(Failure::at(
                span,
                format!(
                    "a transaction is open, since line {}: `commit` or `rollback` it before `{command}`",
                    pending.opened
                ),
            )),
            None => Ok(()),
        }
    }

    /// `.tick SECONDS`: a transaction that only moves the event time, or, in an open
    /// transaction, a later time for it.
    fn tick(&mut self, seconds: &str, span: Range<usize>) -> Result<(), Failure> {
        let seconds: i64 = seconds
            .parse()
            .ok()
            .filter(|seconds| *seconds >= 0)
            .ok_or_else(|| {
                Failure::at(
                    span.clone(),
                    format!(
                        "`.tick` takes a whole number of seconds, 0 or more (time never goes backwards), not `{seconds}`"
                    ),
                )
            })?;
        let advance = seconds
            + self
                .transaction
                .as_ref()
                .map_or(0, |pending| pending.advance);
        let time = self
            .backend
            .clock()?
            .now
            .checked_add(advance)
            .ok_or_else(|| Failure::at(span.clone(), "the event time would overflow"))?;
        if let Some(pending) = &mut self.transaction {
            pending.advance = advance;
            println!("the transaction will commit at event time {time}.");
            return Ok(());
        }
        let write = Write {
            changes: &[],
            at: Some(time),
            event: format!("repl line {}", self.line_number),
            what_if: false,
        };
        self.apply(write, |failure| Failure::at(span, failure.message))?;
        Ok(())
    }
}

/// `2 rows.`, `1 row.`, `no.`
fn count_line(count: usize) -> String {
    match count {
        0 => "no.".to_string(),
        _ => format!("{}.", plural(count, "row")),
    }
}

/// The white-space separated words of `line` from `start` on, up to a `//` comment, with
/// their spans.
fn words(line: &str, start: usize) -> Vec<(&str, Range<usize>)> {
    let mut words = Vec::new();
    let mut offset = start;
    for word in line[start..].split_whitespace() {
        let at = offset + line[offset..].find(word).expect("the word is in the line");
        if word.starts_with("//") {
            break;
        }
        words.push((word, at..at + word.len()));
        offset = at + word.len();
    }
    words
}

/// The rest of the line as a path: it may hold spaces, or be quoted.
fn path_argument<'l>(
    line: &'l str,
    start: usize,
    what: &str,
) -> Result<(&'l str, Range<usize>), Failure> {
    let rest = &line[start..];
    let trimmed = rest.trim();
    let at = start + (rest.len() - rest.trim_start().len());
    let unquoted = trimmed
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(trimmed);
    if unquoted.is_empty() {
        let command = line[..start].trim();
        return Err(Failure::at(
            start..start,
            format!("`{command}` takes {what}"),
        ));
    }
    Ok((unquoted, at..at + trimmed.len()))
}
