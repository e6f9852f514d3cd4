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
    /// Size of one attention head when a checkpoint states it (`head_dim`); otherwise
    /// `d_model / n_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// How RoPE's frequencies are scaled (`rope_type`).
    #[serde(default)]
    pub rope_scaling: RopeScaling,
    /// The attention projections have biases (`attention_bias`).
    #[serde(default)]
    pub attention_bias: bool,
    /// The MLP projections have biases (`mlp_bias`).
    #[serde(default)]
    pub mlp_bias: bool,
}

/// How RoPE's inverse frequencies are scaled, as transformers defines each `rope_type`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// `rope_type: "default"`: θ^(−2i/d) unscaled.
    #[default]
    Default,
    /// `rope_type: "llama3"` (every Llama-3.1/3.2 checkpoint): long wavelengths divided by
    /// `factor`, short ones kept, those between interpolated.
    Llama3 {
        /// `factor`.
        factor: f64,
        /// `low_freq_factor`.
        low_freq_factor: f64,
        /// `high_freq_factor`.
        high_freq_factor: f64,
        /// `original_max_position_embeddings`.
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// The scaled inverse frequencies, from the unscaled ones (transformers'
    /// `_compute_llama3_parameters`, term for term).
    pub fn apply(&self, inv_freq: &[f64]) -> Vec<f64> {
        match *self {
            Self::Default => inv_freq.to_vec(),
            Self::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                inv_freq
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        // neither short (kept) nor long (divided): interpolated
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect()
            }
        }
    }
}

/// The built-in presets.
pub const PRESETS: &[&str] = &["tiny", "small", "llama-1b"];

impl ModelConfig {
    /// A preset by name: `tiny` (CPU tests, seconds), `small` (~125M parameters; the
    /// dimensions of a GPT-2-small-sized Llama with GQA, RoPE θ 10,000, mirroring no
    /// particular checkpoint), `llama-1b` (meta-llama/Llama-3.2-1B: its dimensions, tied
    /// embeddings, RoPE θ 500,000 with Llama-3 scaling, factor 32, low/high frequency factors
    /// 1 and 4, original context 8,192, so a random-weight run computes that model's shapes
    /// and positions).
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
                head_dim: None,
                rope_scaling: RopeScaling::Default,
                attention_bias: false,
                mlp_bias: false,
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
                head_dim: None,
                rope_scaling: RopeScaling::Default,
                attention_bias: false,
                mlp_bias: false,
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
                head_dim: None,
                // as meta-llama/Llama-3.2-1B's config.json
                rope_scaling: RopeScaling::Llama3 {
                    factor: 32.0,
                    low_freq_factor: 1.0,
                    high_freq_factor: 4.0,
                    original_max_position_embeddings: 8192.0,
                },
                attention_bias: false,
                mlp_bias: false,
            },
            _ => return None,
        };
        Some(c)
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.d_model / self.n_heads.max(1))
    }

    /// RoPE's inverse frequencies, one per pair of a head's dimensions: θ^(−2i/d), scaled
    /// by [`rope_scaling`](Self::rope_scaling).
    pub fn inv_freqs(&self) -> Vec<f64> {
        let hd = self.head_dim();
        let base: Vec<f64> = (0..hd / 2)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f64 / hd as f64))
            .collect();
        self.rope_scaling.apply(&base)
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
        if self.head_dim.is_none() && !self.d_model.is_multiple_of(self.n_heads) {
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
        let mut attn = d * self.n_heads * hd + 2 * d * self.n_kv_heads * hd + self.n_heads * hd * d;
        if self.attention_bias {
            attn += self.n_heads * hd + 2 * self.n_kv_heads * hd + d;
        }
        let mut mlp = 3 * d * self.ffn_hidden;
        if self.mlp_bias {
            mlp += 2 * self.ffn_hidden + d;
        }
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

    /// Read a Hugging Face Llama `config.json`, as transformers 4 or 5 writes it: exactly,
    /// or refused. Errors name config.json's own keys.
    ///
    /// # Errors
    /// A message naming the missing, invalid or unsupported key.
    pub fn from_hf_json(text: &str, name: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("config.json: {e}"))?;
        let bad = |k: &str, why: &str| format!("config.json: `{k}` {why}");
        let opt_usize = |k: &str| -> Result<Option<usize>, String> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x
                    .as_u64()
                    .filter(|n| *n > 0)
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| bad(k, "must be a positive integer")),
            }
        };
        let get = |k: &str| -> Result<usize, String> {
            opt_usize(k)?.ok_or_else(|| bad(k, "is missing"))
        };
        let flag = |k: &str| -> Result<bool, String> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(false),
                Some(x) => x.as_bool().ok_or_else(|| bad(k, "must be true or false")),
            }
        };
        let vocab_size = get("vocab_size")?;
        let d_model = get("hidden_size")?;
        let n_layers = get("num_hidden_layers")?;
        let n_heads = get("num_attention_heads")?;
        let n_kv_heads = opt_usize("num_key_value_heads")?.unwrap_or(n_heads);
        if !n_heads.is_multiple_of(n_kv_heads) {
            return Err(bad(
                "num_key_value_heads",
                &format!("({n_kv_heads}) must divide num_attention_heads ({n_heads})"),
            ));
        }
        let head_dim = opt_usize("head_dim")?;
        if head_dim.is_none() && !d_model.is_multiple_of(n_heads) {
            return Err(bad(
                "num_attention_heads",
                &format!(
                    "({n_heads}) must divide hidden_size ({d_model}) when head_dim is not given"
                ),
            ));
        }
        let (rope_theta, rope_scaling) = rope_of(&v)?;
        let c = Self {
            name: name.to_string(),
            vocab_size,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads,
            ffn_hidden: get("intermediate_size")?,
            rope_theta,
            norm_eps: match v.get("rms_norm_eps") {
                None | Some(serde_json::Value::Null) => 1e-6,
                Some(x) => x
                    .as_f64()
                    .filter(|e| *e > 0.0)
                    .ok_or_else(|| bad("rms_norm_eps", "must be a positive number"))?,
            },
            tie_embeddings: flag("tie_word_embeddings")?,
            max_seq_len: opt_usize("max_position_embeddings")?.unwrap_or(2048),
            head_dim,
            rope_scaling,
            attention_bias: flag("attention_bias")?,
            mlp_bias: flag("mlp_bias")?,
        };
        if !c.head_dim().is_multiple_of(2) {
            return Err(bad(
                "head_dim",
                &format!("({}) must be even for rotary embeddings", c.head_dim()),
            ));
        }
        if let Some(act) = v.get("hidden_act").and_then(serde_json::Value::as_str) {
            if act != "silu" {
                return Err(bad(
                    "hidden_act",
                    &format!("`{act}` is not supported (silu only)"),
                ));
            }
        }
        c.validate().map_err(|e| format!("config.json: {e}"))?;
        Ok(c)
    }
}

