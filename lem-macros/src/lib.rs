//! Attribute macros for lem energy benchmarks (`#[energy_bench]`).
//!
//! This crate is filled in by the energy-bench work; it exports nothing yet.
