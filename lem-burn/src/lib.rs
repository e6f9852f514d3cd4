//! The reference LLM workload for lem: a burn decoder-only transformer with a KV cache.
//!
//! This crate is filled in by the reference-workload work; it exports nothing yet.
