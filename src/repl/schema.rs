//! The program as the REPL shows it: its relations (for `.decls`, completion, which change
//! sets are views) and its clauses (for `.rules`). The daemon serves the same structure at
//! `GET /v1/program`, so that `vigil repl --connect` prints what a local session prints.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use vigil_engine::ir;

/// The declarations and clauses of a program.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Schema {
    pub relations: Vec<RelationSchema>,
    /// Every rule in the program's order; a clause with several heads gives one rule per head,
    /// with the same `clause`.
    pub rules: Vec<RuleSchema>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RelationSchema {
    pub name: String,
    pub columns: Vec<ColumnSchema>,
    #[serde(default)]
    pub eqrel: bool,
    /// The parameters of the `.input` directive, if there is one.
    #[serde(default)]
    pub input: Option<BTreeMap<String, String>>,
    /// The parameters of each `.output` directive.
    #[serde(default)]
    pub outputs: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    pub printsize: bool,
    /// The key columns of a keyed input (`key="..."`), from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<usize>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    /// The declared type name (`number`, `symbol`, `NodeId`, ...).
    #[serde(rename = "type")]
    pub type_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuleSchema {
    /// The relation the rule derives.
    pub head: String,
    /// The clause's source text.
    pub text: String,
    /// Which clause the rule comes from: the rules of one clause share it.
    pub clause: usize,
}

impl Schema {
    pub fn of(program: &ir::Program) -> Schema {
        let relations = program
            .relations
            .iter()
            .map(|relation| RelationSchema {
                name: relation.name.clone(),
                columns: relation
                    .columns
                    .iter()
                    .map(|column| ColumnSchema {
                        name: column.name.clone(),
                        type_name: column.type_name.clone(),
                    })
                    .collect(),
                eqrel: relation.eqrel,
                input: relation.input.as_ref().map(|io| io.parameters.clone()),
                outputs: relation
                    .outputs
                    .iter()
                    .map(|io| io.parameters.clone())
                    .collect(),
                printsize: relation.printsize,
                key: relation.feed.key.clone(),
            })
            .collect();
        let mut clauses = HashMap::new();
        let rules = program
            .rules
            .iter()
            .map(|rule| {
                let next = clauses.len();
                RuleSchema {
                    head: program.relations[rule.head].name.clone(),
                    text: rule.text.clone(),
                    clause: *clauses.entry(rule.span).or_insert(next),
                }
            })
            .collect();
        Schema { relations, rules }
    }

    pub fn relation(&self, name: &str) -> Option<&RelationSchema> {
        self.relations.iter().find(|relation| relation.name == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.relations.iter().map(|r| r.name.clone()).collect()
    }

    /// Whether the relation has an `.output` directive.
    pub fn is_output(&self, name: &str) -> bool {
        self.relation(name)
            .is_some_and(|relation| !relation.outputs.is_empty())
    }

    /// Every declaration, with its I/O directives, as they would be written in a program.
    pub fn declarations(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for relation in &self.relations {
            let columns: Vec<String> = relation
                .columns
                .iter()
                .map(|column| format!("{}: {}", column.name, column.type_name))
                .collect();
            let eqrel = if relation.eqrel { " eqrel" } else { "" };
            lines.push(format!(
                ".decl {}({}){eqrel}",
                relation.name,
                columns.join(", ")
            ));
            if let Some(input) = &relation.input {
                lines.push(directive(".input", &relation.name, input));
            }
            for output in &relation.outputs {
                lines.push(directive(".output", &relation.name, output));
            }
            if relation.printsize {
                lines.push(format!(".printsize {}", relation.name));
            }
        }
        lines
    }

    /// The text of each clause (of those that derive `relation`), once.
    pub fn clauses(&self, relation: Option<&str>) -> Vec<&str> {
        let mut seen = Vec::new();
        let mut texts = Vec::new();
        for rule in &self.rules {
            if relation.is_some_and(|name| rule.head != name) || seen.contains(&rule.clause) {
                continue;
            }
            seen.push(rule.clause);
            texts.push(rule.text.as_str());
        }
        texts
    }
}

/// `.input R(IO=stream, key="node")`.
fn directive(which: &str, relation: &str, parameters: &BTreeMap<String, String>) -> String {
    if parameters.is_empty() {
        return format!("{which} {relation}");
    }
    let parameters: Vec<String> = parameters
        .iter()
        .map(|(key, value)| match key.as_str() {
            "IO" => format!("IO={value}"),
            _ => format!("{key}={value:?}"),
        })
        .collect();
    format!("{which} {relation}({})", parameters.join(", "))
}
