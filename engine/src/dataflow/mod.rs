//! Incremental evaluation on differential dataflow.
