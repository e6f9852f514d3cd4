//! The continuous-batching server: a sequence's tokens do not depend on what else is in
//! the batch, and each request is a shared window whose shares add up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use lem_burn::generate::{generate, GenerateOptions};
use lem_burn::sampling::{Rng, Sampling};
use lem_burn::serve::{serve, Arrivals, Request};
use lem_burn::tokenizer::ByteTokenizer;
use lem_burn::{Cpu, Model, ModelConfig};

fn tiny() -> Model<Cpu> {
    Model::random(
        &ModelConfig::preset("tiny").unwrap(),
        11,
        256,
        &Default::default(),
    )
}

fn greedy(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        sampling: Sampling::Greedy,
        stop_tokens: vec![],
    }
}

fn req(text: &str, len: usize, arrival_s: f64) -> Request {
    Request {
        prompt: ByteTokenizer.prompt_of_len(text, len),
        arrival_s,
        seed: 1,
    }
}

#[test]
fn a_sequence_decodes_the_same_alone_and_in_a_changing_batch() {
    let model = tiny();
    let opts = greedy(12);
    let target = req("the quick brown fox", 10, 0.0);
    let alone = serve(&model, std::slice::from_ref(&target), &opts, None).unwrap();
    // the same sequence through the batched path, alone
    let batched = generate(
        &model,
        std::slice::from_ref(&target.prompt),
        &opts,
        &mut Rng::new(1),
    )
    .unwrap();
    assert_eq!(alone[0].tokens, batched.tokens[0]);
    assert_eq!(alone[0].tokens.len(), 12);
    // others with other prompts and lengths are running when it arrives, and join and
    // leave while it decodes
    let crowd = vec![
        req("energy is the currency", 14, 0.0),
        req("of computation", 6, 0.0),
        Request {
            arrival_s: 0.005,
            ..target.clone()
        },
        req("a third prompt", 20, 0.01),
        req("and a late one", 8, 0.05),
    ];
    let served = serve(&model, &crowd, &opts, None).unwrap();
    assert_eq!(served.len(), 5);
    assert_eq!(served[2].tokens, alone[0].tokens);
    // the others decode as they would alone too
    for (r, s) in crowd.iter().zip(&served) {
        let solo = serve(&model, std::slice::from_ref(r), &opts, None).unwrap();
        assert_eq!(s.tokens, solo[0].tokens);
        assert_eq!(s.itl_s.len(), 11);
        assert!(s.ttft_s >= 0.0);
    }
}

#[test]
fn arrivals_parse_and_are_seeded() {
    let a = Arrivals::parse("poisson:50").unwrap();
    assert_eq!(a, Arrivals::Poisson { rate: 50.0 });
    let t = a.times(2000, 3);
    assert_eq!(t, a.times(2000, 3));
    assert_ne!(t, a.times(2000, 4));
    assert!(t.windows(2).all(|w| w[0] <= w[1]));
    // mean gap 1/rate, within a few percent over 2,000 arrivals
    let mean = t[1999] / 2000.0;
    assert!((mean - 0.02).abs() < 0.002, "{mean}");
    for bad in [
        "foo",
        "poisson:",
        "poisson:0",
        "poisson:-1",
        "poisson:x",
        "poisson:inf",
    ] {
        let e = Arrivals::parse(bad).unwrap_err().to_string();
        assert!(e.contains("--arrivals"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn served_requests_are_shared_windows_that_add_up() {
    let model = tiny();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("gpu.json");
    std::fs::write(
        &scenario,
        r#"{"name": "Sim", "idle_w": 30, "segments": [{"start_s": 0.0, "end_s": 1e6, "power_w": 72}]}"#,
    )
    .unwrap();
    let meter = lem::Meter::builder()
        .device(format!("sim:{}", scenario.display()).parse().unwrap())
        .baseline_mode(lem::BaselineMode::Off)
        .build()
        .unwrap();
    let group = meter.group("requests");
    let reqs: Vec<Request> = (0..4)
        .map(|i| req("shared", 6 + i, 0.003 * i as f64))
        .collect();
    let served = serve(&model, &reqs, &greedy(5), Some(&group)).unwrap();
    let g = &meter.group_summaries()[0];
    assert_eq!(g.name, "requests");
    assert_eq!(g.windows, 4);
    let shares: f64 = served
        .iter()
        .map(|s| {
            let e = s.report.as_ref().unwrap().energy.shared.as_ref().unwrap();
            assert_eq!(e.shared_weight, (s.prompt_tokens + 4) as f64);
            e.shared_j.unwrap()
        })
        .sum();
    let union = g.union_j.unwrap();
    assert!(
        (shares - union).abs() <= 1e-9 * union,
        "{shares} vs {union}"
    );
    assert_eq!(
        lem_burn::serve_report::shares_add_up(Some(union), Some(shares)),
        Some(true)
    );
}

#[test]
fn a_batched_decode_step_of_rows_at_their_own_positions_equals_each_row_alone() {
    let model = tiny();
    let device = Default::default();
    let prompts: Vec<Vec<u32>> = [("alpha", 5), ("beta gamma", 11), ("delta", 8)]
        .iter()
        .map(|(t, n)| ByteTokenizer.prompt_of_len(t, *n))
        .collect();
    let ids = |v: &[u32]| {
        let v: Vec<i64> = v.iter().map(|&x| i64::from(x)).collect();
        let n = v.len();
        burn::tensor::Tensor::<Cpu, 2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(v, [1, n]),
            &device,
        )
    };
    let prefill = || {
        prompts
            .iter()
            .map(|p| {
                let mut c = model.new_cache(1, 32);
                model.forward(ids(p), &mut c, 0);
                c
            })
            .collect::<Vec<_>>()
    };
    let (mut batched, mut alone) = (prefill(), prefill());
    let positions: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let next = [7u32, 42, 99];
    let rows = {
        let v: Vec<i64> = next.iter().map(|&x| i64::from(x)).collect();
        burn::tensor::Tensor::<Cpu, 2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(v, [3, 1]),
            &device,
        )
    };
    let mut refs: Vec<_> = batched.iter_mut().collect();
    let logits = model
        .forward_rows(rows, &mut refs, &positions)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let vocab = logits.len() / 3;
    for (i, cache) in alone.iter_mut().enumerate() {
        let solo = model
            .forward(ids(&next[i..=i]), cache, positions[i])
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let row = &logits[i * vocab..(i + 1) * vocab];
        let worst = row
            .iter()
            .zip(&solo)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "row {i} differs by {worst}");
    }
}
