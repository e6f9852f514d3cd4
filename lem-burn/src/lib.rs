//! The reference LLM workload for lem: a burn Llama-style decoder-only transformer with a
//! KV cache, generation with greedy or temperature/top-k/top-p sampling, and energy
//! measurement of prefill and decode through [`lem`].
//!
//! Generic over the burn `Backend`: NdArray on the CPU (default) and CUDA behind the `cuda`
//! feature.

pub mod cache;
pub mod config;
pub mod model;
pub mod rope;

pub use config::ModelConfig;
pub use model::Model;

/// The CPU backend.
pub type Cpu = burn::backend::NdArray<f32>;
