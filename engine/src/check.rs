//! Checking: the syntax tree to the checked program.
//!
//! Checking resolves names (types, relations, variables), types every expression, normalises
//! rules into the shape the evaluators expect (see [`crate::ir`]), orders each rule body so that
//! it can be evaluated left to right, and stratifies the program.
//!
//! Ordering a body is also how *range restriction* is checked: a literal is scheduled once the
//! variables it reads are bound, positive atoms bind their variables, an equality `x = e` binds
//! `x` once `e` can be computed, and whatever is left unscheduled at the end reads a variable that
//! nothing binds. That is Soufflé's groundedness analysis, and the error names the first such
//! variable where it occurs.
//!
//! Aggregates follow Soufflé's scoping: a variable of an aggregate body that also occurs outside
//! the aggregate is *injected* (bound outside, it groups the aggregate); one that occurs only
//! inside is *local*, and it is not visible outside (the witness rule).
//!
//! Checking never stops at the first problem: every clause is checked, and a clause with an
//! error is left out of the program, which is then only good for reporting.

use crate::diag::{Diagnostic, SourceMap, Span};
use crate::ir::{self, Function, RelationId, VarId};
use crate::syntax::ast::{
    self, AggregateKind, BinaryOp, CompareOp, DirectiveKind, Expr, NumberLiteral, TypeDefinition,
    UnaryOp,
};
use crate::value::{Type, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Checks a parsed program. Returns the program (meaningful only when no error was reported)
/// and every problem found.
pub fn check(program: &ast::Program, sources: SourceMap) -> (ir::Program, Vec<Diagnostic>) {
    let mut checker = Checker {
        sources,
        diagnostics: Vec::new(),
        ..Checker::default()
    };
    checker.declare_types(program);
    checker.declare_relations(program);
    checker.apply_directives(program);
    checker.translate_clauses(program);
    checker.add_eqrel_rules();
    let strata = checker.stratify();
    let Checker {
        sources,
        diagnostics,
        relations,
        rules,
        ..
    } = checker;
    (
        ir::Program {
            relations,
            rules,
            strata,
            sources,
        },
        diagnostics,
    )
}

/// A declared type, resolved.
#[derive(Clone, Debug)]
struct TypeInfo {
    primitive: Type,
    /// The declared supertype of a subtype (`.type T <: S`).
    parent: Option<String>,
    /// The members of a union.
    members: Vec<String>,
}

#[derive(Default)]
struct Checker {
    sources: SourceMap,
    diagnostics: Vec<Diagnostic>,
    types: HashMap<String, TypeInfo>,
    relations: Vec<ir::Relation>,
    relation_ids: HashMap<String, RelationId>,
    rules: Vec<ir::Rule>,
    /// Where each rule reads each relation, for stratification errors: (rule, relation, negative
    /// or aggregated, span of the literal).
    dependencies: Vec<(usize, RelationId, bool, Span)>,
}

const PRIMITIVES: [(&str, Type); 4] = [
    ("number", Type::Number),
    ("unsigned", Type::Unsigned),
    ("float", Type::Float),
    ("symbol", Type::Symbol),
];

const IGNORED_QUALIFIERS: [&str; 10] = [
    "btree",
    "btree_delete",
    "brie",
    "inline",
    "no_inline",
    "magic",
    "no_magic",
    "override",
    "overridable",
    "eqrel",
];

impl Checker {
    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(span, message));
    }

    // ----- types -------------------------------------------------------------------------------

    fn declare_types(&mut self, program: &ast::Program) {
        for (name, ty) in PRIMITIVES {
            self.types.insert(
                name.to_string(),
                TypeInfo {
                    primitive: ty,
                    parent: None,
                    members: vec![],
                },
            );
        }
        let mut declared: BTreeMap<String, &ast::TypeDecl> = BTreeMap::new();
        for item in &program.items {
            if let ast::Item::Type(decl) = item {
                if self.types.contains_key(&decl.name.name)
                    || declared.contains_key(&decl.name.name)
                {
                    self.error(
                        decl.name.span,
                        format!("type `{}` is declared twice", decl.name.name),
                    );
                    continue;
                }
                declared.insert(decl.name.name.clone(), decl);
            }
        }
        // Resolve in dependency order; a cycle or an unknown name is an error.
        let names: Vec<String> = declared.keys().cloned().collect();
        for name in names {
            let mut visiting = Vec::new();
            self.resolve_type(&name, &declared, &mut visiting);
        }
    }

    fn resolve_type(
        &mut self,
        name: &str,
        declared: &BTreeMap<String, &ast::TypeDecl>,
        visiting: &mut Vec<String>,
    ) -> Option<Type> {
        if let Some(info) = self.types.get(name) {
            return Some(info.primitive);
        }
        let decl = *declared.get(name)?;
        if visiting.iter().any(|v| v == name) {
            self.error(
                decl.name.span,
                format!("type `{name}` is defined in terms of itself"),
            );
            return None;
        }
        visiting.push(name.to_string());
        let mut resolve_member = |checker: &mut Checker, ident: &ast::Ident| -> Option<Type> {
            if !checker.types.contains_key(&ident.name) && !declared.contains_key(&ident.name) {
                checker.error(ident.span, format!("unknown type `{}`", ident.name));
                return None;
            }
            checker.resolve_type(&ident.name, declared, visiting)
        };
        let info = match &decl.definition {
            TypeDefinition::Subtype(base) => resolve_member(self, base).map(|primitive| TypeInfo {
                primitive,
                parent: Some(base.name.clone()),
                members: vec![],
            }),
            TypeDefinition::Alias(target) => resolve_member(self, target).map(|primitive| {
                let target_info = self.types.get(&target.name).cloned();
                target_info.unwrap_or(TypeInfo {
                    primitive,
                    parent: None,
                    members: vec![],
                })
            }),
            TypeDefinition::Union(members) => {
                let mut primitive = None;
                let mut ok = true;
                for member in members {
                    match resolve_member(self, member) {
                        Some(ty) if primitive.is_none() || primitive == Some(ty) => {
                            primitive = Some(ty)
                        }
                        Some(ty) => {
                            self.error(
                                member.span,
                                format!(
                                    "union type `{name}` mixes `{}` and `{ty}`: its members must have one primitive type",
                                    primitive.map_or("?", Type::name)
                                ),
                            );
                            ok = false;
                        }
                        None => ok = false,
                    }
                }
                primitive.filter(|_| ok).map(|primitive| TypeInfo {
                    primitive,
                    parent: None,
                    members: members.iter().map(|m| m.name.clone()).collect(),
                })
            }
        };
        visiting.pop();
        let info = info?;
        let primitive = info.primitive;
        self.types.insert(name.to_string(), info);
        Some(primitive)
    }

    /// Whether every value of type `sub` is a value of type `sup`.
    fn is_subtype(&self, sub: &str, sup: &str) -> bool {
        if sub == sup {
            return true;
        }
        let (Some(sub_info), Some(sup_info)) = (self.types.get(sub), self.types.get(sup)) else {
            return false;
        };
        if sub_info.primitive != sup_info.primitive {
            return false;
        }
        if PRIMITIVES.iter().any(|(name, _)| *name == sup) {
            return true;
        }
        if sup_info
            .members
            .iter()
            .any(|member| self.is_subtype(sub, member))
        {
            return true;
        }
        if !sub_info.members.is_empty() {
            return sub_info
                .members
                .iter()
                .all(|member| self.is_subtype(member, sup));
        }
        match &sub_info.parent {
            Some(parent) => self.is_subtype(parent, sup),
            None => false,
        }
    }

    // ----- relations ---------------------------------------------------------------------------

    fn declare_relations(&mut self, program: &ast::Program) {
        for item in &program.items {
            match item {
                ast::Item::Relation(decl) => self.declare_relation(decl),
                ast::Item::Unsupported { what, span } => {
                    self.error(*span, unsupported(what));
                }
                _ => {}
            }
        }
    }

    fn declare_relation(&mut self, decl: &ast::RelationDecl) {
        let mut columns = Vec::new();
        let mut ok = true;
        let mut seen = HashSet::new();
        for attribute in &decl.attributes {
            if !seen.insert(attribute.name.name.as_str()) {
                self.error(
                    attribute.name.span,
                    format!("attribute `{}` is declared twice", attribute.name.name),
                );
            }
            match self.types.get(&attribute.ty.name) {
                Some(info) => columns.push(ir::Column {
                    name: attribute.name.name.clone(),
                    ty: info.primitive,
                    type_name: attribute.ty.name.clone(),
                }),
                None => {
                    self.error(
                        attribute.ty.span,
                        format!("unknown type `{}`", attribute.ty.name),
                    );
                    ok = false;
                }
            }
        }
        let mut eqrel = false;
        let mut qualifier_directives = Vec::new();
        for qualifier in &decl.qualifiers {
            match qualifier.name.as_str() {
                "eqrel" => eqrel = true,
                "input" => qualifier_directives.push(DirectiveKind::Input),
                "output" => qualifier_directives.push(DirectiveKind::Output),
                "printsize" => qualifier_directives.push(DirectiveKind::PrintSize),
                name if IGNORED_QUALIFIERS.contains(&name) => {}
                // The parser reports unknown qualifiers.
                _ => {}
            }
        }
        if eqrel && (columns.len() != 2 || columns[0].ty != columns[1].ty) && ok {
            self.error(
                decl.span,
                "an `eqrel` relation must have two columns of the same type".to_string(),
            );
        }
        for name in &decl.names {
            if self.relation_ids.contains_key(&name.name) {
                self.error(
                    name.span,
                    format!("relation `{}` is declared twice", name.name),
                );
                continue;
            }
            let id = self.relations.len();
            self.relation_ids.insert(name.name.clone(), id);
            let parameters = ir::IoParameters {
                parameters: BTreeMap::new(),
                span: decl.span,
            };
            self.relations.push(ir::Relation {
                name: name.name.clone(),
                columns: columns.clone(),
                span: name.span,
                input: qualifier_directives
                    .contains(&DirectiveKind::Input)
                    .then(|| parameters.clone()),
                outputs: if qualifier_directives.contains(&DirectiveKind::Output) {
                    vec![parameters.clone()]
                } else {
                    vec![]
                },
                printsize: qualifier_directives.contains(&DirectiveKind::PrintSize),
                eqrel,
                derived: false,
                writable: false,
                feed: ir::Feed::default(),
            });
        }
    }

    fn lookup_relation(&mut self, ident: &ast::Ident) -> Option<RelationId> {
        match self.relation_ids.get(&ident.name) {
            Some(&id) => Some(id),
            None => {
                self.diagnostics.push(
                    Diagnostic::error(ident.span, format!("unknown relation `{}`", ident.name))
                        .with_hint("declare it with `.decl`"),
                );
                None
            }
        }
    }

    fn apply_directives(&mut self, program: &ast::Program) {
        for item in &program.items {
            let ast::Item::Directive(directive) = item else {
                continue;
            };
            if directive.kind == DirectiveKind::LimitSize {
                self.error(
                    directive.span,
                    "the `.limitsize` directive is not supported",
                );
                continue;
            }
            let Some(parameters) = self.directive_parameters(directive) else {
                continue;
            };
            for ident in &directive.relations {
                let Some(id) = self.lookup_relation(ident) else {
                    continue;
                };
                let relation = &mut self.relations[id];
                match directive.kind {
                    DirectiveKind::Input => relation.input = Some(parameters.clone()),
                    DirectiveKind::Output => relation.outputs.push(parameters.clone()),
                    DirectiveKind::PrintSize => relation.printsize = true,
                    DirectiveKind::LimitSize => {}
                }
            }
        }
    }

    fn directive_parameters(&mut self, directive: &ast::Directive) -> Option<ir::IoParameters> {
        let mut parameters = BTreeMap::new();
        let mut ok = true;
        for parameter in &directive.parameters {
            let key = parameter.key.name.as_str();
            let value = parameter.value.clone();
            match key {
                "IO" | "io" => {
                    let value = value.to_ascii_lowercase();
                    let allowed: &[&str] = match directive.kind {
                        DirectiveKind::Input => &["file", "stream", "clock"],
                        DirectiveKind::Output => &["file", "stdout"],
                        _ => &["file", "stdout"],
                    };
                    if !allowed.contains(&value.as_str()) {
                        self.diagnostics.push(
                            Diagnostic::error(
                                parameter.value_span,
                                format!("`IO={value}` is not supported here"),
                            )
                            .with_hint(format!("supported: {}", allowed.join(", "))),
                        );
                        ok = false;
                    }
                    parameters.insert("IO".to_string(), value);
                }
                "filename" | "delimiter" | "key" | "stamp" | "headers" | "attributeNames"
                | "rfc4180" | "fact-dir" | "output-dir" => {
                    if key == "delimiter" && value.is_empty() {
                        self.error(parameter.value_span, "the delimiter must not be empty");
                        ok = false;
                    }
                    parameters.insert(key.to_string(), value);
                }
                _ => {
                    self.diagnostics.push(
                        Diagnostic::error(
                            parameter.key.span,
                            format!("directive parameter `{key}` is not supported"),
                        )
                        .with_hint("supported: IO, filename, delimiter, key, stamp"),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(ir::IoParameters {
            parameters,
            span: directive.span,
        })
    }

    // ----- clauses -----------------------------------------------------------------------------

    fn translate_clauses(&mut self, program: &ast::Program) {
        for item in &program.items {
            let ast::Item::Clause(clause) = item else {
                continue;
            };
            let conjunctions = match &clause.body {
                None => vec![vec![]],
                Some(body) => expand_disjunction(body),
            };
            let text = self.sources.text(clause.span).to_string();
            for head in &clause.heads {
                for conjunction in &conjunctions {
                    self.translate_rule(head, conjunction, clause.span, &text);
                }
            }
        }
        let derived: HashSet<RelationId> = self.rules.iter().map(|rule| rule.head).collect();
        for (id, relation) in self.relations.iter_mut().enumerate() {
            relation.derived = derived.contains(&id);
            relation.writable = relation.input.is_some() || !relation.derived;
        }
        self.resolve_feeds();
    }

    /// Reads `IO=stream`, `key`, `stamp` and `IO=clock` into each input relation's [`ir::Feed`].
    fn resolve_feeds(&mut self) {
        let mut clock: Option<String> = None;
        for id in 0..self.relations.len() {
            let relation = &self.relations[id];
            let Some(input) = relation.input.clone() else {
                continue;
            };
            let span = input.span;
            let name = relation.name.clone();
            let columns = relation.columns.clone();
            let io = input.get("IO").unwrap_or("file");
            let mut feed = ir::Feed {
                stream: io == "stream",
                clock: io == "clock",
                ..ir::Feed::default()
            };
            let column_of = |text: &str| columns.iter().position(|c| c.name == text.trim());
            let known = columns
                .iter()
                .map(|c| format!("`{}`", c.name))
                .collect::<Vec<_>>()
                .join(", ");
            if let Some(key) = input.get("key") {
                let mut list = Vec::new();
                for part in key.split(',') {
                    match column_of(part) {
                        Some(column) if list.contains(&column) => self.error(
                            span,
                            format!("column `{}` appears twice in the key of `{name}`", part.trim()),
                        ),
                        Some(column) => list.push(column),
                        None => self.diagnostics.push(
                            Diagnostic::error(
                                span,
                                format!("the key of `{name}` names `{}`, which is not one of its columns", part.trim()),
                            )
                            .with_hint(format!("the columns are {known}")),
                        ),
                    }
                }
                list.sort_unstable();
                feed.key = Some(list);
            }
            if let Some(stamp) = input.get("stamp") {
                match column_of(stamp) {
                    None => self.diagnostics.push(
                        Diagnostic::error(
                            span,
                            format!("the stamp of `{name}` names `{stamp}`, which is not one of its columns"),
                        )
                        .with_hint(format!("the columns are {known}")),
                    ),
                    Some(_) if feed.key.is_none() => self.diagnostics.push(
                        Diagnostic::error(span, format!("`stamp` on `{name}` needs a `key`"))
                            .with_hint("a stamp records when the non-key columns of a key last changed"),
                    ),
                    Some(column) if !feed.is_key(column) && columns[column].ty == Type::Number => {
                        feed.stamp = Some(column);
                    }
                    Some(column) if columns[column].ty != Type::Number => self.error(
                        span,
                        format!("the stamp column `{stamp}` of `{name}` must be a `number` (seconds), not a `{}`", columns[column].ty),
                    ),
                    Some(_) => self.error(
                        span,
                        format!("the stamp column `{stamp}` of `{name}` must not be a key column"),
                    ),
                }
            }
            if feed.clock {
                if columns.len() != 1 || columns[0].ty != Type::Number {
                    self.error(
                        span,
                        format!("the clock relation `{name}` must have one `number` column (the time in seconds)"),
                    );
                }
                if feed.key.is_some() || feed.stamp.is_some() {
                    self.error(
                        span,
                        format!("the clock relation `{name}` takes no `key` or `stamp`"),
                    );
                }
                if let Some(other) = &clock {
                    self.error(
                        span,
                        format!("`{name}` and `{other}` are both clocks; a program has one"),
                    );
                }
                clock = Some(name.clone());
            }
            if self.relations[id].derived && (feed.key.is_some() || feed.clock) {
                let what = if feed.clock {
                    "the clock"
                } else {
                    "a keyed input"
                };
                self.diagnostics.push(
                    Diagnostic::error(
                        self.relations[id].span,
                        format!("`{name}` is {what}, so no fact or rule may write it"),
                    )
                    .with_hint(if feed.clock {
                        "transactions move the clock"
                    } else {
                        "a key holds one tuple, which only inserts and facts files may replace; derive into another relation"
                    }),
                );
            }
            self.relations[id].feed = feed;
        }
    }

    fn translate_rule(&mut self, head: &ast::Atom, body: &[&ast::Literal], span: Span, text: &str) {
        let Some(head_id) = self.lookup_relation(&head.relation) else {
            // Still check the body, for its own errors.
            let mut builder = RuleBuilder::new(self);
            builder.check_body_only(body);
            return;
        };
        let builder = RuleBuilder::new(self);
        if let Some(rule) = builder.build(head_id, head, body, span, text) {
            let rule_index = self.rules.len();
            let mut dependencies = Vec::new();
            collect_dependencies(&rule.body, false, &mut |relation, negative, span| {
                dependencies.push((rule_index, relation, negative, span))
            });
            self.dependencies.extend(dependencies);
            self.rules.push(rule);
        }
    }

    /// `eq(x, y)` declared `eqrel` gets the rules that close it: symmetric, transitive, and
    /// reflexive on the elements that occur in it.
    fn add_eqrel_rules(&mut self) {
        for id in 0..self.relations.len() {
            let relation = &self.relations[id];
            if !relation.eqrel
                || relation.columns.len() != 2
                || relation.columns[0].ty != relation.columns[1].ty
            {
                continue;
            }
            let ty = relation.columns[0].ty;
            let span = relation.span;
            let name = relation.name.clone();
            let variables = |names: &[&str]| {
                names
                    .iter()
                    .map(|n| ir::Variable {
                        name: n.to_string(),
                        ty,
                    })
                    .collect::<Vec<_>>()
            };
            let atom = |args: Vec<Option<VarId>>| ir::Atom {
                relation: id,
                args,
                span,
            };
            let var = |v: VarId| ir::Expr::Var(v, ty);
            let rules = [
                // eq(y, x) :- eq(x, y).
                (
                    variables(&["x", "y"]),
                    vec![atom(vec![Some(0), Some(1)])],
                    vec![var(1), var(0)],
                    "symmetric",
                ),
                // eq(x, z) :- eq(x, y), eq(y, z).
                (
                    variables(&["x", "y", "z"]),
                    vec![atom(vec![Some(0), Some(1)]), atom(vec![Some(1), Some(2)])],
                    vec![var(0), var(2)],
                    "transitive",
                ),
                // eq(x, x) :- eq(x, _).
                (
                    variables(&["x"]),
                    vec![atom(vec![Some(0), None])],
                    vec![var(0), var(0)],
                    "reflexive",
                ),
            ];
            for (variables, atoms, head_args, what) in rules {
                let body: Vec<ir::Literal> = atoms.into_iter().map(ir::Literal::Positive).collect();
                let rule_index = self.rules.len();
                self.dependencies
                    .extend(body.iter().filter_map(|literal| match literal {
                        ir::Literal::Positive(atom) => {
                            Some((rule_index, atom.relation, false, span))
                        }
                        _ => None,
                    }));
                self.rules.push(ir::Rule {
                    head: id,
                    head_args,
                    body,
                    variables,
                    span,
                    text: format!("({what} closure of eqrel `{name}`)"),
                });
            }
            self.relations[id].derived = true;
        }
    }

    // ----- stratification ----------------------------------------------------------------------

    fn stratify(&mut self) -> Vec<ir::Stratum> {
        let count = self.relations.len();
        let mut edges: Vec<Vec<RelationId>> = vec![Vec::new(); count];
        for &(rule, relation, _, _) in &self.dependencies {
            let head = self.rules[rule].head;
            if !edges[head].contains(&relation) {
                edges[head].push(relation);
            }
        }
        let components = strongly_connected_components(&edges);
        let mut component_of = vec![0; count];
        for (index, component) in components.iter().enumerate() {
            for &relation in component {
                component_of[relation] = index;
            }
        }
        let dependencies = std::mem::take(&mut self.dependencies);
        for &(rule, relation, negative, span) in &dependencies {
            let head = self.rules[rule].head;
            if negative && component_of[head] == component_of[relation] {
                let cycle = self.describe_cycle(&edges, head, relation, &component_of);
                self.diagnostics.push(
                    Diagnostic::error(
                        span,
                        format!(
                            "the program cannot be stratified: `{}` depends on `{}` through negation or aggregation, in the cycle {cycle}",
                            self.relations[head].name, self.relations[relation].name
                        ),
                    )
                    .with_hint("a relation may not be negated or aggregated by a rule that it feeds"),
                );
            }
        }
        // Tarjan's algorithm yields components with dependencies first.
        components
            .into_iter()
            .map(|mut relations| {
                relations.sort_unstable();
                let recursive = relations.len() > 1 || edges[relations[0]].contains(&relations[0]);
                ir::Stratum {
                    relations,
                    recursive,
                }
            })
            .collect()
    }

    /// `a -> b -> a`: a path from `head` through `relation` back to `head`.
    fn describe_cycle(
        &self,
        edges: &[Vec<RelationId>],
        head: RelationId,
        relation: RelationId,
        component_of: &[usize],
    ) -> String {
        // Breadth-first search from `relation` back to `head` inside the component.
        let component = component_of[head];
        let mut previous: HashMap<RelationId, RelationId> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([relation]);
        let mut seen = HashSet::from([relation]);
        while let Some(current) = queue.pop_front() {
            if current == head {
                break;
            }
            for &next in &edges[current] {
                if component_of[next] == component && seen.insert(next) {
                    previous.insert(next, current);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![head];
        let mut current = head;
        while current != relation {
            match previous.get(&current) {
                Some(&p) => {
                    path.push(p);
                    current = p;
                }
                None => break,
            }
        }
        // path is head <- ... <- relation reversed; the cycle reads head -> relation -> ... -> head
        let mut names = vec![self.relations[head].name.clone()];
        names.extend(path.iter().rev().map(|&r| self.relations[r].name.clone()));
        names.dedup();
        if names.len() == 1 {
            names.push(names[0].clone());
        }
        names.join(" -> ")
    }
}

/// Expands a body with `;` and parenthesised groups into alternative conjunctions.
fn expand_disjunction(disjunction: &ast::Disjunction) -> Vec<Vec<&ast::Literal>> {
    let mut result = Vec::new();
    for conjunction in disjunction {
        let mut alternatives: Vec<Vec<&ast::Literal>> = vec![vec![]];
        for literal in conjunction {
            match literal {
                ast::Literal::Group(inner, _) => {
                    let inner_alternatives = expand_disjunction(inner);
                    let mut next = Vec::new();
                    for prefix in &alternatives {
                        for inner in &inner_alternatives {
                            let mut combined = prefix.clone();
                            combined.extend(inner.iter().copied());
                            next.push(combined);
                        }
                    }
                    alternatives = next;
                }
                literal => alternatives.iter_mut().for_each(|alt| alt.push(literal)),
            }
        }
        result.extend(alternatives);
    }
    result
}

fn collect_dependencies(
    body: &[ir::Literal],
    inside_aggregate: bool,
    f: &mut impl FnMut(RelationId, bool, Span),
) {
    for literal in body {
        match literal {
            ir::Literal::Positive(atom) => f(atom.relation, inside_aggregate, atom.span),
            ir::Literal::Negative(atom) => f(atom.relation, true, atom.span),
            ir::Literal::Aggregate(aggregate) => collect_dependencies(&aggregate.body, true, f),
            _ => {}
        }
    }
}

/// Tarjan's strongly connected components, in reverse topological order of the condensation
/// (a component comes after every component it has edges to).
fn strongly_connected_components(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        edges: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        components: Vec<Vec<usize>>,
    }
    // Iterative, so that long dependency chains cannot overflow the stack.
    fn visit(state: &mut State, root: usize) {
        let mut work = vec![(root, 0usize)];
        state.index[root] = Some(state.next);
        state.low[root] = state.next;
        state.next += 1;
        state.stack.push(root);
        state.on_stack[root] = true;
        while let Some(&mut (node, ref mut edge)) = work.last_mut() {
            if *edge < state.edges[node].len() {
                let next = state.edges[node][*edge];
                *edge += 1;
                match state.index[next] {
                    None => {
                        state.index[next] = Some(state.next);
                        state.low[next] = state.next;
                        state.next += 1;
                        state.stack.push(next);
                        state.on_stack[next] = true;
                        work.push((next, 0));
                    }
                    Some(index) if state.on_stack[next] => {
                        state.low[node] = state.low[node].min(index);
                    }
                    Some(_) => {}
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    state.low[parent] = state.low[parent].min(state.low[node]);
                }
                if Some(state.low[node]) == state.index[node] {
                    let mut component = Vec::new();
                    while let Some(member) = state.stack.pop() {
                        state.on_stack[member] = false;
                        component.push(member);
                        if member == node {
                            break;
                        }
                    }
                    state.components.push(component);
                }
            }
        }
    }
    let count = edges.len();
    let mut state = State {
        edges,
        index: vec![None; count],
        low: vec![0; count],
        on_stack: vec![false; count],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for node in 0..count {
        if state.index[node].is_none() {
            visit(&mut state, node);
        }
    }
    state.components
}

// ----- rules ---------------------------------------------------------------------------------

/// An expression with variables resolved and aggregates and ranges pulled out into literals of
/// their own, not yet typed.
#[derive(Clone, Debug)]
enum Term {
    Var(VarId, Span),
    Integer(i128, Span),
    Float(f64, Span),
    String(String, Span),
    Unary(UnaryOp, Box<Term>, Span),
    Binary(BinaryOp, Box<Term>, Box<Term>, Span),
    Call(Function, Vec<Term>, Span),
}

impl Term {
    fn span(&self) -> Span {
        match self {
            Term::Var(_, span)
            | Term::Integer(_, span)
            | Term::Float(_, span)
            | Term::String(_, span)
            | Term::Unary(_, _, span)
            | Term::Binary(_, _, _, span)
            | Term::Call(_, _, span) => *span,
        }
    }

    fn variables(&self, out: &mut Vec<(VarId, Span)>) {
        match self {
            Term::Var(var, span) => out.push((*var, *span)),
            Term::Integer(..) | Term::Float(..) | Term::String(..) => {}
            Term::Unary(_, arg, _) => arg.variables(out),
            Term::Binary(_, lhs, rhs, _) => {
                lhs.variables(out);
                rhs.variables(out);
            }
            Term::Call(_, args, _) => args.iter().for_each(|arg| arg.variables(out)),
        }
    }
}

/// A body literal before ordering.
#[derive(Clone, Debug)]
enum Item {
    Positive(ir::Atom),
    Negative(ir::Atom),
    Compare(CompareOp, Term, Term, Span),
    Contains(Term, Term, Span),
    Match(Term, Term, Span),
    Bool(bool, Span),
    /// `!contains(...)` or `!match(...)`.
    Not(Box<Item>),
    /// `var = term`, introduced for an expression in a negated atom.
    Assign(VarId, Term, Span),
    Range(VarId, Vec<Term>, Span),
    Aggregate(PendingAggregate),
}

#[derive(Clone, Debug)]
struct PendingAggregate {
    result: VarId,
    kind: AggregateKind,
    target: Option<Term>,
    body: Vec<Item>,
    /// Variables of the body that belong to the enclosing scope.
    injected: BTreeSet<VarId>,
    span: Span,
}

struct VariableInfo {
    name: String,
    ty: Option<Type>,
    /// The declared type names of the columns the variable occurs in, for subtype checks.
    declared: Option<(String, Span)>,
    /// The type a head column gives the variable, used when nothing else types it
    /// (`u = range(0, 3)` for an unsigned head column).
    hint: Option<Type>,
    /// The first place the variable occurs.
    occurrence: Option<Span>,
    /// The first place it occurs outside any aggregate.
    outer_occurrence: Option<Span>,
}

struct RuleBuilder<'c> {
    checker: &'c mut Checker,
    /// Variables that some positive atom of the body being ordered binds.
    atom_bound: HashSet<VarId>,
    variables: Vec<VariableInfo>,
    /// Errors found; the rule is dropped if there are any.
    failed: bool,
}

/// A scope of variable names: the rule body, or an aggregate body inside it.
#[derive(Clone, Default)]
struct Scope {
    names: HashMap<String, VarId>,
    /// Names that occur outside the aggregate being translated (only for aggregate scopes).
    outer: HashMap<String, VarId>,
    /// The scope of an aggregate body: `_` in its atoms is a local variable, since an
    /// aggregate ranges over the tuples its body matches (`count : { e(x, _) }` counts the
    /// tuples of `e` with `x` first, as in Soufflé).
    aggregate: bool,
}

impl<'c> RuleBuilder<'c> {
    fn new(checker: &'c mut Checker) -> RuleBuilder<'c> {
        RuleBuilder {
            checker,
            atom_bound: HashSet::new(),
            variables: Vec::new(),
            failed: false,
        }
    }

    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.failed = true;
        self.checker.error(span, message);
    }

    fn fresh(&mut self, name: impl Into<String>, ty: Option<Type>) -> VarId {
        self.variables.push(VariableInfo {
            name: name.into(),
            ty,
            hint: None,
            occurrence: None,
            outer_occurrence: None,
            declared: None,
        });
        self.variables.len() - 1
    }

    /// The variable named `name` at `span`, recording where it occurs.
    fn occurrence(&mut self, scope: &mut Scope, name: &str, span: Span) -> VarId {
        let var = self.variable(scope, name);
        let info = &mut self.variables[var];
        info.occurrence.get_or_insert(span);
        if !scope.aggregate {
            info.outer_occurrence.get_or_insert(span);
        }
        var
    }

    fn variable(&mut self, scope: &mut Scope, name: &str) -> VarId {
        if let Some(&var) = scope.names.get(name) {
            return var;
        }
        if let Some(&var) = scope.outer.get(name) {
            scope.names.insert(name.to_string(), var);
            return var;
        }
        let var = self.fresh(name, None);
        scope.names.insert(name.to_string(), var);
        var
    }

    /// Checks a body whose head could not be resolved, for the errors in it.
    fn check_body_only(&mut self, body: &[&ast::Literal]) {
        let mut scope = Scope::default();
        let mut outer_names = HashSet::new();
        for literal in body {
            collect_outer_names(literal, &mut outer_names);
        }
        let mut items = Vec::new();
        for literal in body {
            self.translate_literal(literal, &mut scope, &mut items);
        }
    }

    fn build(
        mut self,
        head_id: RelationId,
        head: &ast::Atom,
        body: &[&ast::Literal],
        span: Span,
        text: &str,
    ) -> Option<ir::Rule> {
        let mut scope = Scope::default();
        // Names outside any aggregate are the rule's own variables; allocate them first so
        // that aggregates can tell injected names from local ones.
        let mut outer_names = HashSet::new();
        for arg in &head.args {
            collect_expr_names(arg, &mut outer_names);
        }
        for literal in body {
            collect_outer_names(literal, &mut outer_names);
        }
        let mut outer_names: Vec<String> = outer_names.into_iter().collect();
        outer_names.sort();
        for name in &outer_names {
            self.variable(&mut scope, name);
        }

        let mut items = Vec::new();
        for literal in body {
            self.translate_literal(literal, &mut scope, &mut items);
        }
        let head_relation = &self.checker.relations[head_id];
        let head_types: Vec<(Type, String)> = head_relation
            .columns
            .iter()
            .map(|c| (c.ty, c.type_name.clone()))
            .collect();
        let head_name = head_relation.name.clone();
        if head.args.len() != head_types.len() {
            self.error(
                head.span,
                format!(
                    "relation `{head_name}` has {}, but {} arguments are given",
                    crate::diag::columns(head_types.len()),
                    head.args.len()
                ),
            );
            return None;
        }
        let mut head_terms = Vec::new();
        for arg in &head.args {
            if let Expr::Wildcard(span) = arg {
                self.error(
                    *span,
                    "`_` is not allowed in a head: every head column needs a value",
                );
                continue;
            }
            if let Some(term) = self.translate_expr(arg, &mut scope, &mut items) {
                head_terms.push(term);
            }
        }
        if self.failed {
            return None;
        }
        for (term, (ty, _)) in head_terms.iter().zip(&head_types) {
            if let Term::Var(var, _) = term {
                self.variables[*var].hint.get_or_insert(*ty);
            }
        }
        let mut bound = BTreeSet::new();
        let ordered = self.schedule(items, &mut bound);
        let ordered = ordered?;
        for term in &head_terms {
            let mut vars = Vec::new();
            term.variables(&mut vars);
            if let Some(&(var, span)) = vars.iter().find(|(var, _)| !bound.contains(var)) {
                let name = self.variables[var].name.clone();
                self.checker.diagnostics.push(
                    Diagnostic::error(span, format!("variable `{name}` in the head is not bound by the body"))
                        .with_hint("every head variable must occur in a positive atom of the body, or be assigned from bound variables"),
                );
                self.failed = true;
            }
        }
        if self.failed {
            return None;
        }
        // Head arguments take the column types; check declared subtypes of head variables.
        let mut head_args = Vec::new();
        for (term, (ty, type_name)) in head_terms.iter().zip(&head_types) {
            if let Term::Var(var, span) = term
                && let Some((declared, _)) = &self.variables[*var].declared
                && !self.checker.is_subtype(declared, type_name)
                && self.variables[*var].ty == Some(*ty)
            {
                let message = format!(
                    "type mismatch: variable `{}` has type `{declared}`, which is not a subtype of the column type `{type_name}` of `{head_name}`",
                    self.variables[*var].name
                );
                self.error(*span, message);
                continue;
            }
            if let Some(expr) = self.lower(term, Some(*ty)) {
                if expr.ty() != *ty {
                    self.error(
                        term.span(),
                        format!(
                            "type mismatch: `{head_name}` expects a `{ty}` here, but this is a `{}`",
                            expr.ty()
                        ),
                    );
                } else {
                    head_args.push(expr);
                }
            }
        }
        let body = self.lower_items(ordered);
        if self.failed {
            return None;
        }
        let variables = self
            .variables
            .iter()
            .map(|info| ir::Variable {
                name: info.name.clone(),
                ty: info.ty.unwrap_or(Type::Number),
            })
            .collect();
        Some(ir::Rule {
            head: head_id,
            head_args,
            body: body?,
            variables,
            span,
            text: text.to_string(),
        })
    }

    // --- translation of literals and expressions into items and terms ---

    fn translate_literal(
        &mut self,
        literal: &ast::Literal,
        scope: &mut Scope,
        items: &mut Vec<Item>,
    ) {
        match literal {
            ast::Literal::Atom(atom) => {
                if let Some(atom) = self.translate_atom(atom, scope, items, false) {
                    items.push(Item::Positive(atom));
                }
            }
            ast::Literal::Negated(atom, _) => {
                if let Some(atom) = self.translate_atom(atom, scope, items, true) {
                    items.push(Item::Negative(atom));
                }
            }
            ast::Literal::Comparison {
                op: CompareOp::Eq,
                lhs: Expr::Variable(ident),
                rhs:
                    Expr::Call {
                        name,
                        args,
                        span: call_span,
                    },
                span,
            } if name.name == "range" => {
                // `x = range(...)` binds `x` itself, so that `x` keeps the type its other
                // occurrences give it.
                let var = self.occurrence(scope, &ident.name, ident.span);
                let mut terms = Vec::new();
                for arg in args {
                    match self.translate_expr(arg, scope, items) {
                        Some(term) => terms.push(term),
                        None => return,
                    }
                }
                if !(2..=3).contains(&terms.len()) {
                    self.error(
                        *call_span,
                        format!(
                            "`range` takes 2 or 3 arguments, but {} are given",
                            terms.len()
                        ),
                    );
                    return;
                }
                items.push(Item::Range(var, terms, *span));
            }
            ast::Literal::Comparison { op, lhs, rhs, span } => {
                let lhs = self.translate_expr(lhs, scope, items);
                let rhs = self.translate_expr(rhs, scope, items);
                if let (Some(lhs), Some(rhs)) = (lhs, rhs) {
                    items.push(Item::Compare(*op, lhs, rhs, *span));
                }
            }
            ast::Literal::Bool(value, span) => items.push(Item::Bool(*value, *span)),
            ast::Literal::Test(Expr::Unary {
                op: UnaryOp::LogicalNot,
                arg,
                ..
            }) => {
                let mut inner = Vec::new();
                self.translate_literal(&ast::Literal::Test((**arg).clone()), scope, &mut inner);
                for item in inner {
                    items.push(match item {
                        Item::Contains(a, b, span) => {
                            Item::Not(Box::new(Item::Contains(a, b, span)))
                        }
                        Item::Match(a, b, span) => Item::Not(Box::new(Item::Match(a, b, span))),
                        other => other,
                    });
                }
            }
            ast::Literal::Test(expr) => {
                let Expr::Call { name, args, span } = expr else {
                    self.error(expr.span(), "this expression is not a condition");
                    return;
                };
                let condition = name.name.as_str();
                if condition != "contains" && condition != "match" {
                    self.error(
                        name.span,
                        format!(
                            "`{condition}` is not a condition; only `contains` and `match` are"
                        ),
                    );
                    return;
                }
                if args.len() != 2 {
                    self.error(
                        *span,
                        format!(
                            "`{condition}` takes 2 arguments, but {} are given",
                            args.len()
                        ),
                    );
                    return;
                }
                let first = self.translate_expr(&args[0], scope, items);
                let second = self.translate_expr(&args[1], scope, items);
                if let (Some(first), Some(second)) = (first, second) {
                    items.push(if condition == "contains" {
                        Item::Contains(first, second, *span)
                    } else {
                        Item::Match(first, second, *span)
                    });
                }
            }
            ast::Literal::Group(disjunction, span) => {
                // Groups are expanded before translation; a group left here is one inside an
                // aggregate, which would need a disjunction inside the aggregate.
                let _ = disjunction;
                self.error(*span, "a disjunction inside an aggregate is not supported");
            }
            ast::Literal::Unsupported { what, span } => {
                self.error(*span, unsupported(what));
            }
        }
    }

    fn translate_atom(
        &mut self,
        atom: &ast::Atom,
        scope: &mut Scope,
        items: &mut Vec<Item>,
        negated: bool,
    ) -> Option<ir::Atom> {
        let relation_id = self.checker.lookup_relation(&atom.relation);
        let Some(relation_id) = relation_id else {
            self.failed = true;
            // Still translate the arguments, for their own errors.
            for arg in &atom.args {
                self.translate_expr(arg, scope, items);
            }
            return None;
        };
        let relation = &self.checker.relations[relation_id];
        let columns: Vec<(Type, String)> = relation
            .columns
            .iter()
            .map(|c| (c.ty, c.type_name.clone()))
            .collect();
        if atom.args.len() != columns.len() {
            let message = format!(
                "relation `{}` has {}, but {} arguments are given",
                relation.name,
                crate::diag::columns(columns.len()),
                atom.args.len()
            );
            self.error(atom.span, message);
            return None;
        }
        let relation_name = relation.name.clone();
        let mut args = Vec::new();
        let mut used = HashSet::new();
        for (arg, (ty, type_name)) in atom.args.iter().zip(&columns) {
            match arg {
                Expr::Wildcard(_) if scope.aggregate && !negated => {
                    let fresh = self.fresh(format!("_{}", args.len()), Some(*ty));
                    scope.names.insert(format!("_#{fresh}"), fresh);
                    args.push(Some(fresh));
                }
                Expr::Wildcard(_) => args.push(None),
                Expr::Variable(ident) => {
                    let var = self.occurrence(scope, &ident.name, ident.span);
                    self.constrain_variable(
                        var,
                        *ty,
                        type_name,
                        ident.span,
                        &relation_name,
                        negated,
                    );
                    if used.insert(var) {
                        args.push(Some(var));
                    } else {
                        // A repeated variable: a fresh column, equal to the first.
                        let fresh = self.fresh(format!("{}'", ident.name), Some(*ty));
                        args.push(Some(fresh));
                        if negated {
                            items.push(Item::Assign(fresh, Term::Var(var, ident.span), ident.span));
                        } else {
                            items.push(Item::Compare(
                                CompareOp::Eq,
                                Term::Var(fresh, ident.span),
                                Term::Var(var, ident.span),
                                ident.span,
                            ));
                        }
                    }
                }
                expr => {
                    let term = self.translate_expr(expr, scope, items)?;
                    let fresh = self.fresh(format!("_{}", args.len()), Some(*ty));
                    args.push(Some(fresh));
                    let span = expr.span();
                    if negated {
                        items.push(Item::Assign(fresh, term, span));
                    } else {
                        items.push(Item::Compare(
                            CompareOp::Eq,
                            Term::Var(fresh, span),
                            term,
                            span,
                        ));
                    }
                }
            }
        }
        Some(ir::Atom {
            relation: relation_id,
            args,
            span: atom.span,
        })
    }

    /// Records that `var` occurs in a column of type `ty` (declared as `type_name`).
    fn constrain_variable(
        &mut self,
        var: VarId,
        ty: Type,
        type_name: &str,
        span: Span,
        relation: &str,
        negated: bool,
    ) {
        let info = &self.variables[var];
        match info.ty {
            Some(existing) if existing != ty => {
                let message = format!(
                    "type mismatch: variable `{}` is a `{existing}` elsewhere, but a `{ty}` in `{relation}`",
                    info.name
                );
                self.error(span, message);
            }
            _ => {
                let info = &mut self.variables[var];
                info.ty = Some(ty);
                if negated {
                    return;
                }
                match info.declared.clone() {
                    None => info.declared = Some((type_name.to_string(), span)),
                    Some((existing, _)) => {
                        if self.checker.is_subtype(type_name, &existing) {
                            self.variables[var].declared = Some((type_name.to_string(), span));
                        } else if !self.checker.is_subtype(&existing, type_name) {
                            let message = format!(
                                "type mismatch: variable `{}` has type `{existing}` elsewhere, but `{type_name}` in `{relation}`, and the two types are disjoint",
                                self.variables[var].name
                            );
                            self.error(span, message);
                        }
                    }
                }
            }
        }
    }

    fn translate_expr(
        &mut self,
        expr: &Expr,
        scope: &mut Scope,
        items: &mut Vec<Item>,
    ) -> Option<Term> {
        Some(match expr {
            Expr::Variable(ident) => {
                Term::Var(self.occurrence(scope, &ident.name, ident.span), ident.span)
            }
            Expr::Wildcard(span) => {
                self.error(*span, "`_` may only stand for a whole atom argument");
                return None;
            }
            Expr::Number(NumberLiteral::Integer(value), span) => {
                Term::Integer(*value as i128, *span)
            }
            Expr::Number(NumberLiteral::Float(value), span) => Term::Float(*value, *span),
            Expr::String(text, span) => Term::String(text.clone(), *span),
            Expr::Unary {
                op: UnaryOp::Neg,
                arg,
                span,
            } if matches!(**arg, Expr::Number(..)) => match &**arg {
                Expr::Number(NumberLiteral::Integer(value), _) => {
                    Term::Integer(-(*value as i128), *span)
                }
                Expr::Number(NumberLiteral::Float(value), _) => Term::Float(-value, *span),
                _ => unreachable!("guarded by the match arm"),
            },
            Expr::Unary { op, arg, span } => Term::Unary(
                *op,
                Box::new(self.translate_expr(arg, scope, items)?),
                *span,
            ),
            Expr::Binary { op, lhs, rhs, span } => {
                let lhs = self.translate_expr(lhs, scope, items);
                let rhs = self.translate_expr(rhs, scope, items);
                Term::Binary(*op, Box::new(lhs?), Box::new(rhs?), *span)
            }
            Expr::Call { name, args, span } => {
                let mut terms = Vec::new();
                let mut ok = true;
                for arg in args {
                    match self.translate_expr(arg, scope, items) {
                        Some(term) => terms.push(term),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                return self.translate_call(name, terms, *span, items);
            }
            Expr::Aggregate {
                kind,
                target,
                body,
                span,
            } => {
                return self.translate_aggregate(
                    *kind,
                    target.as_deref(),
                    body,
                    *span,
                    scope,
                    items,
                );
            }
            Expr::Unsupported { what, span } => {
                self.error(*span, unsupported(what));
                return None;
            }
        })
    }

    fn translate_call(
        &mut self,
        name: &ast::Ident,
        args: Vec<Term>,
        span: Span,
        items: &mut Vec<Item>,
    ) -> Option<Term> {
        let (function, arity): (Option<Function>, std::ops::RangeInclusive<usize>) = match name
            .name
            .as_str()
        {
            "max" => (Some(Function::Max), 2..=usize::MAX),
            "min" => (Some(Function::Min), 2..=usize::MAX),
            "abs" => (Some(Function::Abs), 1..=1),
            "cat" => (Some(Function::Cat), 1..=usize::MAX),
            "strlen" => (Some(Function::Strlen), 1..=1),
            "substr" => (Some(Function::Substr), 3..=3),
            "ord" => (Some(Function::Ord), 1..=1),
            "to_number" | "to_int" => (Some(Function::ToNumber), 1..=1),
            "to_unsigned" => (Some(Function::ToUnsigned), 1..=1),
            "to_float" => (Some(Function::ToFloat), 1..=1),
            "to_string" => (Some(Function::ToString), 1..=1),
            "range" => (None, 2..=3),
            "contains" | "match" => {
                self.error(
                    name.span,
                    format!("`{}` is a condition, not a value", name.name),
                );
                return None;
            }
            other => {
                self.checker.diagnostics.push(
                    Diagnostic::error(name.span, format!("unknown functor `{other}`"))
                        .with_hint("the functors are max, min, abs, cat, strlen, substr, ord, to_number, to_unsigned, to_float, to_string, range"),
                );
                self.failed = true;
                return None;
            }
        };
        if !arity.contains(&args.len()) {
            let expected = if arity.start() == arity.end() {
                arity.start().to_string()
            } else if *arity.end() == usize::MAX {
                format!("at least {}", arity.start())
            } else {
                format!("{} or {}", arity.start(), arity.end())
            };
            self.error(
                span,
                format!(
                    "`{}` takes {expected} arguments, but {} are given",
                    name.name,
                    args.len()
                ),
            );
            return None;
        }
        match function {
            Some(function) => Some(Term::Call(function, args, span)),
            None => {
                let var = self.fresh("_range", None);
                items.push(Item::Range(var, args, span));
                Some(Term::Var(var, span))
            }
        }
    }

    fn translate_aggregate(
        &mut self,
        kind: AggregateKind,
        target: Option<&Expr>,
        body: &[ast::Literal],
        span: Span,
        scope: &mut Scope,
        items: &mut Vec<Item>,
    ) -> Option<Term> {
        if kind == AggregateKind::Count && target.is_some() {
            self.error(span, "`count` takes no target expression");
            return None;
        }
        if kind != AggregateKind::Count && target.is_none() {
            self.error(span, format!("`{}` needs a target expression", kind.name()));
            return None;
        }
        // Names visible from outside: all of the enclosing scope's names.
        let mut inner = Scope {
            aggregate: true,
            names: HashMap::new(),
            outer: scope
                .names
                .iter()
                .chain(scope.outer.iter())
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        };
        let mut body_items = Vec::new();
        let mut flat: Vec<&ast::Literal> = Vec::new();
        for literal in body {
            match literal {
                ast::Literal::Group(disjunction, group_span) => {
                    if disjunction.len() == 1 {
                        flat.extend(disjunction[0].iter());
                    } else {
                        self.error(
                            *group_span,
                            "a disjunction inside an aggregate is not supported",
                        );
                    }
                }
                other => flat.push(other),
            }
        }
        for literal in flat {
            self.translate_literal(literal, &mut inner, &mut body_items);
        }
        let target = match target {
            Some(expr) => Some(self.translate_expr(expr, &mut inner, &mut body_items)?),
            None => None,
        };
        let outer_vars: HashSet<VarId> = inner.outer.values().copied().collect();
        let injected: BTreeSet<VarId> = inner
            .names
            .values()
            .copied()
            .filter(|var| outer_vars.contains(var))
            .collect();
        let result = self.fresh(format!("_{}", kind.name()), None);
        items.push(Item::Aggregate(PendingAggregate {
            result,
            kind,
            target,
            body: body_items,
            injected,
            span,
        }));
        Some(Term::Var(result, span))
    }

    // --- ordering ---

    /// Orders items so that each reads only bound variables; binds variables in `bound`.
    /// Reports what cannot be ordered. Returns `None` on error.
    fn schedule(&mut self, items: Vec<Item>, bound: &mut BTreeSet<VarId>) -> Option<Vec<Item>> {
        let outer_atom_bound = std::mem::take(&mut self.atom_bound);
        self.atom_bound = items
            .iter()
            .filter_map(|item| match item {
                Item::Positive(atom) => Some(atom.variables()),
                _ => None,
            })
            .flatten()
            .collect();
        let result = self.schedule_items(items, bound);
        self.atom_bound = outer_atom_bound;
        result
    }

    fn schedule_items(
        &mut self,
        items: Vec<Item>,
        bound: &mut BTreeSet<VarId>,
    ) -> Option<Vec<Item>> {
        let mut remaining: Vec<Option<Item>> = items.into_iter().map(Some).collect();
        let mut ordered = Vec::new();
        loop {
            // Everything that is ready and binds or checks without joining, as early as
            // possible: filters shrink intermediate results.
            let mut progress = true;
            while progress {
                progress = false;
                for slot in remaining.iter_mut() {
                    let Some(item) = slot else { continue };
                    if matches!(item, Item::Positive(_)) {
                        continue;
                    }
                    if let Some(ready) = self.try_schedule(item, bound) {
                        if !ready {
                            return None;
                        }
                        ordered.push(slot.take().expect("checked above"));
                        progress = true;
                    }
                }
            }
            // Then the next atom: the first that joins with what is bound, else the first.
            let atoms: Vec<usize> = remaining
                .iter()
                .enumerate()
                .filter(|(_, slot)| matches!(slot, Some(Item::Positive(_))))
                .map(|(index, _)| index)
                .collect();
            if atoms.is_empty() {
                break;
            }
            let connected = atoms
                .iter()
                .copied()
                .find(|&index| match &remaining[index] {
                    Some(Item::Positive(atom)) => atom.variables().any(|var| bound.contains(&var)),
                    _ => false,
                });
            let index = connected.unwrap_or(atoms[0]);
            let item = remaining[index].take().expect("an atom");
            if let Item::Positive(atom) = &item {
                bound.extend(atom.variables());
            }
            ordered.push(item);
        }
        // What is left reads a variable that nothing binds. An item waiting only for variables
        // that other waiting items would bind is a consequence, not a cause: not reported.
        let remaining: Vec<Item> = remaining.into_iter().flatten().collect();
        if remaining.is_empty() {
            return Some(ordered);
        }
        let mut would_bind = BTreeSet::new();
        for item in &remaining {
            match item {
                Item::Assign(var, ..) | Item::Range(var, ..) => {
                    would_bind.insert(*var);
                }
                Item::Aggregate(aggregate) => {
                    would_bind.insert(aggregate.result);
                }
                Item::Compare(CompareOp::Eq, lhs, rhs, _) => {
                    for term in [lhs, rhs] {
                        if let Term::Var(var, _) = term
                            && !self.atom_bound.contains(var)
                        {
                            would_bind.insert(*var);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut reported = false;
        for item in &remaining {
            reported |= self.report_unbound(item, bound, &would_bind);
        }
        if !reported {
            // Only consequences left: a cycle of assignments (`x = y + 1, y = x - 1`).
            for item in &remaining {
                self.report_unbound(item, bound, &BTreeSet::new());
            }
        }
        self.failed = true;
        None
    }

    /// `Some(true)` when the item was ready and is now scheduled (its variables bound),
    /// `Some(false)` on an error while scheduling it, `None` when not ready yet.
    fn try_schedule(&mut self, item: &mut Item, bound: &mut BTreeSet<VarId>) -> Option<bool> {
        let all_bound = |term: &Term, bound: &BTreeSet<VarId>| {
            let mut vars = Vec::new();
            term.variables(&mut vars);
            vars.iter().all(|(var, _)| bound.contains(var))
        };
        match item {
            Item::Positive(_) => None,
            Item::Negative(atom) => atom
                .variables()
                .all(|var| bound.contains(&var))
                .then_some(true),
            Item::Compare(op, lhs, rhs, span) => {
                let lhs_ready = all_bound(lhs, bound);
                let rhs_ready = all_bound(rhs, bound);
                if lhs_ready && rhs_ready {
                    return Some(true);
                }
                if *op != CompareOp::Eq {
                    return None;
                }
                // `x = e` or `e = x` with x unbound and e computable: an assignment.
                // A variable that an atom binds is compared once the atom has bound it.
                let assignable =
                    |var: &VarId| !bound.contains(var) && !self.atom_bound.contains(var);
                let (var, expr) = match (&*lhs, &*rhs) {
                    (Term::Var(var, _), expr) if assignable(var) && rhs_ready => {
                        (*var, expr.clone())
                    }
                    (expr, Term::Var(var, _)) if assignable(var) && lhs_ready => {
                        (*var, expr.clone())
                    }
                    _ => return None,
                };
                let ty = self
                    .natural_type(&expr)
                    .or(self.variables[var].hint)
                    .unwrap_or(if matches!(expr, Term::Float(..)) {
                        Type::Float
                    } else {
                        Type::Number
                    });
                if self.variables[var].ty.is_none() {
                    self.variables[var].ty = Some(ty);
                }
                bound.insert(var);
                *item = Item::Assign(var, expr, *span);
                Some(true)
            }
            Item::Contains(a, b, _) | Item::Match(a, b, _) => {
                (all_bound(a, bound) && all_bound(b, bound)).then_some(true)
            }
            Item::Not(inner) => self.try_schedule(inner, bound),
            Item::Bool(..) => Some(true),
            Item::Assign(var, term, _) => {
                if !all_bound(term, bound) {
                    return None;
                }
                bound.insert(*var);
                Some(true)
            }
            Item::Range(var, args, _) => {
                if !args.iter().all(|arg| all_bound(arg, bound)) {
                    return None;
                }
                let ty = args
                    .iter()
                    .find_map(|arg| self.natural_type(arg))
                    .or(self.variables[*var].hint)
                    .unwrap_or(if args.iter().any(|arg| matches!(arg, Term::Float(..))) {
                        Type::Float
                    } else {
                        Type::Number
                    });
                if self.variables[*var].ty.is_none() {
                    self.variables[*var].ty = Some(ty);
                }
                bound.insert(*var);
                Some(true)
            }
            Item::Aggregate(aggregate) => {
                if !aggregate.injected.iter().all(|var| bound.contains(var)) {
                    return None;
                }
                let mut inner_bound: BTreeSet<VarId> = aggregate.injected.clone();
                let body = std::mem::take(&mut aggregate.body);
                let Some(body) = self.schedule(body, &mut inner_bound) else {
                    return Some(false);
                };
                aggregate.body = body;
                if let Some(target) = &aggregate.target {
                    let mut vars = Vec::new();
                    target.variables(&mut vars);
                    if let Some(&(var, span)) =
                        vars.iter().find(|(var, _)| !inner_bound.contains(var))
                    {
                        let name = self.variables[var].name.clone();
                        self.error(span, format!("variable `{name}` in the aggregate's target is not bound by its body"));
                        return Some(false);
                    }
                }
                let ty = match aggregate.kind {
                    AggregateKind::Count => Type::Number,
                    AggregateKind::Mean => Type::Float,
                    _ => aggregate
                        .target
                        .as_ref()
                        .map(|t| {
                            self.natural_type(t)
                                .unwrap_or(if matches!(t, Term::Float(..)) {
                                    Type::Float
                                } else {
                                    Type::Number
                                })
                        })
                        .unwrap_or(Type::Number),
                };
                if let Some(target) = &aggregate.target
                    && aggregate.kind != AggregateKind::Min
                    && aggregate.kind != AggregateKind::Max
                    && self.natural_type(target) == Some(Type::Symbol)
                {
                    self.error(
                        target.span(),
                        format!(
                            "type mismatch: `{}` needs a numeric target, not a symbol",
                            aggregate.kind.name()
                        ),
                    );
                    return Some(false);
                }
                self.variables[aggregate.result].ty = Some(ty);
                bound.insert(aggregate.result);
                Some(true)
            }
        }
    }

    /// Reports the first variable an item reads that is neither bound nor in `would_bind`.
    /// Returns whether it reported one.
    fn report_unbound(
        &mut self,
        item: &Item,
        bound: &BTreeSet<VarId>,
        would_bind: &BTreeSet<VarId>,
    ) -> bool {
        let mut vars = Vec::new();
        let what = match item {
            Item::Positive(_) => return false,
            Item::Negative(atom) => {
                for var in atom.variables() {
                    vars.push((var, self.variables[var].occurrence.unwrap_or(atom.span)));
                }
                "a negated atom"
            }
            Item::Compare(_, lhs, rhs, _) => {
                lhs.variables(&mut vars);
                rhs.variables(&mut vars);
                "a comparison"
            }
            Item::Contains(a, b, _) | Item::Match(a, b, _) => {
                a.variables(&mut vars);
                b.variables(&mut vars);
                "a condition"
            }
            Item::Not(inner) => return self.report_unbound(inner, bound, would_bind),
            Item::Bool(..) => return false,
            Item::Assign(_, term, _) => {
                term.variables(&mut vars);
                "an expression"
            }
            Item::Range(_, args, _) => {
                args.iter().for_each(|arg| arg.variables(&mut vars));
                "`range`"
            }
            Item::Aggregate(aggregate) => {
                // A variable the aggregate shares with the rest of the rule, which nothing else
                // binds: bound only inside the aggregate, it is not visible outside it.
                if let Some(&var) = aggregate
                    .injected
                    .iter()
                    .find(|v| !bound.contains(v) && !would_bind.contains(v))
                {
                    let info = &self.variables[var];
                    let span = info
                        .outer_occurrence
                        .or(info.occurrence)
                        .unwrap_or(aggregate.span);
                    let name = display_name(&info.name).to_string();
                    self.checker.diagnostics.push(
                        Diagnostic::error(span, format!("variable `{name}` is not bound outside the aggregate"))
                            .with_hint("a variable bound only inside an aggregate's body is not visible outside it (the witness rule); bind it in a positive atom of the rule"),
                    );
                    self.failed = true;
                    return true;
                }
                return false;
            }
        };
        // Report a variable once, at its first unbound place.
        if let Some(&(var, span)) = vars
            .iter()
            .find(|(var, _)| !bound.contains(var) && !would_bind.contains(var))
        {
            let name = self.variables[var].name.clone();
            let hint = if name.starts_with('_') {
                "the value here depends on a variable that nothing binds"
            } else {
                "bind it in a positive atom of the body; a variable bound only inside an aggregate is not visible outside it"
            };
            self.checker.diagnostics.push(
                Diagnostic::error(
                    span,
                    format!("variable `{}` in {what} is not bound", display_name(&name)),
                )
                .with_hint(hint),
            );
            self.failed = true;
            return true;
        }
        false
    }

    // --- typing and lowering ---

    /// The type an expression has regardless of context, if it has one (integer literals are
    /// polymorphic).
    fn natural_type(&self, term: &Term) -> Option<Type> {
        match term {
            Term::Var(var, _) => self.variables[*var].ty,
            Term::Integer(..) => None,
            Term::Float(..) => Some(Type::Float),
            Term::String(..) => Some(Type::Symbol),
            Term::Unary(_, arg, _) => self.natural_type(arg),
            Term::Binary(_, lhs, rhs, _) => self
                .natural_type(lhs)
                .or_else(|| self.natural_type(rhs))
                .or_else(|| {
                    (matches!(**lhs, Term::Float(..)) || matches!(**rhs, Term::Float(..)))
                        .then_some(Type::Float)
                }),
            Term::Call(function, args, _) => match function {
                Function::Max | Function::Min | Function::Abs => {
                    args.iter().find_map(|arg| self.natural_type(arg))
                }
                Function::Cat | Function::Substr | Function::ToString => Some(Type::Symbol),
                Function::Strlen | Function::Ord | Function::ToNumber => Some(Type::Number),
                Function::ToUnsigned => Some(Type::Unsigned),
                Function::ToFloat => Some(Type::Float),
            },
        }
    }

    /// Types `term`, expecting `expected` where the context decides (integer literals).
    fn lower(&mut self, term: &Term, expected: Option<Type>) -> Option<ir::Expr> {
        let ty = self.natural_type(term).or(expected).unwrap_or(Type::Number);
        self.lower_as(term, ty)
    }

    fn type_error(&mut self, span: Span, message: String) -> Option<ir::Expr> {
        self.error(span, message);
        None
    }

    fn lower_as(&mut self, term: &Term, ty: Type) -> Option<ir::Expr> {
        match term {
            Term::Var(var, span) => {
                let var_ty = self.variables[*var].ty.unwrap_or(ty);
                if var_ty != ty {
                    let name = display_name(&self.variables[*var].name).to_string();
                    return self.type_error(
                        *span,
                        format!(
                            "type mismatch: `{name}` is a `{var_ty}`, but a `{ty}` is expected here"
                        ),
                    );
                }
                Some(ir::Expr::Var(*var, ty))
            }
            Term::Integer(value, span) => {
                let value = *value;
                let constant = match ty {
                    Type::Number => i64::try_from(value).ok().map(Value::Number),
                    Type::Unsigned => u64::try_from(value).ok().map(Value::Unsigned),
                    Type::Float => Some(Value::Float(value as f64)),
                    Type::Symbol => {
                        return self.type_error(
                            *span,
                            "type mismatch: a number is given where a `symbol` is expected"
                                .to_string(),
                        );
                    }
                };
                match constant {
                    Some(constant) => Some(ir::Expr::Const(constant)),
                    None => self.type_error(
                        *span,
                        format!("the literal {value} is out of range for `{ty}`"),
                    ),
                }
            }
            Term::Float(value, span) => {
                if ty != Type::Float {
                    return self.type_error(
                        *span,
                        format!("type mismatch: a float is given where a `{ty}` is expected"),
                    );
                }
                Some(ir::Expr::Const(Value::Float(*value)))
            }
            Term::String(text, span) => {
                if ty != Type::Symbol {
                    return self.type_error(
                        *span,
                        format!("type mismatch: a symbol is given where a `{ty}` is expected"),
                    );
                }
                Some(ir::Expr::Const(Value::symbol(text)))
            }
            Term::Unary(op, arg, span) => {
                if ty == Type::Symbol {
                    return self
                        .type_error(*span, "type mismatch: arithmetic on a symbol".to_string());
                }
                if *op == UnaryOp::BitNot && ty == Type::Float {
                    return self.type_error(*span, "type mismatch: `bnot` on a float".to_string());
                }
                let arg = self.lower_as(arg, ty)?;
                Some(ir::Expr::Unary {
                    op: *op,
                    ty,
                    arg: Box::new(arg),
                })
            }
            Term::Binary(op, lhs, rhs, span) => {
                if ty == Type::Symbol {
                    return self.type_error(
                        *span,
                        format!("type mismatch: `{}` on symbols", op.symbol()),
                    );
                }
                let bitwise = matches!(
                    op,
                    BinaryOp::BitAnd
                        | BinaryOp::BitOr
                        | BinaryOp::BitXor
                        | BinaryOp::ShiftLeft
                        | BinaryOp::ShiftRight
                        | BinaryOp::ShiftRightUnsigned
                );
                if bitwise && ty == Type::Float {
                    return self
                        .type_error(*span, format!("type mismatch: `{}` on floats", op.symbol()));
                }
                let lhs = self.lower_as(lhs, ty)?;
                let rhs = self.lower_as(rhs, ty)?;
                Some(ir::Expr::Binary {
                    op: *op,
                    ty,
                    operand: ty,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                })
            }
            Term::Call(function, args, span) => self.lower_call(*function, args, ty, *span),
        }
    }

    fn lower_call(
        &mut self,
        function: Function,
        args: &[Term],
        ty: Type,
        span: Span,
    ) -> Option<ir::Expr> {
        let result = self
            .natural_type(&Term::Call(function, args.to_vec(), span))
            .unwrap_or(ty);
        if result != ty {
            return self.type_error(
                span,
                format!(
                    "type mismatch: `{}` gives a `{result}`, but a `{ty}` is expected",
                    function.name()
                ),
            );
        }
        let lowered: Option<Vec<ir::Expr>> = match function {
            Function::Max | Function::Min => {
                args.iter().map(|arg| self.lower_as(arg, ty)).collect()
            }
            Function::Abs => {
                if ty == Type::Symbol {
                    return self.type_error(span, "type mismatch: `abs` of a symbol".to_string());
                }
                args.iter().map(|arg| self.lower_as(arg, ty)).collect()
            }
            Function::Cat | Function::Strlen | Function::Ord => args
                .iter()
                .map(|arg| self.lower_as(arg, Type::Symbol))
                .collect(),
            Function::Substr => {
                let text = self.lower_as(&args[0], Type::Symbol);
                let index = self.lower_as(&args[1], Type::Number);
                let length = self.lower_as(&args[2], Type::Number);
                Some(vec![text?, index?, length?])
            }
            Function::ToNumber | Function::ToUnsigned | Function::ToFloat | Function::ToString => {
                let source = self.natural_type(&args[0]).unwrap_or(Type::Number);
                args.iter().map(|arg| self.lower_as(arg, source)).collect()
            }
        };
        Some(ir::Expr::Call {
            function,
            ty,
            args: lowered?,
        })
    }

    fn lower_items(&mut self, items: Vec<Item>) -> Option<Vec<ir::Literal>> {
        let mut literals = Vec::new();
        let mut ok = true;
        for item in items {
            match self.lower_item(item) {
                Some(literal) => literals.push(literal),
                None => ok = false,
            }
        }
        ok.then_some(literals)
    }

    fn lower_item(&mut self, item: Item) -> Option<ir::Literal> {
        Some(match item {
            Item::Positive(atom) => ir::Literal::Positive(atom),
            Item::Negative(atom) => ir::Literal::Negative(atom),
            Item::Compare(op, lhs, rhs, span) => {
                let left = self.natural_type(&lhs);
                let right = self.natural_type(&rhs);
                let ty = match (left, right) {
                    (Some(a), Some(b)) if a != b => {
                        self.error(
                            span,
                            format!(
                                "type mismatch: `{}` compares a `{a}` with a `{b}`",
                                op.symbol()
                            ),
                        );
                        return None;
                    }
                    (Some(a), _) | (None, Some(a)) => a,
                    (None, None) => {
                        if matches!(lhs, Term::Float(..)) || matches!(rhs, Term::Float(..)) {
                            Type::Float
                        } else {
                            Type::Number
                        }
                    }
                };
                let lhs = self.lower_as(&lhs, ty);
                let rhs = self.lower_as(&rhs, ty);
                ir::Literal::Filter(ir::Condition::Compare {
                    op,
                    ty,
                    lhs: lhs?,
                    rhs: rhs?,
                    span,
                })
            }
            Item::Contains(needle, haystack, span) => {
                let needle = self.lower_as(&needle, Type::Symbol);
                let haystack = self.lower_as(&haystack, Type::Symbol);
                ir::Literal::Filter(ir::Condition::Contains {
                    needle: needle?,
                    haystack: haystack?,
                    span,
                })
            }
            Item::Match(pattern, text, span) => {
                let pattern = self.lower_as(&pattern, Type::Symbol);
                let text = self.lower_as(&text, Type::Symbol);
                ir::Literal::Filter(ir::Condition::Match {
                    pattern: pattern?,
                    text: text?,
                    span,
                })
            }
            Item::Bool(value, span) => ir::Literal::Filter(ir::Condition::Bool(value, span)),
            Item::Not(inner) => match self.lower_item(*inner)? {
                ir::Literal::Filter(condition) => {
                    ir::Literal::Filter(ir::Condition::Not(Box::new(condition)))
                }
                other => other,
            },
            Item::Assign(var, term, span) => {
                let ty = self.variables[var].ty.unwrap_or(Type::Number);
                let expr = self.lower_as(&term, ty)?;
                ir::Literal::Assign { var, expr, span }
            }
            Item::Range(var, args, span) => {
                let ty = self.variables[var].ty.unwrap_or(Type::Number);
                if ty == Type::Symbol {
                    self.error(span, "type mismatch: `range` over symbols".to_string());
                    return None;
                }
                let lowered: Option<Vec<ir::Expr>> =
                    args.iter().map(|arg| self.lower_as(arg, ty)).collect();
                let mut lowered = lowered?.into_iter();
                let from = lowered.next()?;
                let to = lowered.next()?;
                let step = lowered.next();
                ir::Literal::Range {
                    var,
                    ty,
                    from,
                    to,
                    step,
                    span,
                }
            }
            Item::Aggregate(aggregate) => {
                let ty = self.variables[aggregate.result].ty.unwrap_or(Type::Number);
                let target = match &aggregate.target {
                    Some(target) => {
                        let target_ty = match aggregate.kind {
                            AggregateKind::Mean => self.natural_type(target).unwrap_or(Type::Float),
                            _ => ty,
                        };
                        if aggregate.kind == AggregateKind::Mean && target_ty != Type::Float {
                            self.checker.diagnostics.push(
                                Diagnostic::error(
                                    target.span(),
                                    format!("type mismatch: `mean` needs a float target, but this is a `{target_ty}`"),
                                )
                                .with_hint("convert it with `to_float(...)`"),
                            );
                            self.failed = true;
                            return None;
                        }
                        Some(self.lower_as(target, target_ty)?)
                    }
                    None => None,
                };
                let body = self.lower_items(aggregate.body.clone())?;
                let mut locals = BTreeSet::new();
                collect_bound(&body, &mut locals);
                let injected: Vec<VarId> = aggregate.injected.iter().copied().collect();
                for var in &injected {
                    locals.remove(var);
                }
                ir::Literal::Aggregate(ir::Aggregate {
                    result: aggregate.result,
                    kind: aggregate.kind,
                    ty,
                    target,
                    injected,
                    locals: locals.into_iter().collect(),
                    body,
                    span: aggregate.span,
                })
            }
        })
    }
}

/// The variables a body binds (not those of nested aggregates, which are local to those).
fn collect_bound(body: &[ir::Literal], out: &mut BTreeSet<VarId>) {
    for literal in body {
        match literal {
            ir::Literal::Positive(atom) => out.extend(atom.variables()),
            ir::Literal::Assign { var, .. } | ir::Literal::Range { var, .. } => {
                out.insert(*var);
            }
            ir::Literal::Aggregate(aggregate) => {
                out.insert(aggregate.result);
            }
            ir::Literal::Negative(_) | ir::Literal::Filter(_) => {}
        }
    }
}

fn display_name(name: &str) -> &str {
    name.trim_end_matches('\'')
}

/// Names of variables that occur in a literal outside any aggregate.
fn collect_outer_names(literal: &ast::Literal, out: &mut HashSet<String>) {
    match literal {
        ast::Literal::Atom(atom) | ast::Literal::Negated(atom, _) => atom
            .args
            .iter()
            .for_each(|arg| collect_expr_names(arg, out)),
        ast::Literal::Comparison { lhs, rhs, .. } => {
            collect_expr_names(lhs, out);
            collect_expr_names(rhs, out);
        }
        ast::Literal::Test(expr) => collect_expr_names(expr, out),
        ast::Literal::Group(disjunction, _) => disjunction
            .iter()
            .flatten()
            .for_each(|literal| collect_outer_names(literal, out)),
        ast::Literal::Bool(..) | ast::Literal::Unsupported { .. } => {}
    }
}

fn collect_expr_names(expr: &Expr, out: &mut HashSet<String>) {
    match expr {
        Expr::Variable(ident) => {
            out.insert(ident.name.clone());
        }
        Expr::Unary { arg, .. } => collect_expr_names(arg, out),
        Expr::Binary { lhs, rhs, .. } => {
            collect_expr_names(lhs, out);
            collect_expr_names(rhs, out);
        }
        Expr::Call { args, .. } => args.iter().for_each(|arg| collect_expr_names(arg, out)),
        // Names inside an aggregate are not outer names.
        Expr::Aggregate { .. }
        | Expr::Wildcard(_)
        | Expr::Number(..)
        | Expr::String(..)
        | Expr::Unsupported { .. } => {}
    }
}

/// The message for a construct outside the subset.
fn unsupported(what: &str) -> String {
    format!("not supported: {what} (outside Vigil's subset of Soufflé)")
}
