//! The CPU backend's products of activations with weight matrices: all of decode, most of
//! prefill.
//!
//! **One row** (batch-1 decode) multiplies one activation row by every weight matrix, so it
//! streams the weights from memory once per token and its speed is the memory bandwidth it
//! reaches. `gemm` (under burn's Flex backend) sends such products to a kernel that loads and
//! stores the whole output row once per weight row, in AVX-512 where the CPU has it; on the
//! AMD EPYC build machine that reaches about two thirds of the bandwidth a plain read of the
//! weights does. [`matmul`] keeps the output row in cache across four weight rows per pass
//! (four sequential read streams), and splits the columns across the backend's threads when
//! there are several. It computes every output element exactly as `gemm` does — one fused
//! multiply-add per weight row, rows in order, from zero — so its result equals burn's
//! `matmul` bit for bit (tested). It runs on x86-64 with AVX2 and FMA.
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
/// Column blocks handed to one thread are a multiple of this many columns (one cache line of
/// output per 16 columns).
const COLUMN_ALIGN: usize = 16;
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
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `matvec` reaches here only after `fma_available` found AVX2 and FMA.
        unsafe { rows_fma_avx2(x, w, ld, c0, y) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        rows_fma_body(x, w, ld, c0, y)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_fma_avx2(x: &[f32], w: &[f32], ld: usize, c0: usize, y: &mut [f32]) {
    rows_fma_body(x, w, ld, c0, y)
}

/// Four weight rows per pass over `y`; every `y[j]` accumulates `w[r][j] * x[r]` for
/// `r = 0, 1, ..` in order, one fused multiply-add each, as `gemm`'s kernel does.
#[inline(always)]
fn rows_fma_body(x: &[f32], w: &[f32], ld: usize, c0: usize, y: &mut [f32]) {
    let n = y.len();
    let row = |r: usize| &w[r * ld + c0..r * ld + c0 + n];
    y.fill(0.0);
    let mut r = 0;
    while r + 4 <= x.len() {
        let (a, b, c, d) = (row(r), row(r + 1), row(r + 2), row(r + 3));
        let (xa, xb, xc, xd) = (x[r], x[r + 1], x[r + 2], x[r + 3]);
        for ((((yj, &wa), &wb), &wc), &wd) in y.iter_mut().zip(a).zip(b).zip(c).zip(d) {
            *yj = wd.mul_add(xd, wc.mul_add(xc, wb.mul_add(xb, wa.mul_add(xa, *yj))));
        }
        r += 4;
    }
    while r < x.len() {
        let xa = x[r];
        for (yj, &wa) in y.iter_mut().zip(row(r)) {
            *yj = wa.mul_add(xa, *yj);
        }
        r += 1;
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
