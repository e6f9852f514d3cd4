//! The CPU backend's products of activations with weight matrices: all of decode, most of
//! prefill.
//!
//! **One row** (batch-1 decode) multiplies one activation row by every weight matrix, so it
//! streams the weights from memory once per token and its speed is the memory bandwidth it
//! reaches. `gemm` (under burn's Flex backend) sends such products to a kernel that loads and
//! stores the whole output row once per weight row, in AVX-512 where the CPU has it; on the
//! AMD EPYC build machine that reaches about two thirds of the bandwidth a plain read of the
//! weights does. [`matmul`] keeps blocks of the output in vector registers across eight
//! weight rows per pass (AVX-512, or AVX2 + FMA), and splits the columns across the
//! backend's threads when there are several (`benches/matvec.rs` measures both). It computes
//! every output element exactly as `gemm` does — the first row's product, then one fused
//! multiply-add per further row, in order — so its result equals burn's `matmul` bit for bit
//! (tested). It runs on x86-64 with AVX2 and FMA.
//!
//! **Several rows** go to the same `gemm` call burn's Flex makes (same strides, same
//! threading rule, so the same result), into an output buffer allocated once: Flex 0.21
//! allocates each product's output zeroed as bytes and then copies it into an aligned buffer,
//! a copy and a round of page faults per product that prefill pays on the critical path.
//!
//! [`matmul`] applies to the Flex backend with f32, contiguous operands; anywhere else it
//! answers `None` and the caller uses burn's `matmul`.

use std::any::Any;

use burn::prelude::*;
use burn::tensor::{Bytes, DType, TensorPrimitive};
use burn_flex::{FlexTensor, Layout};

use crate::Cpu;

/// Below this many weights a one-row product is not split across threads.
const SPLIT_MIN_WEIGHTS: usize = 1 << 18;
/// Column blocks handed to one thread are a multiple of this many columns (one step of the
/// AVX-512 kernel).
const COLUMN_ALIGN: usize = 64;
/// Flex's rule: `gemm` runs threaded from 192^3 multiply-adds on.
const GEMM_THREADED_FROM: usize = 192 * 192 * 192;

/// `x @ w` for activations `x` (`[m, k]`) and a weight `w` (`[k, n]`) on the CPU backend's
/// fast path; `None` where it does not apply (another backend, a non-contiguous or non-f32
/// operand).
pub fn matmul<B: Backend>(x: &Tensor<B, 2>, w: &Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let x = (x as &dyn Any).downcast_ref::<Tensor<Cpu, 2>>()?;
    let w = (w as &dyn Any).downcast_ref::<Tensor<Cpu, 2>>()?;
    let y = matmul_cpu(x, w)?;
    let boxed: Box<dyn Any> = Box::new(y);
    boxed.downcast::<Tensor<B, 2>>().ok().map(|b| *b)
}

fn matmul_cpu(x: &Tensor<Cpu, 2>, w: &Tensor<Cpu, 2>) -> Option<Tensor<Cpu, 2>> {
    let [m, k] = x.dims();
    let [kw, n] = w.dims();
    if k != kw || m == 0 || n == 0 || k == 0 {
        return None;
    }
    let xt = float_primitive(x)?;
    let wt = float_primitive(w)?;
    if xt.dtype() != DType::F32 || wt.dtype() != DType::F32 {
        return None;
    }
    let (xs, xe) = xt.layout().contiguous_offsets()?;
    let (ws, we) = wt.layout().contiguous_offsets()?;
    let xv = &xt.storage::<f32>()[xs..xe];
    let wv = &wt.storage::<f32>()[ws..we];
    if xv.len() != m * k || wv.len() != k * n {
        return None;
    }
    let mut y = vec![0f32; m * n];
    if let (1, Some(kernel)) = (m, row_kernel()) {
        // every column block lies inside `w`: `wv` holds k rows of n and blocks end at n
        let block_into = |c0: usize, yb: &mut [f32]| {
            // SAFETY: the kernel's CPU features were detected by `row_kernel`; rows of `n`
            // floats from column `c0` hold `yb.len()` floats (`c0 + yb.len() <= n`).
            unsafe { kernel(xv, wv.as_ptr().add(c0), n, yb) }
        };
        let threads = rayon::current_num_threads();
        if threads > 1 && k * n >= SPLIT_MIN_WEIGHTS && n >= 2 * COLUMN_ALIGN {
            use rayon::prelude::*;
            let block = n.div_ceil(threads).next_multiple_of(COLUMN_ALIGN);
            y.par_chunks_mut(block)
                .enumerate()
                .for_each(|(i, yb)| block_into(i * block, yb));
        } else {
            block_into(0, &mut y);
        }
    } else {
        let parallelism = if m.saturating_mul(n).saturating_mul(k) >= GEMM_THREADED_FROM {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `y` holds m×n, `xv` m×k and `wv` k×n f32 values, all row-major and
        // contiguous (checked above); gemm reads and writes only within those bounds.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                y.as_mut_ptr(),
                1,
                n as isize,
                false,
                xv.as_ptr(),
                1,
                k as isize,
                wv.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    let out = FlexTensor::new(
        Bytes::from_elems(y),
        Layout::contiguous(Shape::new([m, n])),
        DType::F32,
    );
    Some(Tensor::from_primitive(TensorPrimitive::Float(out)))
}

fn float_primitive(t: &Tensor<Cpu, 2>) -> Option<FlexTensor> {
    match t.clone().into_primitive() {
        TensorPrimitive::Float(p) => Some(p),
        TensorPrimitive::QFloat(_) => None,
    }
}

/// A one-row kernel: `y = x @ w[.., c0..c0 + y.len()]` with `w` pointing at column `c0` of a
/// row-major matrix of `ld` columns and `x.len()` rows.
type RowKernel = unsafe fn(&[f32], *const f32, usize, &mut [f32]);

/// The best one-row kernel this CPU runs; `None` without AVX2 and FMA (then `gemm` runs).
fn row_kernel() -> Option<RowKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return Some(x86::rows_avx512);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(x86::rows_avx2);
        }
    }
    None
}

