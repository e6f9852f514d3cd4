//! Rotary position embeddings in the "rotate half" layout of Llama checkpoints.
//!
//! The model applies them in the layout its projections produce, `[batch, seq, heads *
//! head_dim]`, through [`Rope::window`]: the tables for the window's positions are repeated
//! per head once per forward pass, and "rotate half" is a product with a signed permutation
//! matrix. Every element-wise step then runs on contiguous buffers (a permuted
//! `[batch, heads, seq, head_dim]` view would be walked element by element on the CPU), and
//! the result equals the definition (`x * cos + rotate_half(x) * sin` on the per-head view,
//! kept in the tests) bit for bit: the matrix product of a row with a signed permutation adds
//! exact zeros to one exact product.

use burn::prelude::*;

/// Precomputed cos/sin tables, `[max_len, head_dim]` each.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    /// `rotate_half` as a matrix: `x @ rot == cat(-x[half..], x[..half])`.
    rot: Tensor<B, 2>,
}

/// The rotation of one window of positions for a given number of heads, ready to apply to
/// `[batch, seq, heads * head_dim]` tensors.
#[derive(Debug, Clone)]
pub struct RopeWindow<B: Backend> {
    /// `[1, seq * heads * head_dim]`.
    cos: Tensor<B, 2>,
    /// `[1, seq * heads * head_dim]`.
    sin: Tensor<B, 2>,
    rot: Tensor<B, 2>,
    seq: usize,
    width: usize,
    head_dim: usize,
}

impl<B: Backend> Rope<B> {
    /// Tables for positions `0..max_len` with base `theta`, unscaled.
    pub fn new(head_dim: usize, max_len: usize, theta: f64, device: &B::Device) -> Self {
        let inv: Vec<f64> = (0..head_dim / 2)
            .map(|k| theta.powf(-2.0 * k as f64 / head_dim as f64))
            .collect();
        Self::from_inv_freqs(&inv, max_len, device)
    }

    /// Tables for positions `0..max_len` from the inverse frequencies of each pair of a
    /// head's dimensions (`head_dim / 2` of them, scaled as the checkpoint says).
    pub fn from_inv_freqs(inv_freqs: &[f64], max_len: usize, device: &B::Device) -> Self {
        let half = inv_freqs.len();
        let head_dim = 2 * half;
        let mut cos = Vec::with_capacity(max_len * head_dim);
        let mut sin = Vec::with_capacity(max_len * head_dim);
        for pos in 0..max_len {
            for i in 0..head_dim {
                let freq = inv_freqs[i % half];
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let mut rot = vec![0f32; head_dim * head_dim];
        for j in 0..half {
            // out[j] = -x[j + half]; out[j + half] = x[j]
            rot[(j + half) * head_dim + j] = -1.0;
            rot[j * head_dim + j + half] = 1.0;
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_len, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_len, head_dim]), device),
            rot: Tensor::from_data(TensorData::new(rot, [head_dim, head_dim]), device),
        }
    }

    /// Longest supported position + 1.
    pub fn max_len(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Dimension of one head.
    pub fn head_dim(&self) -> usize {
        self.cos.dims()[1]
    }

    /// The rotation of positions `start..start + seq` for `heads` heads.
    ///
    /// # Panics
    /// When `start + seq` exceeds [`Rope::max_len`].
    pub fn window(&self, start: usize, seq: usize, heads: usize) -> RopeWindow<B> {
        let hd = self.head_dim();
        let repeat = |t: &Tensor<B, 2>| {
            t.clone()
                .slice(s![start..start + seq, ..])
                .reshape([seq, 1, hd])
                .expand([seq, heads, hd])
                .reshape([1, seq * heads * hd])
        };
        RopeWindow {
            cos: repeat(&self.cos),
            sin: repeat(&self.sin),
            rot: self.rot.clone(),
            seq,
            width: heads * hd,
            head_dim: hd,
        }
    }
}

