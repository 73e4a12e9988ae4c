//! Explanations (`why` and `why not`): golden answers, a validity checker run over random
//! graphs and random programs, and a derivation ten thousand levels deep.
//!
//! Golden cases live in `fixtures/explain/<case>/` (see the README there): the program, its
//! inputs, the questions, and the expected answers as text and as JSON. `UPDATE_EXPECT=1`
//! rewrites the expected files from the current answers; review the difference by hand.

use proptest::prelude::*;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use vigil_engine::dataflow::eval::{Evaluator, compile, compile_condition};
use vigil_engine::explain::{
    Derivation, Explanation, How, MAX_DEPTH, Outcome, Premise, Verdict, WhyNot,
};
use vigil_engine::ir::{self, Literal};
use vigil_engine::value::{self, Word};
use vigil_engine::{Engine, EngineError, Op, Options, Type, Value, compile_source};

// ---------------------------------------------------------------------------------------------
// A reader for atoms written as in a program: `path(1, _)`, `host("pve")`

struct Reader<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Reader<'t> {
    fn new(text: &'t str) -> Reader<'t> {
        Reader { text, at: 0 }
    }

    fn rest(&self) -> &'t str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.rest().starts_with(token) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str) {
        assert!(self.eat(token), "expected `{token}` at `{}`", self.rest());
    }

    fn at_end(&mut self) -> bool {
        self.skip_space();
        self.rest().is_empty()
    }

    fn word(&mut self) -> &'t str {
        self.skip_space();
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '+'))
            .unwrap_or(rest.len());
        self.at += end;
        &rest[..end]
    }

    fn string(&mut self) -> String {
        self.expect("\"");
        let mut text = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += offset + 1;
                    return text;
                }
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some(other) => text.push(other),
                    None => break,
                },
                other => text.push(other),
            }
        }
        panic!("unterminated string in `{}`", self.text);
    }

    /// A value, or `None` for `_`.
    fn field(&mut self) -> Option<Value> {
        self.skip_space();
        if self.rest().starts_with('"') {
            return Some(Value::symbol(&self.string()));
        }
        let word = self.word();
        if word == "_" {
            return None;
        }
        if word.contains(['.', 'e']) {
            return Some(Value::Float(word.parse().expect("a float")));
        }
        Some(match word.parse::<i64>() {
            Ok(number) => Value::Number(number),
            Err(_) => Value::Unsigned(word.parse().expect("a number")),
        })
    }

    /// `name(field, ...)`
    fn atom(&mut self) -> (String, Vec<Option<Value>>) {
        let name = self.word().to_string();
        self.expect("(");
        let mut fields = Vec::new();
        if !self.eat(")") {
            loop {
                fields.push(self.field());
                if self.eat(")") {
                    break;
                }
                self.expect(",");
            }
        }
        (name, fields)
    }
}

/// The fields of a `why` question as values of the relation's column types (an integer
/// literal in an `unsigned` or `float` column is that type's value), as the engine reads them.
fn complete(engine: &Engine, relation: &str, fields: Vec<Option<Value>>) -> Vec<Value> {
    let id = engine.relation(relation).expect("a known relation");
    let columns = &engine.program().relations[id].columns;
    fields
        .into_iter()
        .zip(columns)
        .map(
            |(field, column)| match (field.expect("`why` takes a whole row"), column.ty) {
                (Value::Number(n), Type::Unsigned) => Value::Unsigned(n as u64),
                (Value::Number(n), Type::Float) => Value::Float(n as f64),
                (value, _) => value,
            },
        )
        .collect()
}

/// Applies one line of a `transactions` file: `at 60 [event "label"]: +edge(1, 2) -edge(3, 4)`.
fn apply_transaction(engine: &mut Engine, line: &str) {
    let mut reader = Reader::new(line);
    reader.expect("at");
    let time: i64 = reader.word().parse().expect("a time in seconds");
    let mut transaction = engine.transaction();
    transaction.at(time);
    if reader.eat("event") {
        let event = reader.string();
        transaction.event(event);
    }
    reader.expect(":");
    while !reader.at_end() {
        let op = if reader.eat("+") {
            Op::Insert
        } else {
            reader.expect("-");
            Op::Retract
        };
        let (relation, fields) = reader.atom();
        transaction
            .write(op, &relation, &fields)
            .expect("a valid write");
    }
    transaction.commit().expect("the transaction commits");
}

