//! lem-burn's loader against transformers' `LlamaForCausalLM` on tiny random checkpoints
//! (`tests/fixtures/`, made by `scripts/make_llama_fixtures.py`): the last position's
//! logits of a prefill agree to 1e-4 and 16 greedy tokens (through the KV cache) are
//! identical, for GQA and MHA, tied embeddings, RoPE θ 5e5 as transformers 4 and 5 write it,
//! Llama-3 RoPE scaling, attention and MLP biases and an explicit head_dim. What the loader
//! does not implement is refused by name, never computed differently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use burn::prelude::*;
use lem_burn::{Cpu, Model};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(dir: &Path) -> lem_burn::Result<Model<Cpu>> {
    lem_burn::weights::load::<Cpu>(dir, 64, &Default::default())
}

fn ids(v: &[i64]) -> Tensor<Cpu, 2, Int> {
    Tensor::from_data(
        TensorData::new(v.to_vec(), [1, v.len()]),
        &Default::default(),
    )
}

fn logits(t: Tensor<Cpu, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn argmax(v: &[f32]) -> i64 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as i64
}

fn check(name: &str) {
    let dir = fixtures().join(name);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let prompt: Vec<i64> = expected["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    let model = load(&dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut cache = model.new_cache(1, 64);
    let got = logits(model.forward(ids(&prompt), &mut cache, 0));
    let want: Vec<f32> = expected["last_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-4, "{name}: max |Δlogit| {worst}");
    // 16 greedy tokens, one position at a time through the cache
    let mut tokens = Vec::new();
    let mut next = argmax(&got);
    for pos in prompt.len()..prompt.len() + 16 {
        tokens.push(next);
        next = argmax(&logits(model.forward(ids(&[next]), &mut cache, pos)));
    }
    let want_tokens: Vec<i64> = expected["greedy_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect();
    assert_eq!(tokens, want_tokens, "{name}: greedy tokens");
}

#[test]
fn gqa_untied() {
    check("gqa");
}

#[test]
fn mha_with_tied_embeddings() {
    check("mha_tied");
}

#[test]
fn rope_theta_as_transformers_5_writes_it() {
    check("theta_5e5_v5");
}

#[test]
fn rope_theta_as_transformers_4_writes_it() {
    check("theta_5e5_v4");
}

#[test]
fn llama3_rope_scaling() {
    check("llama3_scaling");
}

#[test]
fn attention_and_mlp_biases() {
    check("biases");
}

#[test]
fn an_explicit_head_dim() {
    check("head_dim");
}

/// A copy of fixture `name` whose config.json is edited by `edit`.
fn edited(name: &str, edit: impl Fn(&mut serde_json::Value)) -> tempfile::TempDir {
    let src = fixtures().join(name);
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let p = dir.path().join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
    dir
}

fn refused(dir: &Path) -> String {
    match load(dir) {
        Ok(_) => panic!("{} was loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn what_is_not_implemented_is_refused_by_name() {
    // another RoPE type
    let d = edited("gqa", |c| {
        c["rope_parameters"] =
            serde_json::json!({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0});
    });
    let e = refused(d.path());
    assert!(e.contains("rope_type") && e.contains("yarn"), "{e}");
    // the same in transformers 4's spelling
    let d = edited("theta_5e5_v4", |c| {
        c["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
    });
    let e = refused(d.path());
    assert!(
        e.contains("rope_scaling.rope_type") && e.contains("linear"),
        "{e}"
    );
    // llama3 scaling with a key missing
    let d = edited("llama3_scaling", |c| {
        c["rope_parameters"]
            .as_object_mut()
            .unwrap()
            .remove("low_freq_factor");
    });
    let e = refused(d.path());
    assert!(e.contains("rope_parameters.low_freq_factor"), "{e}");
    // biases in the weights that the config does not declare: unused tensors, named
    let d = edited("biases", |c| {
        c["attention_bias"] = serde_json::json!(false);
        c["mlp_bias"] = serde_json::json!(false);
    });
    let e = refused(d.path());
    assert!(e.contains("bias") && e.contains("not used"), "{e}");
    // declared but absent
    let d = edited("gqa", |c| c["attention_bias"] = serde_json::json!(true));
    let e = refused(d.path());
    assert!(e.contains("q_proj.bias") && e.contains("missing"), "{e}");
    // config.json's own key names in errors
    let d = edited("gqa", |c| c["num_key_value_heads"] = serde_json::json!(3));
    let e = refused(d.path());
    assert!(e.contains("num_key_value_heads"), "{e}");
    let d = edited("gqa", |c| c["head_dim"] = serde_json::json!(7));
    let e = refused(d.path());
    assert!(e.contains("head_dim"), "{e}");
    let d = edited("gqa", |c| c["hidden_act"] = serde_json::json!("gelu"));
    let e = refused(d.path());
    assert!(e.contains("hidden_act"), "{e}");
    let e = refused(
        edited("gqa", |c| {
            c["rope_parameters"]["rope_type"] = serde_json::json!("dynamic")
        })
        .path(),
    );
    assert!(!e.contains('\n') && e.contains("dynamic"), "one line: {e}");
}

#[test]
fn a_saved_model_with_every_option_loads_back_the_same() {
    let mut c = lem_burn::ModelConfig::preset("tiny").unwrap();
    c.head_dim = Some(32);
    c.attention_bias = true;
    c.mlp_bias = true;
    c.rope_theta = 500_000.0;
    c.rope_scaling = lem_burn::config::RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 16.0,
    };
    let device = Default::default();
    let model = Model::<Cpu>::random(&c, 3, 64, &device);
    let dir = tempfile::tempdir().unwrap();
    lem_burn::weights::save(&model, dir.path()).unwrap();
    let back = load(dir.path()).unwrap();
    let prompt = [1i64, 7, 300, 42, 9];
    let a = logits(model.forward(ids(&prompt), &mut model.new_cache(1, 64), 0));
    let b = logits(back.forward(ids(&prompt), &mut back.new_cache(1, 64), 0));
    assert_eq!(a, b);
    assert_eq!(back.config.rope_scaling, c.rope_scaling);
    assert_eq!(back.num_params(), c.param_count());
}
