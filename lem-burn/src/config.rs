//! Model dimensions and the built-in presets.

use serde::{Deserialize, Serialize};

/// The dimensions of a Llama-style decoder-only transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Preset or model name.
    pub name: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// SwiGLU hidden size.
    pub ffn_hidden: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// The LM head shares the token embedding.
    pub tie_embeddings: bool,
    /// Longest sequence the model supports.
    pub max_seq_len: usize,
}

/// The built-in presets.
pub const PRESETS: &[&str] = &["tiny", "small", "llama-1b"];

impl ModelConfig {
    /// A preset by name: `tiny` (CPU tests, seconds), `small` (~125M parameters),
    /// `llama-1b` (the Llama-3.2-1B dimensions).
    pub fn preset(name: &str) -> Option<Self> {
        let c = match name {
            "tiny" => Self {
                name: "tiny".into(),
                vocab_size: 512,
                d_model: 64,
                n_layers: 2,
                n_heads: 4,
                n_kv_heads: 2,
                ffn_hidden: 192,
                rope_theta: 10_000.0,
                norm_eps: 1e-5,
                tie_embeddings: false,
                max_seq_len: 1024,
            },
            "small" => Self {
                name: "small".into(),
                vocab_size: 32_000,
                d_model: 768,
                n_layers: 12,
                n_heads: 12,
                n_kv_heads: 4,
                ffn_hidden: 2048,
                rope_theta: 10_000.0,
                norm_eps: 1e-5,
                tie_embeddings: false,
                max_seq_len: 4096,
            },
            "llama-1b" => Self {
                name: "llama-1b".into(),
                vocab_size: 128_256,
                d_model: 2048,
                n_layers: 16,
                n_heads: 32,
                n_kv_heads: 8,
                ffn_hidden: 8192,
                rope_theta: 500_000.0,
                norm_eps: 1e-5,
                tie_embeddings: true,
                max_seq_len: 131_072,
            },
            _ => return None,
        };
        Some(c)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Check that the dimensions fit together.
    ///
    /// # Errors
    /// A message naming the inconsistent dimension.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("ffn_hidden", self.ffn_hidden),
            ("max_seq_len", self.max_seq_len),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("{k} must be positive"));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(format!(
                "d_model {} is not divisible by n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err(format!(
                "n_heads {} is not divisible by n_kv_heads {}",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for rotary embeddings",
                self.head_dim()
            ));
        }
        Ok(())
    }

    /// Parameters implied by the dimensions (what the model must have).
    pub fn param_count(&self) -> usize {
        let (v, d, hd) = (self.vocab_size, self.d_model, self.head_dim());
        let attn = d * self.n_heads * hd + 2 * d * self.n_kv_heads * hd + self.n_heads * hd * d;
        let mlp = 3 * d * self.ffn_hidden;
        let norms = 2 * d;
        let head = if self.tie_embeddings { 0 } else { v * d };
        v * d + self.n_layers * (attn + mlp + norms) + d + head
    }

    /// FLOPs of one forward pass per token at context length `ctx` (2 per multiply-add):
    /// the block matmuls, the LM head and attention over `ctx` positions.
    pub fn flops_per_token(&self, ctx: usize) -> f64 {
        let (d, hd) = (self.d_model, self.head_dim());
        let attn_proj =
            d * self.n_heads * hd + 2 * d * self.n_kv_heads * hd + self.n_heads * hd * d;
        let blocks = self.n_layers * (attn_proj + 3 * d * self.ffn_hidden);
        let lm_head = self.vocab_size * d;
        let attention = 2 * self.n_layers * ctx * self.n_heads * hd;
        2.0 * (blocks + lm_head + attention) as f64
    }

    /// Read a Hugging Face Llama `config.json`.
    ///
    /// # Errors
    /// A message naming the missing or invalid field.
    pub fn from_hf_json(text: &str, name: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("config.json: {e}"))?;
        let get = |k: &str| -> Result<usize, String> {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| format!("config.json: missing or invalid `{k}`"))
        };
        let vocab_size = get("vocab_size")?;
        let d_model = get("hidden_size")?;
        let n_layers = get("num_hidden_layers")?;
        let n_heads = get("num_attention_heads")?;
        let c = Self {
            name: name.to_string(),
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads: get("num_key_value_heads").unwrap_or(n_heads),
            ffn_hidden: get("intermediate_size")?,
            rope_theta: v
                .get("rope_theta")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(10_000.0),
            norm_eps: v
                .get("rms_norm_eps")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(1e-5),
            tie_embeddings: v
                .get("tie_word_embeddings")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            max_seq_len: get("max_position_embeddings").unwrap_or(4096),
        };
        c.validate().map_err(|e| format!("config.json: {e}"))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_sized_as_documented() {
        for p in PRESETS {
            let c = ModelConfig::preset(p).unwrap();
            c.validate().unwrap();
        }
        let small = ModelConfig::preset("small").unwrap().param_count();
        assert!((120_000_000..130_000_000).contains(&small), "{small}");
        // Llama-3.2-1B has 1,235,814,400 parameters
        assert_eq!(
            ModelConfig::preset("llama-1b").unwrap().param_count(),
            1_235_814_400
        );
        assert!(ModelConfig::preset("huge").is_none());
    }

    #[test]
    fn hf_config_is_read() {
        let j = r#"{"vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "intermediate_size": 192, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": true, "max_position_embeddings": 256}"#;
        let c = ModelConfig::from_hf_json(j, "x").unwrap();
        assert_eq!(
            (c.n_kv_heads, c.head_dim(), c.tie_embeddings),
            (2, 16, true)
        );
        let e = ModelConfig::from_hf_json(r#"{"vocab_size": 5}"#, "x").unwrap_err();
        assert!(e.contains("hidden_size"), "{e}");
    }
}
