//! Weights in the Hugging Face Llama layout: a `config.json` and one or more `.safetensors`
//! files (`model.embed_tokens.weight`, `model.layers.N.self_attn.q_proj.weight`, ...).
//! F32, F16 and BF16 tensors are read; PyTorch's `[out, in]` linear weights are transposed
//! to burn's `[in, out]`.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::model::{Attention, Block, Mlp, Model, Transformer};

/// Host copies of every tensor, by name: (shape, values).
type HostTensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn to_f32(path: &Path, name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let out = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(bad(
                path,
                format!("tensor `{name}` has unsupported dtype {other:?}"),
            ))
        }
    };
    Ok(out)
}

fn read_all(dir: &Path) -> Result<HostTensors> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad(dir, "no .safetensors files in this directory"));
    }
    let mut out = HostTensors::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| Error::Io {
            path: f.clone(),
            source: e,
        })?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(&f, format!("not a safetensors file ({e})")))?;
        for (name, view) in st.tensors() {
            let data = to_f32(&f, &name, view.dtype(), view.data())?;
            out.insert(name, (view.shape().to_vec(), data));
        }
    }
    Ok(out)
}

struct Loader<'a, B: Backend> {
    dir: &'a Path,
    tensors: HostTensors,
    device: &'a B::Device,
}

impl<B: Backend> Loader<'_, B> {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (s, v) = self
            .tensors
            .remove(name)
            .ok_or_else(|| bad(self.dir, format!("tensor `{name}` is missing")))?;
        if s != shape {
            return Err(bad(
                self.dir,
                format!("tensor `{name}` has shape {s:?}, expected {shape:?}"),
            ));
        }
        Ok(v)
    }

    /// A PyTorch `[out, in]` weight as a burn `[in, out]` linear layer.
    /// `{base}.weight` (and `{base}.bias` when `bias`), transposed into burn's layout.
    fn linear(&mut self, base: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<B>> {
        let w = self.take(&format!("{base}.weight"), &[d_out, d_in])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                t[i * d_out + o] = w[o * d_in + i];
            }
        }
        let bias = if bias {
            let b = self.take(&format!("{base}.bias"), &[d_out])?;
            Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b, [d_out]),
                self.device,
            )))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(t, [d_in, d_out]),
                self.device,
            )),
            bias,
        })
    }

    /// Every tensor left is one the model does not use: an error naming them, except what
    /// the model derives itself and checks (RoPE's `inv_freq` buffers, a tied LM head equal
    /// to the embedding).
    fn finish(mut self, c: &ModelConfig, embed: &[f32]) -> Result<()> {
        let inv: Vec<f32> = c.inv_freqs().iter().map(|f| *f as f32).collect();
        let mut unused: Vec<String> = Vec::new();
        let mut names: Vec<String> = self.tensors.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some((shape, v)) = self.tensors.remove(&name) else {
                continue;
            };
            let derived = if name.ends_with("rotary_emb.inv_freq") {
                shape == [inv.len()]
                    && v.iter()
                        .zip(&inv)
                        .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1e-30))
            } else if name == "lm_head.weight" && c.tie_embeddings {
                shape == [c.vocab_size, c.d_model] && v == embed
            } else {
                false
            };
            if !derived {
                unused.push(name);
            }
        }
        if unused.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = unused.iter().take(5).map(String::as_str).collect();
        let more = if unused.len() > 5 {
            format!(" and {} more", unused.len() - 5)
        } else {
            String::new()
        };
        Err(bad(
            self.dir,
            format!(
                "tensor `{}`{more} is not used by a Llama model with this config.json (a different architecture, or a config that does not match the weights)",
                shown.join("`, `")
            ),
        ))
    }

    fn norm(&mut self, name: &str, d: usize, eps: f64) -> Result<RmsNorm<B>> {
        let g = self.take(name, &[d])?;
        let mut n = RmsNormConfig::new(d).with_epsilon(eps).init(self.device);
        n.gamma = Param::from_tensor(Tensor::from_data(TensorData::new(g, [d]), self.device));
        Ok(n)
    }
}

