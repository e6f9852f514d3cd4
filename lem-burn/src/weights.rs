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
    fn linear(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Linear<B>> {
        let w = self.take(name, &[d_out, d_in])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                t[i * d_out + o] = w[o * d_in + i];
            }
        }
        Ok(Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(t, [d_in, d_out]),
                self.device,
            )),
            bias: None,
        })
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
    let embed = l.take("model.embed_tokens.weight", &[c.vocab_size, c.d_model])?;
    let embed = Embedding {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(embed, [c.vocab_size, c.d_model]),
            device,
        )),
    };
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
                    &format!("{p}.self_attn.q_proj.weight"),
                    c.d_model,
                    c.n_heads * hd,
                )?,
                l.linear(
                    &format!("{p}.self_attn.k_proj.weight"),
                    c.d_model,
                    c.n_kv_heads * hd,
                )?,
                l.linear(
                    &format!("{p}.self_attn.v_proj.weight"),
                    c.d_model,
                    c.n_kv_heads * hd,
                )?,
                l.linear(
                    &format!("{p}.self_attn.o_proj.weight"),
                    c.n_heads * hd,
                    c.d_model,
                )?,
                &c,
            ),
            mlp_norm: l.norm(
                &format!("{p}.post_attention_layernorm.weight"),
                c.d_model,
                c.norm_eps,
            )?,
            mlp: Mlp {
                gate: l.linear(
                    &format!("{p}.mlp.gate_proj.weight"),
                    c.d_model,
                    c.ffn_hidden,
                )?,
                up: l.linear(&format!("{p}.mlp.up_proj.weight"), c.d_model, c.ffn_hidden)?,
                down: l.linear(
                    &format!("{p}.mlp.down_proj.weight"),
                    c.ffn_hidden,
                    c.d_model,
                )?,
            },
        });
    }
    let norm = l.norm("model.norm.weight", c.d_model, c.norm_eps)?;
    let lm_head = if c.tie_embeddings {
        None
    } else {
        Some(l.linear("lm_head.weight", c.d_model, c.vocab_size)?)
    };
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
    serde_json::json!({
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
        "torch_dtype": "float32",
    })
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
    let lin = |name: String, l: &Linear<B>| {
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
        named.push(lin(format!("{p}.self_attn.q_proj.weight"), &b.attn.q));
        named.push(lin(format!("{p}.self_attn.k_proj.weight"), &b.attn.k));
        named.push(lin(format!("{p}.self_attn.v_proj.weight"), &b.attn.v));
        named.push(lin(format!("{p}.self_attn.o_proj.weight"), &b.attn.o));
        named.push(lin(format!("{p}.mlp.gate_proj.weight"), &b.mlp.gate));
        named.push(lin(format!("{p}.mlp.up_proj.weight"), &b.mlp.up));
        named.push(lin(format!("{p}.mlp.down_proj.weight"), &b.mlp.down));
    }
    named.push((
        "model.norm.weight".into(),
        vec![c.d_model],
        host(net.norm.gamma.val()),
    ));
    if let Some(h) = &net.lm_head {
        named.push(lin("lm_head.weight".into(), h));
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
