#![warn(missing_docs)]
//! The reference LLM workload for lem: a burn Llama-style decoder-only transformer with a
//! KV cache, generation with greedy or temperature/top-k/top-p sampling, and energy
//! measurement of prefill and decode through [`lem`].
//!
//! Generic over the burn `Backend`: Flex on the CPU (default) and CUDA behind the `cuda`
//! feature.

pub mod backend;
pub mod cache;
pub mod config;
pub mod cpu;
mod error;
pub mod generate;
pub mod model;
pub mod rope;
pub mod sampling;
pub mod serve;
pub mod serve_report;
pub mod tokenizer;
pub mod weights;
pub mod workload;

pub use error::{Error, Result};

pub use config::ModelConfig;
pub use model::Model;

pub use backend::Cpu;
pub use burn;
pub use half;

/// A sync hook for a [`lem::Meter`]: waits until `device` finished all queued work.
pub fn backend_sync<B: burn::prelude::Backend>(
    device: B::Device,
) -> impl Fn() + Send + Sync + 'static {
    move || {
        // A failed sync means the device is gone; the next tensor operation reports it.
        let _ = B::sync(&device);
    }
}
