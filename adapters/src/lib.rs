//! Vigil's adapters: the sources that turn the outside world into input facts, and the
//! actuators that turn changes of views into actions on it.
//!
//! This crate depends on `vigil-engine`'s public types (programs, transactions, change sets)
//! and never on its internals; the engine never depends on this crate, and it is the only
//! crate that does I/O with the house (networks, devices, APIs).

pub mod approval;
pub mod mqtt;
pub mod nut;
pub mod prometheus;
pub mod proxmox;
pub mod ray;
pub mod reconcile;
pub mod source;
pub mod wol;
