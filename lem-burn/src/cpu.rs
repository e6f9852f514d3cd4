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
    if m == 1 && fma_available() {
        let threads = rayon::current_num_threads();
        if threads > 1 && k * n >= SPLIT_MIN_WEIGHTS && n >= 2 * COLUMN_ALIGN {
            use rayon::prelude::*;
            let block = n.div_ceil(threads).next_multiple_of(COLUMN_ALIGN);
            y.par_chunks_mut(block)
                .enumerate()
                .for_each(|(i, yb)| rows_fma(xv, wv, n, i * block, yb));
        } else {
            rows_fma(xv, wv, n, 0, &mut y);
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

fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y = x @ w[.., c0..c0 + y.len()]` for a row-major `w` with `ld` columns.
fn rows_fma(x: &[f32], w: &[f32], ld: usize, c0: usize, y: &mut [f32]) {
    let n = y.len();
    // every row of the column block must lie inside `w` (the kernels read through pointers)
    let fits = x.len() * ld == w.len() && c0 + n <= ld;
    #[cfg(target_arch = "x86_64")]
    if fits {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present; the block lies inside `w` (checked above).
            unsafe { x86::rows_avx512(x, w.as_ptr().add(c0), ld, y) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present; the block lies inside `w` (checked above).
            unsafe { x86::rows_avx2(x, w.as_ptr().add(c0), ld, y) };
            return;
        }
    }
    // not reached from `matmul` (it checks for FMA first); a correct, slower answer
    for (j, yj) in y.iter_mut().enumerate() {
        let mut acc = 0f32;
        for (r, &xr) in x.iter().enumerate() {
            acc = w[r * ld + c0 + j].mul_add(xr, acc);
        }
        *yj = acc;
    }
}

/// The kernels: `ROWS` weight rows per pass over the output block, four vector accumulators
/// of output per step (independent FMA chains), the output in cache between passes. Each
/// output element is `w[0][j] * x[0]`, then one fused multiply-add per further row in order —
/// what `gemm`'s kernel computes.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    const ROWS: usize = 8;

    /// # Safety
    /// AVX-512F must be present; `w` must point at `x.len()` rows of `ld` floats, each with
    /// `y.len()` readable floats from the pointer's column.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn rows_avx512(x: &[f32], w: *const f32, ld: usize, y: &mut [f32]) {
        // SAFETY: the caller's contract covers every read through `w` and `x`; writes stay
        // within `y` (column blocks end at `n`, masked or scalar at the edge).
        unsafe {
            let (n, k) = (y.len(), x.len());
            let yp = y.as_mut_ptr();
            let mut r = 0;
            while r < k {
                let rows = ROWS.min(k - r);
                let first = r == 0;
                let row = |i: usize| w.add((r + i) * ld);
                let xv = |i: usize| _mm512_set1_ps(x[r + i]);
                let mut j = 0;
                while j + 64 <= n {
                    let (mut a0, mut a1, mut a2, mut a3, from) = if first {
                        let (p, s) = (row(0).add(j), xv(0));
                        (
                            _mm512_mul_ps(_mm512_loadu_ps(p), s),
                            _mm512_mul_ps(_mm512_loadu_ps(p.add(16)), s),
                            _mm512_mul_ps(_mm512_loadu_ps(p.add(32)), s),
                            _mm512_mul_ps(_mm512_loadu_ps(p.add(48)), s),
                            1,
                        )
                    } else {
                        (
                            _mm512_loadu_ps(yp.add(j)),
                            _mm512_loadu_ps(yp.add(j + 16)),
                            _mm512_loadu_ps(yp.add(j + 32)),
                            _mm512_loadu_ps(yp.add(j + 48)),
                            0,
                        )
                    };
                    for i in from..rows {
                        let (p, s) = (row(i).add(j), xv(i));
                        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p), s, a0);
                        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(16)), s, a1);
                        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(32)), s, a2);
                        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(48)), s, a3);
                    }
                    _mm512_storeu_ps(yp.add(j), a0);
                    _mm512_storeu_ps(yp.add(j + 16), a1);
                    _mm512_storeu_ps(yp.add(j + 32), a2);
                    _mm512_storeu_ps(yp.add(j + 48), a3);
                    j += 64;
                }
                while j < n {
                    let left = n - j;
                    let m: __mmask16 = if left >= 16 {
                        0xffff
                    } else {
                        ((1u32 << left) - 1) as u16
                    };
                    let (mut a, from) = if first {
                        let l = _mm512_maskz_loadu_ps(m, row(0).add(j));
                        (_mm512_mul_ps(l, xv(0)), 1)
                    } else {
                        (_mm512_maskz_loadu_ps(m, yp.add(j)), 0)
                    };
                    for i in from..rows {
                        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row(i).add(j)), xv(i), a);
                    }
                    _mm512_mask_storeu_ps(yp.add(j), m, a);
                    j += 16;
                }
                r += rows;
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA must be present; as [`rows_avx512`] for the pointers.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows_avx2(x: &[f32], w: *const f32, ld: usize, y: &mut [f32]) {
        // SAFETY: the caller's contract covers every read through `w` and `x`; writes stay
        // within `y` (column blocks end at `n`, masked or scalar at the edge).
        unsafe {
            let (n, k) = (y.len(), x.len());
            let yp = y.as_mut_ptr();
            let mut r = 0;
            while r < k {
                let rows = ROWS.min(k - r);
                let first = r == 0;
                let row = |i: usize| w.add((r + i) * ld);
                let xv = |i: usize| _mm256_set1_ps(x[r + i]);
                let mut j = 0;
                while j + 32 <= n {
                    let (mut a0, mut a1, mut a2, mut a3, from) = if first {
                        let (p, s) = (row(0).add(j), xv(0));
                        (
                            _mm256_mul_ps(_mm256_loadu_ps(p), s),
                            _mm256_mul_ps(_mm256_loadu_ps(p.add(8)), s),
                            _mm256_mul_ps(_mm256_loadu_ps(p.add(16)), s),
                            _mm256_mul_ps(_mm256_loadu_ps(p.add(24)), s),
                            1,
                        )
                    } else {
                        (
                            _mm256_loadu_ps(yp.add(j)),
                            _mm256_loadu_ps(yp.add(j + 8)),
                            _mm256_loadu_ps(yp.add(j + 16)),
                            _mm256_loadu_ps(yp.add(j + 24)),
                            0,
                        )
                    };
                    for i in from..rows {
                        let (p, s) = (row(i).add(j), xv(i));
                        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p), s, a0);
                        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(8)), s, a1);
                        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(16)), s, a2);
                        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(24)), s, a3);
                    }
                    _mm256_storeu_ps(yp.add(j), a0);
                    _mm256_storeu_ps(yp.add(j + 8), a1);
                    _mm256_storeu_ps(yp.add(j + 16), a2);
                    _mm256_storeu_ps(yp.add(j + 24), a3);
                    j += 32;
                }
                // the last columns one at a time (scalar fused multiply-adds, same order)
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
            })
            .collect()
    }

    #[test]
    fn equals_burns_matmul_bit_for_bit() {
        if !fma_available() {
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
        type Kernel = unsafe fn(&[f32], *const f32, usize, &mut [f32]);
        let mut kernels: Vec<(&str, Kernel)> = Vec::new();
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
