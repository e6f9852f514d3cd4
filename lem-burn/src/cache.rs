//! The key/value cache: per layer, keys and values of every past position, preallocated
//! for the whole generation and written in place one block of positions at a time.

use burn::prelude::*;

/// One layer's keys and values, `[batch, kv_heads, capacity, head_dim]`: each head's positions
/// are one contiguous matrix, the layout batched matmuls take on every backend.
#[derive(Debug)]
pub struct LayerCache<B: Backend> {
    k: Option<Tensor<B, 4>>,
    v: Option<Tensor<B, 4>>,
}

impl<B: Backend> LayerCache<B> {
    fn new(
        batch: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            k: Some(Tensor::zeros([batch, kv_heads, capacity, head_dim], device)),
            v: Some(Tensor::zeros([batch, kv_heads, capacity, head_dim], device)),
        }
    }

    /// Write `k`, `v` (`[batch, kv_heads, s, head_dim]`) at positions `pos..pos+s` and return
    /// the keys and values of positions `0..pos+s`.
    ///
    /// The cache tensors are moved out, assigned and moved back, so they are uniquely owned
    /// and the backend writes in place instead of copying the cache.
    #[allow(clippy::expect_used)]
    pub fn append(
        &mut self,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        pos: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let end = pos + k.dims()[2];
        // Invariant: `k` and `v` are `Some` outside this function; they are taken and put
        // back below with no early return in between.
        let kc = self.k.take().expect("cache keys present between appends");
        let vc = self.v.take().expect("cache values present between appends");
        let kc = kc.slice_assign(s![.., .., pos..end, ..], k);
        let vc = vc.slice_assign(s![.., .., pos..end, ..], v);
        let keys = kc.clone().slice(s![.., .., 0..end, ..]);
        let values = vc.clone().slice(s![.., .., 0..end, ..]);
        self.k = Some(kc);
        self.v = Some(vc);
        (keys, values)
    }
}

/// The cache of every layer for one batch of sequences.
#[derive(Debug)]
pub struct KvCache<B: Backend> {
    /// One per layer.
    pub layers: Vec<LayerCache<B>>,
    capacity: usize,
    batch: usize,
}

impl<B: Backend> KvCache<B> {
    /// A cache for `batch` sequences of up to `capacity` positions.
    pub fn new(
        n_layers: usize,
        batch: usize,
        kv_heads: usize,
        capacity: usize,
        head_dim: usize,
        device: &B::Device,
    ) -> Self {
        Self {
            layers: (0..n_layers)
                .map(|_| LayerCache::new(batch, kv_heads, capacity, head_dim, device))
                .collect(),
            capacity,
            batch,
        }
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences in the batch.
    pub fn batch(&self) -> usize {
        self.batch
    }
}
