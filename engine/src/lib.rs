//! Vigil's engine: the rule language and its incremental evaluation.
//!
//! A program goes through these stages, each a module:
//!
//! 1. [`syntax`]: text to an abstract syntax tree, with spans, resolving `.include`;
//! 2. [`check`]: the tree to the typed, normalised, stratified [`ir::Program`], with every
//!    problem reported as a [`diag::Diagnostic`];
//! 3. [`dataflow`]: the program as a differential dataflow on timely, maintained incrementally
//!    as input tuples are inserted and retracted;
//! 4. [`reference`]: an independent from-scratch evaluator of the same program, the oracle of
//!    the tests.
//!
//! The engine never touches the network; sources and actuators live in `vigil-adapters`.

pub mod check;
pub mod dataflow;
pub mod diag;
pub mod ir;
pub mod reference;
pub mod syntax;
pub mod value;