/// Load `DIR/config.json` and `DIR/*.safetensors` (Llama layout). `max_len` bounds the
/// context the rotary tables cover.
///
/// # Errors
/// [`Error::Io`] or [`Error::Weights`] naming the file, a missing tensor or a wrong shape.
pub fn load<B: Backend>(dir: &Path, max_len: usize, device: &B::Device) -> Result<Model<B>> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::Io {
        path: cfg_path.clone(),
        source: e,
    })?;
    let name = dir.file_name().map_or_else(
        || "weights".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let c = ModelConfig::from_hf_json(&text, &name).map_err(|e| bad(&cfg_path, e))?;
    let mut l = Loader::<B> {
        dir,
        tensors: read_all(dir)?,
        device,
    };
    let hd = c.head_dim();
    let embed_host = l.take("model.embed_tokens.weight", &[c.vocab_size, c.d_model])?;
    let embed = Embedding {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(embed_host.clone(), [c.vocab_size, c.d_model]),
            device,
        )),
    };
    let (ab, mb) = (c.attention_bias, c.mlp_bias);
    let mut blocks = Vec::with_capacity(c.n_layers);
    for i in 0..c.n_layers {
        let p = format!("model.layers.{i}");
        blocks.push(Block {
            attn_norm: l.norm(
                &format!("{p}.input_layernorm.weight"),
                c.d_model,
                c.norm_eps,
            )?,
            attn: Attention::new(
                l.linear(
                    &format!("{p}.self_attn.q_proj"),
                    c.d_model,
                    c.n_heads * hd,
                    ab,
                )?,
                l.linear(
                    &format!("{p}.self_attn.k_proj"),
                    c.d_model,
                    c.n_kv_heads * hd,
                    ab,
                )?,
                l.linear(
                    &format!("{p}.self_attn.v_proj"),
                    c.d_model,
                    c.n_kv_heads * hd,
                    ab,
                )?,
                l.linear(
                    &format!("{p}.self_attn.o_proj"),
                    c.n_heads * hd,
                    c.d_model,
                    ab,
                )?,
                &c,
            ),
            mlp_norm: l.norm(
                &format!("{p}.post_attention_layernorm.weight"),
                c.d_model,
                c.norm_eps,
            )?,
            mlp: Mlp {
                gate: l.linear(&format!("{p}.mlp.gate_proj"), c.d_model, c.ffn_hidden, mb)?,
                up: l.linear(&format!("{p}.mlp.up_proj"), c.d_model, c.ffn_hidden, mb)?,
                down: l.linear(&format!("{p}.mlp.down_proj"), c.ffn_hidden, c.d_model, mb)?,
            },
        });
    }
    let norm = l.norm("model.norm.weight", c.d_model, c.norm_eps)?;
    let lm_head = if c.tie_embeddings {
        None
    } else {
        Some(l.linear("lm_head", c.d_model, c.vocab_size, false)?)
    };
    l.finish(&c, &embed_host)?;
    let net = Transformer {
        embed,
        blocks,
        norm,
        lm_head,
    };
    Ok(Model::from_parts(net, c, max_len, device))
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}

fn hf_config(c: &ModelConfig) -> serde_json::Value {
    let mut v = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.d_model,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "intermediate_size": c.ffn_hidden,
        "rope_theta": c.rope_theta,
        "rms_norm_eps": c.norm_eps,
        "tie_word_embeddings": c.tie_embeddings,
        "max_position_embeddings": c.max_seq_len,
        "attention_bias": c.attention_bias,
        "mlp_bias": c.mlp_bias,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    });
    if let Some(hd) = c.head_dim {
        v["head_dim"] = serde_json::json!(hd);
    }
    if let crate::config::RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    } = c.rope_scaling
    {
        v["rope_scaling"] = serde_json::json!({
            "rope_type": "llama3",
            "factor": factor,
            "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings,
        });
    }
    v
}

/// Write `model` as `DIR/config.json` + `DIR/model.safetensors` (F32, Llama layout), the
/// format [`load`] reads and the PyTorch reference script can read.
///
/// # Errors
/// [`Error::Io`] naming the file.
pub fn save<B: Backend>(model: &Model<B>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let c = &model.config;
    let net = &model.net;
    let mut named: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let lin = |base: String, l: &Linear<B>| {
        let name = format!("{base}.weight");
        let [d_in, d_out] = l.weight.val().dims();
        let w = host(l.weight.val());
        let mut t = vec![0f32; w.len()];
        for i in 0..d_in {
            for o in 0..d_out {
                t[o * d_in + i] = w[i * d_out + o];
            }
        }
        (name, vec![d_out, d_in], t)
    };
    named.push((
        "model.embed_tokens.weight".into(),
        vec![c.vocab_size, c.d_model],
        host(net.embed.weight.val()),
    ));
    for (i, b) in net.blocks.iter().enumerate() {
        let p = format!("model.layers.{i}");
        named.push((
            format!("{p}.input_layernorm.weight"),
            vec![c.d_model],
            host(b.attn_norm.gamma.val()),
        ));
        named.push((
            format!("{p}.post_attention_layernorm.weight"),
            vec![c.d_model],
            host(b.mlp_norm.gamma.val()),
        ));
        for (base, l) in [
            ("self_attn.q_proj", &b.attn.q),
            ("self_attn.k_proj", &b.attn.k),
            ("self_attn.v_proj", &b.attn.v),
            ("self_attn.o_proj", &b.attn.o),
            ("mlp.gate_proj", &b.mlp.gate),
            ("mlp.up_proj", &b.mlp.up),
            ("mlp.down_proj", &b.mlp.down),
        ] {
            named.push(lin(format!("{p}.{base}"), l));
            if let Some(bias) = &l.bias {
                let v = host(bias.val());
                named.push((format!("{p}.{base}.bias"), vec![v.len()], v));
            }
        }
    }
    named.push((
        "model.norm.weight".into(),
        vec![c.d_model],
        host(net.norm.gamma.val()),
    ));
    if let Some(h) = &net.lm_head {
        named.push(lin("lm_head".into(), h));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .into_iter()
        .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let path = dir.join("model.safetensors");
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| bad(&path, e.to_string()))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, None, &path).map_err(|e| bad(&path, e.to_string()))?;
    let cfg_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&hf_config(c)).unwrap_or_default();
    std::fs::write(&cfg_path, text).map_err(|e| Error::Io {
        path: cfg_path,
        source: e,
    })
}