/// Answers one line of a `queries` file: `why R(...)` or `why not R(...)`.
fn answer(engine: &Engine, query: &str) -> (String, serde_json::Value, Option<Explanation>) {
    let mut reader = Reader::new(query);
    reader.expect("why");
    if reader.eat("not ") {
        let (relation, pattern) = reader.atom();
        let why_not = engine
            .why_not(&relation, &pattern)
            .expect("a valid question");
        (why_not.to_string(), why_not.to_json(), None)
    } else {
        let (relation, fields) = reader.atom();
        let tuple = complete(engine, &relation, fields);
        let explanation = engine.why(&relation, &tuple).expect("a valid question");
        if let Explanation::Holds(derivation) = &explanation {
            check_derivation(engine, &relation, &tuple, derivation)
                .unwrap_or_else(|error| panic!("`{query}`: invalid derivation: {error}"));
        }
        (
            explanation.to_string(),
            explanation.to_json(),
            Some(explanation),
        )
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// Cargo runs tests from the package's directory, so this path is also what facts files'
/// events show.
const FIXTURES: &str = "../fixtures/explain";

fn run_case(case: &str) {
    let dir = PathBuf::from(FIXTURES).join(case);
    let source = std::fs::read_to_string(dir.join("prog.dl")).expect("prog.dl");
    let program = compile_source("prog.dl", &source).unwrap_or_else(|error| panic!("{error}"));
    let mut engine = Engine::new(program, Options::default()).expect("the program starts");
    if dir.join("facts").is_dir() {
        engine
            .load_facts(&dir.join("facts"))
            .expect("the facts load");
    }
    if dir.join("transactions").exists() {
        for line in lines(&dir.join("transactions")) {
            apply_transaction(&mut engine, &line);
        }
    }
    let mut text = String::new();
    let mut json = Vec::new();
    for query in lines(&dir.join("queries")) {
        let (answer_text, answer_json, _) = answer(&engine, &query);
        if !text.is_empty() {
            text.push('\n');
        }
        let _ = write!(text, "?- {query}\n{answer_text}");
        json.push(serde_json::json!({ "query": query, "answer": answer_json }));
    }
    let json = serde_json::to_string_pretty(&json).expect("JSON") + "\n";
    for (file, actual) in [("expected.txt", &text), ("expected.json", &json)] {
        let path = dir.join(file);
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, actual).expect("write the expected file");
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        assert!(
            expected == *actual,
            "{}: the answers differ from the expected ones.\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}

macro_rules! golden {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                run_case(stringify!($case));
            }
        )*

        #[test]
        fn every_golden_case_has_a_test() {
            let tested: BTreeSet<&str> = [$(stringify!($case)),*].into_iter().collect();
            let present: BTreeSet<String> = std::fs::read_dir(FIXTURES)
                .expect("the fixtures directory")
                .map(|entry| entry.expect("an entry").path())
                .filter(|path| path.is_dir())
                .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
            assert_eq!(present, tested, "fixtures/explain and the golden tests disagree");
        }
    };
}

golden!(
    recursive,
    mutual,
    negation,
    aggregates,
    program_facts,
    keyed,
    heads,
    shapes,
);

// ---------------------------------------------------------------------------------------------
// The validity checker

fn word_of(engine: &Engine, value: &Value) -> Word {
    value::encode(value, engine.interner()).expect("a value encodes")
}

fn words_of(engine: &Engine, values: &[Value]) -> Vec<Word> {
    values.iter().map(|value| word_of(engine, value)).collect()
}

/// Checks a derivation against the engine: the root is the asked row; every node's row is in
/// its relation; an input leaf is a row of a relation that takes inserts, with the origin the
/// engine recorded; a fact leaf is a fact of the program giving the row; a rule node's bindings
/// satisfy every body literal, its premises are the rows its positive atoms match under those
/// bindings, and its head evaluated on them gives the node's row; no row is its own ancestor.
fn check_derivation(
    engine: &Engine,
    relation: &str,
    tuple: &[Value],
    derivation: &Derivation,
) -> Result<(), String> {
    let program = engine.program();
    let root = derivation.nodes.first().ok_or("no nodes")?;
    if root.relation != relation || root.tuple != tuple {
        return Err(format!("the root is {}, not the asked row", root.row()));
    }
    let mut evaluator = Evaluator::new(engine.interner().clone());
    for node in &derivation.nodes {
        let row = node.row();
        let id = engine.relation(&node.relation).map_err(|e| e.to_string())?;
        if !engine
            .contains(&node.relation, &node.tuple)
            .map_err(|e| e.to_string())?
        {
            return Err(format!("{row} is not in the engine"));
        }
        let words = words_of(engine, &node.tuple);
        match &node.how {
            How::Input { origin } => {
                if !program.relations[id].writable {
                    return Err(format!("{row} is shown as an input of a derived relation"));
                }
                let recorded = engine.origin(id, &words);
                let same = match (origin, recorded) {
                    (Some(shown), Some(recorded)) => {
                        shown.time == recorded.time
                            && shown.now == recorded.now
                            && shown.event.as_deref() == recorded.event.as_deref()
                    }
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return Err(format!(
                        "{row}: the origin is not the one the engine recorded"
                    ));
                }
            }
            How::Fact { rule, .. } => {
                let rule = &program.rules[*rule];
                if !rule.body.is_empty() || rule.head != id {
                    return Err(format!("{row} is shown as a fact, but its rule is not one"));
                }
                let head = eval_head(engine, rule, &[])?;
                if head != words {
                    return Err(format!("{row}: the fact gives another row"));
                }
            }
            How::Rule {
                rule: rule_id,
                bindings,
                premises,
                ..
            } => {
                let rule = &program.rules[*rule_id];
                if rule.head != id {
                    return Err(format!("{row}: rule {rule_id} derives another relation"));
                }
                let mut slots: Vec<Option<Word>> = vec![None; rule.variables.len()];
                for binding in bindings {
                    let ty = rule.variables[binding.var].ty;
                    if binding.value.ty() != ty {
                        return Err(format!(
                            "{row}: `{}` has a value of another type",
                            binding.name
                        ));
                    }
                    slots[binding.var] = Some(word_of(engine, &binding.value));
                }
                let bound: Vec<Word> = slots.iter().map(|slot| slot.unwrap_or(0)).collect();
                if eval_head(engine, rule, &bound)? != words {
                    return Err(format!("{row}: the head on the bindings gives another row"));
                }
                let rows: Vec<usize> = premises
                    .iter()
                    .filter_map(|premise| match premise {
                        Premise::Row { node, .. } => Some(*node),
                        _ => None,
                    })
                    .collect();
                let atoms: Vec<&ir::Atom> = rule
                    .body
                    .iter()
                    .filter_map(|literal| match literal {
                        Literal::Positive(atom) => Some(atom),
                        _ => None,
                    })
                    .collect();
                if rows.len() != atoms.len() {
                    return Err(format!(
                        "{row}: {} row premises for {} atoms",
                        rows.len(),
                        atoms.len()
                    ));
                }
                for (&premise, atom) in rows.iter().zip(&atoms) {
                    let premise = derivation
                        .nodes
                        .get(premise)
                        .ok_or_else(|| format!("{row}: premise {premise} is not a node"))?;
                    if premise.relation != program.relations[atom.relation].name {
                        return Err(format!(
                            "{row}: premise {} is of another atom",
                            premise.row()
                        ));
                    }
                    let premise_words = words_of(engine, &premise.tuple);
                    for (column, arg) in atom.args.iter().enumerate() {
                        if let Some(var) = arg
                            && slots[*var] != Some(premise_words[column])
                        {
                            return Err(format!(
                                "{row}: premise {} disagrees with the bindings",
                                premise.row()
                            ));
                        }
                    }
                }
                check_literals(engine, &mut evaluator, rule, &slots, premises)
                    .map_err(|error| format!("{row}: {error}"))?;
            }
            How::Unexplained { reason } => return Err(format!("{row} is unexplained: {reason}")),
        }
    }
    check_acyclic(derivation)
}

fn eval_head(engine: &Engine, rule: &ir::Rule, bound: &[Word]) -> Result<Vec<Word>, String> {
    rule.head_args
        .iter()
        .map(|arg| {
            let compiled = compile(arg, &|var| var, engine.interner())?;
            Evaluator::new(engine.interner().clone())
                .eval(&compiled, bound)
                .ok_or_else(|| "a head expression has no value".to_string())
        })
        .collect()
}

/// Every body literal other than a positive atom holds under the bindings.
fn check_literals(
    engine: &Engine,
    evaluator: &mut Evaluator,
    rule: &ir::Rule,
    slots: &[Option<Word>],
    premises: &[Premise],
) -> Result<(), String> {
    let program = engine.program();
    let bound: Vec<Word> = slots.iter().map(|slot| slot.unwrap_or(0)).collect();
    let aggregates: Vec<_> = premises
        .iter()
        .filter_map(|premise| match premise {
            Premise::Aggregate(aggregate) => Some(aggregate),
            _ => None,
        })
        .collect();
    let mut next_aggregate = aggregates.iter();
    for literal in &rule.body {
        match literal {
            Literal::Positive(_) => {}
            Literal::Negative(atom) => {
                let relation = &program.relations[atom.relation];
                let pattern: Vec<Option<Value>> = atom
                    .args
                    .iter()
                    .zip(relation.types())
                    .map(|(arg, ty)| {
                        arg.map(|var| value::decode(bound[var], ty, engine.interner()))
                    })
                    .collect();
                let there = engine
                    .read(&relation.name, &pattern)
                    .map_err(|e| e.to_string())?;
                if !there.is_empty() {
                    return Err(format!("a negated `{}` matches a row", relation.name));
                }
            }
            Literal::Filter(condition) => {
                let compiled = compile_condition(condition, &|var| var, engine.interner())?;
                if !evaluator.holds(&compiled, &bound) {
                    return Err("a condition does not hold".to_string());
                }
            }
            Literal::Assign { var, expr, .. } => {
                let compiled = compile(expr, &|var| var, engine.interner())?;
                if evaluator.eval(&compiled, &bound) != slots[*var] {
                    return Err(format!(
                        "`{}` is not its expression's value",
                        rule.variables[*var].name
                    ));
                }
            }
            Literal::Range { var, .. } => {
                if slots[*var].is_none() {
                    return Err("a range's variable is not bound".to_string());
                }
            }
            Literal::Aggregate(aggregate) => {
                let shown = next_aggregate
                    .next()
                    .ok_or("an aggregate without its premise")?;
                let result = word_of(engine, &shown.result);
                if slots[aggregate.result] != Some(result) {
                    return Err("an aggregate's result is not its variable's value".to_string());
                }
                for member in &shown.members {
                    for row in &member.rows {
                        if !engine
                            .contains(&row.relation, &row.tuple)
                            .map_err(|e| e.to_string())?
                        {
                            return Err(format!("a group row of `{}` is not there", row.relation));
                        }
                    }
                    if matches!(shown.aggregate.as_str(), "min" | "max")
                        && member.value.as_ref() != Some(&shown.result)
                    {
                        return Err("a witness does not give the result".to_string());
                    }
                }
                if shown.aggregate == "count" && shown.result != Value::Number(shown.size as i64) {
                    return Err("a count is not its group's size".to_string());
                }
            }
        }
    }
    Ok(())
}

/// No node is among its own ancestors: an iterative depth-first search for a back edge.
fn check_acyclic(derivation: &Derivation) -> Result<(), String> {
    let children: Vec<Vec<usize>> = derivation
        .nodes
        .iter()
        .map(|node| match &node.how {
            How::Rule { premises, .. } => premises
                .iter()
                .filter_map(|premise| match premise {
                    Premise::Row { node, .. } => Some(*node),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; children.len()];
    let mut stack = vec![(0usize, 0usize)];
    marks[0] = Mark::Open;
    while let Some((node, next)) = stack.pop() {
        if let Some(&child) = children[node].get(next) {
            stack.push((node, next + 1));
            match marks[child] {
                Mark::Open => {
                    return Err(format!(
                        "{} is among its own ancestors",
                        derivation.nodes[child].row()
                    ));
                }
                Mark::New => {
                    marks[child] = Mark::Open;
                    stack.push((child, 0));
                }
                Mark::Done => {}
            }
        } else {
            marks[node] = Mark::Done;
        }
    }
    Ok(())
}

/// Explains every row of every derived relation, and checks each derivation.
fn check_every_row(engine: &Engine) {
    for relation in &engine.program().relations {
        if !relation.derived {
            continue;
        }
        for tuple in engine.read(&relation.name, &[]).expect("a relation") {
            match engine
                .why(&relation.name, &tuple)
                .expect("a valid question")
            {
                Explanation::Holds(derivation) => {
                    check_derivation(engine, &relation.name, &tuple, &derivation).unwrap_or_else(
                        |error| {
                            panic!(
                                "{}: {error}\n{derivation}",
                                vigil_engine::format_tuple(&relation.name, &tuple)
                            )
                        },
                    );
                }
                Explanation::Absent(_) => panic!("a row that is there is explained as absent"),
            }
        }
    }
}

/// Asks `why not` for a row that is not there, and checks the answer's shape: no matching
/// row, and an answer for every rule.
fn check_absent(engine: &Engine, relation: &str, tuple: &[Value]) {
    let pattern: Vec<Option<Value>> = tuple.iter().cloned().map(Some).collect();
    let why_not: WhyNot = engine
        .why_not(relation, &pattern)
        .expect("a valid question");
    let Verdict::Missing { rules, .. } = &why_not.verdict else {
        panic!("{why_not}: a row that is not there is said to hold");
    };
    let id = engine.relation(relation).unwrap();
    assert_eq!(rules.len(), engine.program().rules_of(id).count());
    for answer in rules {
        if let Outcome::Body {
            candidates,
            truncated,
        } = &answer.outcome
        {
            assert!(
                !candidates.is_empty() || *truncated,
                "{why_not}: a rule without a reason"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random graphs and random programs

const CLOSURES: [&str; 3] = [
    "path(x, z) :- path(x, y), edge(y, z).",
    "path(x, z) :- edge(x, y), path(y, z).",
    "path(x, z) :- path(x, y), path(y, z).",
];

fn graph_engine(recursion: &str, batches: &[Vec<(i64, i64)>]) -> Engine {
    let source = format!(
        ".decl edge(x: number, y: number)\n.input edge\n\
         .decl path(x: number, y: number)\n.output path\n\
         path(x, y) :- edge(x, y).\n{recursion}\n"
    );
    let program = compile_source("graph.dl", &source).unwrap();
    let mut engine = Engine::new(program, Options::default()).unwrap();
    for (index, batch) in batches.iter().enumerate() {
        let mut transaction = engine.transaction();
        transaction
            .at(60 * index as i64)
            .event(format!("batch {index}"));
        for &(x, y) in batch {
            transaction
                .insert("edge", &[Value::Number(x), Value::Number(y)])
                .unwrap();
        }
        transaction.commit().unwrap();
    }
    engine
}

/// Rules over two inputs (`e`, binary; `v`, unary) and derived relations at increasing strata;
/// negation and aggregates only read lower strata.
const DECLARATIONS: &str = "
.decl e(x: number, y: number)
.decl v(x: number)
.input e
.input v
.decl r(x: number, y: number)
.decl s(x: number)
.decl t(x: number, y: number)
r(x, y) :- e(x, y).
s(x) :- v(x).
t(x, y) :- r(x, y), s(y).
";

const TEMPLATES: &[&str] = &[
    "r(x, z) :- r(x, y), e(y, z).",
    "r(x, z) :- r(x, y), r(y, z), x != z.",
    "r(y, x) :- r(x, y), v(x).",
    "r(x, y) :- v(x), y = x + 1, y < 5.",
    "s(x) :- r(x, _), !v(x).",
    "s(x) :- v(x), !r(x, x).",
    "s(n) :- n = count : { e(_, _) }.",
    "s(m) :- m = max y : { r(_, y) }.",
    "s(x) :- v(x), x = range(0, 4).",
    "t(x, n) :- v(x), n = count : { r(x, _) }.",
    "t(x, m) :- s(x), m = min y : { e(y, x) }.",
    "t(x, s) :- v(x), s = sum y : { r(x, y) }.",
    "t(x, y) :- r(x, y), !s(x), x < y.",
    "t(x, m) :- v(x), m = to_number(mean to_float(y) : { e(x, y) }).",
    "t(y, x) :- t(x, y), s(x).",
];

fn program_engine(selection: &[bool], edges: &[(i64, i64)], vertices: &[i64]) -> Engine {
    let mut source = DECLARATIONS.to_string();
    for (template, chosen) in TEMPLATES.iter().zip(selection) {
        if *chosen {
            source.push_str(template);
            source.push('\n');
        }
    }
    let program = compile_source("random.dl", &source).unwrap();
    let mut engine = Engine::new(program, Options::default()).unwrap();
    let mut transaction = engine.transaction();
    transaction.at(10).event("load");
    for &(x, y) in edges {
        transaction
            .insert("e", &[Value::Number(x), Value::Number(y)])
            .unwrap();
    }
    for &x in vertices {
        transaction.insert("v", &[Value::Number(x)]).unwrap();
    }
    transaction.commit().unwrap();
    engine
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_closure_row_has_a_valid_derivation(
        recursion in 0..CLOSURES.len(),
        batches in prop::collection::vec(
            prop::collection::vec((0i64..7, 0i64..7), 0..8),
            1..4,
        ),
    ) {
        let engine = graph_engine(CLOSURES[recursion], &batches);
        check_every_row(&engine);
        for x in 0..7 {
            for y in 0..7 {
                let tuple = [Value::Number(x), Value::Number(y)];
                if !engine.contains("path", &tuple).unwrap() {
                    check_absent(&engine, "path", &tuple);
                }
            }
        }
    }

    #[test]
    fn every_row_of_a_random_program_has_a_valid_derivation(
        selection in prop::collection::vec(any::<bool>(), TEMPLATES.len()),
        edges in prop::collection::vec((0i64..5, 0i64..5), 0..10),
        vertices in prop::collection::vec(0i64..5, 0..4),
    ) {
        let engine = program_engine(&selection, &edges, &vertices);
        check_every_row(&engine);
        for relation in ["r", "s", "t"] {
            let arity = if relation == "s" { 1 } else { 2 };
            for x in 0..5 {
                let tuple: Vec<Value> = std::iter::repeat_n(Value::Number(x), arity).collect();
                if !engine.contains(relation, &tuple).unwrap() {
                    check_absent(&engine, relation, &tuple);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Specific behaviours

#[test]
fn a_derivation_ten_thousand_levels_deep_needs_no_deep_stack() {
    const LENGTH: i64 = 10_000;
    // The whole test runs on a small stack: nothing may recurse once per level.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let program = compile_source(
                "chain.dl",
                ".decl edge(x: number, y: number)\n.input edge\n\
                 .decl reach(x: number)\nreach(0).\nreach(y) :- reach(x), edge(x, y).\n",
            )
            .unwrap();
            let mut engine = Engine::new(program, Options::default()).unwrap();
            let mut transaction = engine.transaction();
            for x in 0..LENGTH {
                transaction
                    .insert("edge", &[Value::Number(x), Value::Number(x + 1)])
                    .unwrap();
            }
            transaction.commit().unwrap();
            let tuple = [Value::Number(LENGTH)];
            let Explanation::Holds(derivation) = engine.why("reach", &tuple).unwrap() else {
                panic!("reach({LENGTH}) holds");
            };
            assert_eq!(derivation.nodes.len(), 2 * LENGTH as usize + 1);
            check_derivation(&engine, "reach", &tuple, &derivation).unwrap();
            let text = derivation.to_string();
            let deepest = text
                .lines()
                .map(|line| line.len() - line.trim_start().len())
                .max()
                .unwrap();
            assert!(deepest <= 2 * (MAX_DEPTH + 2), "indented {deepest} columns");
            assert!(text.starts_with("reach(10000)\n  by rule reach(y) :- reach(x), edge(x, y)."));
            assert!(
                text.contains("\n\nreach(0)   fact at chain.dl:4:1\n")
                    || text.contains("reach(0)   fact at chain.dl:4:1")
            );
            let json = serde_json::to_string(&derivation).unwrap();
            assert!(json.len() > 1_000_000);
        })
        .unwrap();
    handle.join().expect("the deep derivation is explained");
}

#[test]
fn answers_follow_transactions() {
    let mut engine = graph_engine(CLOSURES[0], &[vec![(1, 2), (2, 3)]]);
    let row = [Value::Number(1), Value::Number(3)];
    let first = engine.why("path", &row).unwrap().to_string();
    assert!(first.contains("edge(2, 3)"), "{first}");
    // A new route, then the old one cut: the cached indexes must not answer from before.
    let mut transaction = engine.transaction();
    transaction
        .insert("edge", &[Value::Number(1), Value::Number(4)])
        .unwrap();
    transaction
        .insert("edge", &[Value::Number(4), Value::Number(3)])
        .unwrap();
    transaction
        .retract("edge", &[Value::Number(2), Value::Number(3)])
        .unwrap();
    transaction.commit().unwrap();
    let second = engine.why("path", &row).unwrap();
    let Explanation::Holds(derivation) = &second else {
        panic!("path(1, 3) still holds");
    };
    check_derivation(&engine, "path", &row, derivation).unwrap();
    assert!(second.to_string().contains("edge(4, 3)"), "{second}");
    let mut transaction = engine.transaction();
    transaction
        .retract("edge", &[Value::Number(4), Value::Number(3)])
        .unwrap();
    transaction.commit().unwrap();
    assert!(matches!(
        engine.why("path", &row).unwrap(),
        Explanation::Absent(_)
    ));
}

#[test]
fn questions_are_checked_like_reads() {
    let engine = graph_engine(CLOSURES[0], &[vec![(1, 2)]]);
    let error = engine.why("route", &[Value::Number(1)]).unwrap_err();
    assert_eq!(error, EngineError::UnknownRelation("route".to_string()));
    let error = engine.why("path", &[Value::Number(1)]).unwrap_err();
    assert!(
        matches!(
            error,
            EngineError::Arity {
                expected: 2,
                given: 1,
                ..
            }
        ),
        "{error}"
    );
    let error = engine
        .why_not("path", &[Some(Value::symbol("a")), None])
        .unwrap_err();
    assert!(
        matches!(error, EngineError::Type { column: 0, .. }),
        "{error}"
    );
    let error = engine.why_not("path", &[None]).unwrap_err();
    assert!(
        matches!(
            error,
            EngineError::Arity {
                expected: 2,
                given: 1,
                ..
            }
        ),
        "{error}"
    );
}

/// The checker is what the property tests rest on: a derivation whose every step is a valid
/// rule instance, but which proves `path(1, 1)` from itself, must be rejected.
#[test]
fn the_checker_rejects_a_row_among_its_own_ancestors() {
    let engine = graph_engine(CLOSURES[0], &[vec![(1, 2), (2, 1)]]);
    let row = [Value::Number(1), Value::Number(1)];
    let Explanation::Holds(honest) = engine.why("path", &row).unwrap() else {
        panic!("path(1, 1) holds");
    };
    check_derivation(&engine, "path", &row, &honest).unwrap();
    // path(1, 1) by path(1, 2), edge(2, 1); path(1, 2) by path(1, 1), edge(1, 2).
    let node = |relation: &str, x: i64, y: i64, how: How| vigil_engine::explain::Node {
        relation: relation.to_string(),
        tuple: vec![Value::Number(x), Value::Number(y)],
        how,
    };
    let variable = |var: usize, name: &str, value: i64| vigil_engine::explain::VariableValue {
        var,
        name: name.to_string(),
        value: Value::Number(value),
    };
    let recursive = |x: i64, y: i64, z: i64, path: usize, edge: usize| How::Rule {
        rule: 1,
        location: String::new(),
        clause: String::new(),
        bindings: vec![
            variable(0, "x", x),
            variable(1, "y", y),
            variable(2, "z", z),
        ],
        premises: vec![
            Premise::Row {
                literal: "path(x, y)".to_string(),
                node: path,
            },
            Premise::Row {
                literal: "edge(y, z)".to_string(),
                node: edge,
            },
        ],
    };
    let input = |x: i64, y: i64| {
        let tuple = [Value::Number(x), Value::Number(y)];
        let found = honest
            .nodes
            .iter()
            .find(|node| node.relation == "edge" && node.tuple == tuple)
            .expect("the edge is in the honest derivation");
        found.how.clone()
    };
    let cyclic = Derivation {
        nodes: vec![
            node("path", 1, 1, recursive(1, 2, 1, 1, 2)),
            node("path", 1, 2, recursive(1, 1, 2, 0, 3)),
            node("edge", 2, 1, input(2, 1)),
            node("edge", 1, 2, input(1, 2)),
        ],
    };
    let error = check_derivation(&engine, "path", &row, &cyclic).unwrap_err();
    assert_eq!(error, "path(1, 1) is among its own ancestors");
}
