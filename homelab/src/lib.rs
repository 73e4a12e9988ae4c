//! Houses for Vigil's homelab policy (`rules/homelab.dl`): what a house is, how to make
//! synthetic ones of any size, and a second, independent account of what the policy decides
//! for them.
//!
//! - [`house`]: a [`House`] value (hardware, workloads, configuration, network and the state of
//!   the moment) and its two encodings for the engine: Soufflé facts files, and transactions
//!   that move a running engine from one house to the next.
//! - [`generate`]: plausible, varied houses from a seed and a size, with the boundary values
//!   that policies get wrong (needs that fit exactly, a draw exactly at the limit, ties).
//! - [`oracle`]: placement, waking and load shedding computed directly from a house with loops
//!   and sorts, from the policy's stated intent. It shares nothing with the engine's
//!   evaluation, so that agreement between the two means something.
//! - [`facts`], [`events`] and [`baseline`]: for the benchmarks (`vigil bench`), a house as input
//!   facts, a seeded stream of the events a running house reports, and the load-shedding view
//!   implemented twice more: recomputed from scratch with crepe, and as a hand-written
//!   differential dataflow.

pub mod baseline;
pub mod events;
pub mod facts;
pub mod generate;
pub mod house;
pub mod oracle;

pub use generate::{Rng, generate};
pub use house::House;