/// The kernels: `ROWS` weight rows per pass over the output block, four vector accumulators
/// of output per step (independent FMA chains), the output in cache between passes. Each
/// output element is `w[0][j] * x[0]`, then one fused multiply-add per further row in order —
/// what `gemm`'s kernel computes.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    const ROWS: usize = 8;

    /// One kernel per vector width: `$lanes` floats per vector, four vectors per step; the
    /// columns past the last full step one at a time (scalar, same order of operations).
    macro_rules! row_kernel {
        ($(#[$doc:meta])* $name:ident, $features:literal, $lanes:literal,
         $set1:ident, $load:ident, $store:ident, $mul:ident, $fmadd:ident) => {
            $(#[$doc])*
            /// # Safety
            /// The CPU must have the kernel's features; `w` must point at `x.len()` rows of
            /// `ld` floats, each with `y.len()` readable floats from the pointer's column.
            #[target_feature(enable = $features)]
            pub unsafe fn $name(x: &[f32], w: *const f32, ld: usize, y: &mut [f32]) {
                const STEP: usize = 4 * $lanes;
                // SAFETY: the caller's contract covers every read through `w`; writes stay
                // within `y` (full steps end at or before `n`, the rest is scalar).
                unsafe {
                    let (n, k) = (y.len(), x.len());
                    let yp = y.as_mut_ptr();
                    let mut r = 0;
                    while r < k {
                        let rows = ROWS.min(k - r);
                        let first = r == 0;
                        let row = |i: usize| w.add((r + i) * ld);
                        let xv = |i: usize| $set1(x[r + i]);
                        let mut j = 0;
                        while j + STEP <= n {
                            let (mut a0, mut a1, mut a2, mut a3, from) = if first {
                                let (p, s) = (row(0).add(j), xv(0));
                                (
                                    $mul($load(p), s),
                                    $mul($load(p.add($lanes)), s),
                                    $mul($load(p.add(2 * $lanes)), s),
                                    $mul($load(p.add(3 * $lanes)), s),
                                    1,
                                )
                            } else {
                                (
                                    $load(yp.add(j)),
                                    $load(yp.add(j + $lanes)),
                                    $load(yp.add(j + 2 * $lanes)),
                                    $load(yp.add(j + 3 * $lanes)),
                                    0,
                                )
                            };
                            for i in from..rows {
                                let (p, s) = (row(i).add(j), xv(i));
                                a0 = $fmadd($load(p), s, a0);
                                a1 = $fmadd($load(p.add($lanes)), s, a1);
                                a2 = $fmadd($load(p.add(2 * $lanes)), s, a2);
                                a3 = $fmadd($load(p.add(3 * $lanes)), s, a3);
                            }
                            $store(yp.add(j), a0);
                            $store(yp.add(j + $lanes), a1);
                            $store(yp.add(j + 2 * $lanes), a2);
                            $store(yp.add(j + 3 * $lanes), a3);
                            j += STEP;
                        }
                        while j < n {
                            let mut a = if first {
                                *row(0).add(j) * x[r]
                            } else {
                                *yp.add(j)
                            };
                            for i in usize::from(first)..rows {
                                a = (*row(i).add(j)).mul_add(x[r + i], a);
                            }
                            *yp.add(j) = a;
                            j += 1;
                        }
                        r += rows;
                    }
                }
            }
        };
    }

    row_kernel!(
        /// AVX-512: 64 columns per step.
        rows_avx512, "avx512f,fma", 16,
        _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_mul_ps, _mm512_fmadd_ps
    );
    row_kernel!(
        /// AVX2 + FMA: 32 columns per step.
        rows_avx2, "avx2,fma", 8,
        _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_mul_ps, _mm256_fmadd_ps
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::sampling::Rng::new(seed);
        (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) as f32).collect()
    }

    #[test]
    fn equals_burns_matmul_bit_for_bit() {
        if row_kernel().is_none() {
            eprintln!("no AVX2+FMA here: one-row products take gemm's kernel");
        }
        let dev = Default::default();
        // one row: odd row counts (the one-row tail), column counts off the SIMD width, and
        // products large enough to be split across threads; several rows: below and above
        // gemm's threading threshold
        for (m, k, n) in [
            (1, 1, 1),
            (1, 3, 17),
            (1, 7, 33),
            (1, 64, 64),
            (1, 768, 256),
            (1, 770, 2050),
            (1, 2048, 768),
            (2, 768, 256),
            (7, 33, 65),
            (64, 768, 768),
            (130, 770, 300),
        ] {
            let x = Tensor::<Cpu, 2>::from_data(TensorData::new(rand(m * k, 1), [m, k]), &dev);
            let w = Tensor::<Cpu, 2>::from_data(TensorData::new(rand(k * n, 2), [k, n]), &dev);
            let fast = matmul(&x, &w).expect("the fast path applies");
            assert_eq!(fast.dims(), [m, n]);
            let reference = x.matmul(w);
            let (f, r) = (
                fast.into_data().to_vec::<f32>().unwrap(),
                reference.into_data().to_vec::<f32>().unwrap(),
            );
            assert_eq!(f.len(), m * n);
            for (j, (a, e)) in f.iter().zip(&r).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    e.to_bits(),
                    "{m}x{k}x{n} element {j}: {a} vs {e}"
                );
            }
        }
    }

    /// Each x86 kernel this CPU can run, called directly on a column block (the AVX-512 one
    /// is what `matmul` picks here; the AVX2 one is what CPUs without AVX-512 get).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_kernel_equals_gemm_on_column_blocks() {
        let dev = Default::default();
        let mut kernels: Vec<(&str, RowKernel)> = Vec::new();
        if std::is_x86_feature_detected!("avx512f") {
            kernels.push(("avx512", x86::rows_avx512));
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            kernels.push(("avx2", x86::rows_avx2));
        }
        if kernels.is_empty() {
            eprintln!("no AVX2+FMA here: nothing to compare");
            return;
        }
        for (k, n, c0, width) in [
            (9, 100, 0, 100),
            (17, 300, 64, 131),
            (768, 2048, 1024, 1024),
        ] {
            let (xv, wv) = (rand(k, 3), rand(k * n, 4));
            let x = Tensor::<Cpu, 2>::from_data(TensorData::new(xv.clone(), [1, k]), &dev);
            let w = Tensor::<Cpu, 2>::from_data(TensorData::new(wv.clone(), [k, n]), &dev);
            let reference = x.matmul(w).into_data().to_vec::<f32>().unwrap();
            for (name, kernel) in &kernels {
                let mut y = vec![f32::NAN; width];
                // SAFETY: the CPU has the kernel's features (checked above) and rows of `n`
                // floats hold the block `c0..c0 + width`.
                unsafe { kernel(&xv, wv.as_ptr().add(c0), n, &mut y) };
                for (j, a) in y.iter().enumerate() {
                    let e = reference[c0 + j];
                    assert_eq!(a.to_bits(), e.to_bits(), "{name} {k}x{n} column {}", c0 + j);
                }
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        let dev = Default::default();
        let x = Tensor::<Cpu, 2>::ones([1, 8], &dev);
        let wt = Tensor::<Cpu, 2>::ones([4, 8], &dev).transpose();
        assert!(
            matmul(&x, &wt).is_none(),
            "a transposed weight goes to burn"
        );
        let xt = Tensor::<Cpu, 2>::ones([8, 2], &dev).transpose();
        let w = Tensor::<Cpu, 2>::ones([8, 4], &dev);
        assert!(
            matmul(&xt, &w).is_none(),
            "transposed activations go to burn"
        );
        let w_wrong = Tensor::<Cpu, 2>::ones([9, 4], &dev);
        assert!(
            matmul(&x, &w_wrong).is_none(),
            "mismatched shapes go to burn"
        );
    }
}