impl<B: Backend> RopeWindow<B> {
    /// Rotate `x`, `[batch, seq, heads * head_dim]` with the window's `seq` and `heads`.
    ///
    /// # Panics
    /// When `x`'s sequence length or width differs from the window's.
    pub fn apply(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, s, n] = x.dims();
        assert!(
            s == self.seq && n == self.width,
            "rotary window is [{}, {}], input [{s}, {n}]",
            self.seq,
            self.width
        );
        let rotated = x
            .clone()
            .reshape([b * s * n / self.head_dim, self.head_dim])
            .matmul(self.rot.clone())
            .reshape([b, s * n]);
        let y = x.reshape([b, s * n]) * self.cos.clone() + rotated * self.sin.clone();
        y.reshape([b, s, n])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Cpu;

    fn values(t: Tensor<Cpu, 4>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// The definition: rotate `x` (`[batch, heads, seq, head_dim]`) whose first position is
    /// `start` by slicing the halves, negating one and concatenating.
    fn definition(rope: &Rope<Cpu>, x: Tensor<Cpu, 4>, start: usize) -> Tensor<Cpu, 4> {
        let [_, _, s, d] = x.dims();
        let half = d / 2;
        let cos = rope
            .cos
            .clone()
            .slice(s![start..start + s, ..])
            .unsqueeze::<4>();
        let sin = rope
            .sin
            .clone()
            .slice(s![start..start + s, ..])
            .unsqueeze::<4>();
        let x1 = x.clone().slice(s![.., .., .., 0..half]);
        let x2 = x.clone().slice(s![.., .., .., half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }

    #[test]
    fn the_window_equals_the_definition_bit_for_bit() {
        let device = Default::default();
        let (hd, heads) = (16, 3);
        let rope = Rope::<Cpu>::new(hd, 40, 10_000.0, &device);
        for (b, s, start) in [(1, 1, 0), (2, 1, 17), (1, 7, 0), (3, 5, 30)] {
            let n = b * s * heads * hd;
            let data: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 37.0)
                .collect();
            let x = Tensor::<Cpu, 3>::from_data(TensorData::new(data, [b, s, heads * hd]), &device);
            let fast = rope.window(start, s, heads).apply(x.clone());
            let fast = fast.reshape([b, s, heads, hd]).swap_dims(1, 2);
            let reference = definition(&rope, x.reshape([b, s, heads, hd]).swap_dims(1, 2), start);
            let (f, r) = (values(fast), values(reference));
            assert_eq!(f.len(), r.len());
            for (i, (a, e)) in f.iter().zip(&r).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    e.to_bits(),
                    "b{b} s{s} start{start} element {i}"
                );
            }
        }
    }

    #[test]
    fn position_zero_is_the_identity_and_rotation_keeps_the_norm() {
        let device = Default::default();
        let rope = Rope::<Cpu>::new(8, 16, 10_000.0, &device);
        let data: Vec<f32> = (0..16).map(|i| i as f32 - 7.5).collect();
        let x = Tensor::<Cpu, 3>::from_data(TensorData::new(data.clone(), [1, 2, 8]), &device);
        let at0 = rope.window(0, 1, 2).apply(x.clone().reshape([1, 1, 16]));
        let at0 = at0.into_data().to_vec::<f32>().unwrap();
        assert_eq!(at0, data);
        let y = rope.window(5, 2, 1).apply(x);
        let y = y.into_data().to_vec::<f32>().unwrap();
        // each (i, i + half) pair is rotated by an angle: its norm is kept
        for p in 0..2 {
            for i in 0..4 {
                let (a, b) = (data[p * 8 + i], data[p * 8 + i + 4]);
                let (c, d) = (y[p * 8 + i], y[p * 8 + i + 4]);
                let (n0, n1) = (a * a + b * b, c * c + d * d);
                assert!((n0 - n1).abs() <= 1e-4 * n0.max(1.0), "{n0} vs {n1}");
            }
        }
    }
}
