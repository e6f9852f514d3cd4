//! Which burn backend runs the model: Flex on the CPU, or CUDA (feature `cuda`) when a
//! usable NVIDIA GPU is present. Without a GPU a burn-cuda device panics in a background
//! thread at the first tensor operation, so CUDA is probed first.
//!
//! Flex is burn's pure-Rust CPU backend: strided matmuls through `gemm` (no copy of the
//! weight per call, unlike NdArray 0.21), SIMD kernels chosen at run time, and threads
//! through rayon (all cores by default, as PyTorch does; [`on_cpu_threads`] runs work on a
//! pool of a chosen size).

/// The CPU backend.
pub type Cpu = burn::backend::Flex<f32>;

/// Run `f` as one of the CPU backend's compute threads: on a pool of `threads` threads
/// (default: every core), with `f` itself on one of them. Called from an ordinary thread,
/// the backend's parallel operations would otherwise run on the pool's `n` threads while
/// the caller's thread, busy with the serial operations between them, makes `n + 1` threads
/// on `n` cores.
///
/// # Errors
/// One line when `threads` is 0 or the pool cannot be started.
pub fn on_cpu_threads<R: Send>(
    threads: Option<usize>,
    f: impl FnOnce() -> R + Send,
) -> Result<R, String> {
    if threads == Some(0) {
        return Err("invalid --threads: must be at least 1".into());
    }
    let n = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| format!("cannot start {n} CPU threads: {e}"))?;
    Ok(pool.install(f))
}

/// Threads the CPU backend runs on.
pub fn cpu_threads() -> usize {
    rayon::current_num_threads()
}

/// The CUDA backend with float element `F` (`f32`, `half::f16`, `half::bf16`).
#[cfg(feature = "cuda")]
pub type Cuda<F> = burn::backend::Cuda<F, i32>;

/// Whether this build has the CUDA backend.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// Check that CUDA can run here: the driver library loads and NVML sees a GPU visible to
/// this process. `Err` says why not, in one line.
pub fn probe_cuda() -> Result<(), String> {
    if !CUDA_COMPILED {
        return Err("this build has no CUDA backend (rebuild with --features cuda)".into());
    }
    #[cfg(feature = "cuda")]
    {
        // SAFETY: loading the CUDA driver library runs its initialisers, which is what any
        // CUDA program does; the handle is dropped at once.
        let lib = unsafe { libloading::Library::new("libcuda.so.1") };
        if let Err(e) = lib {
            return Err(format!(
                "the CUDA driver (libcuda.so.1) cannot be loaded: {e}"
            ));
        }
        let clock: std::sync::Arc<dyn lem::Clock> = std::sync::Arc::new(lem::MonotonicClock::new());
        match lem::device::open_devices(&lem::DeviceSpec::Nvml(None), clock) {
            Ok(o) if !o.devices.is_empty() => Ok(()),
            Ok(_) => Err("NVML sees no GPU visible to this process".into()),
            Err(e) => Err(format!("no usable GPU: {e}")),
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        Ok(())
    }
}
