//! Rotary position embeddings in the "rotate half" layout of Llama checkpoints.

use burn::prelude::*;

/// Precomputed cos/sin tables, `[max_len, head_dim]` each.
#[derive(Debug, Clone)]
pub struct Rope<B: Backend> {
    cos: Tensor<B, 2>,
    sin: Tensor<B, 2>,
    half: usize,
}

impl<B: Backend> Rope<B> {
    /// Tables for positions `0..max_len`.
    pub fn new(head_dim: usize, max_len: usize, theta: f64, device: &B::Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_len * head_dim);
        let mut sin = Vec::with_capacity(max_len * head_dim);
        for pos in 0..max_len {
            for i in 0..head_dim {
                let k = (i % half) as f64;
                let freq = theta.powf(-2.0 * k / head_dim as f64);
                let angle = pos as f64 * freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_len, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_len, head_dim]), device),
            half,
        }
    }

    /// Longest supported position + 1.
    pub fn max_len(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotate `x` (`[batch, heads, seq, head_dim]`) whose first position is `start`.
    pub fn apply(&self, x: Tensor<B, 4>, start: usize) -> Tensor<B, 4> {
        let [_, _, s, d] = x.dims();
        let cos = self
            .cos
            .clone()
            .slice(s![start..start + s, ..])
            .unsqueeze::<4>();
        let sin = self
            .sin
            .clone()
            .slice(s![start..start + s, ..])
            .unsqueeze::<4>();
        let x1 = x.clone().slice(s![.., .., .., 0..self.half]);
        let x2 = x.clone().slice(s![.., .., .., self.half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }
}