/// RoPE's θ and scaling, wherever transformers writes them: `rope_parameters` (transformers
/// 5: θ and the scaling together) or `rope_theta` and `rope_scaling` at the top level
/// (transformers 4; `type` is the older spelling of `rope_type`).
fn rope_of(v: &serde_json::Value) -> Result<(f64, RopeScaling), String> {
    let params = v.get("rope_parameters").filter(|p| !p.is_null());
    let scaling = params.or_else(|| v.get("rope_scaling").filter(|p| !p.is_null()));
    let theta_at = |o: &serde_json::Value, k: &str| -> Result<Option<f64>, String> {
        match o.get("rope_theta") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .filter(|t| *t > 0.0)
                .map(Some)
                .ok_or_else(|| format!("config.json: `{k}` must be a positive number")),
        }
    };
    let theta = match params {
        Some(p) => theta_at(p, "rope_parameters.rope_theta")?,
        None => None,
    }
    .or(theta_at(v, "rope_theta")?)
    .unwrap_or(10_000.0);
    let Some(s) = scaling else {
        return Ok((theta, RopeScaling::Default));
    };
    let key = if params.is_some() {
        "rope_parameters"
    } else {
        "rope_scaling"
    };
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64, String> {
        s.get(k)
            .and_then(serde_json::Value::as_f64)
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("config.json: `{key}.{k}` is missing or not a positive number"))
    };
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "llama3" => {
            let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
            if high <= low {
                return Err(format!(
                    "config.json: `{key}.high_freq_factor` ({high}) must exceed low_freq_factor ({low})"
                ));
            }
            RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }
        }
        other => {
            return Err(format!(
                "config.json: `{key}.rope_type` `{other}` is not supported (supported: default, llama3)"
            ))
        }
    };
    Ok((theta, scaling))
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
