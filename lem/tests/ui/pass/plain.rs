use lem::energy_bench;

#[energy_bench]
fn matmul_8() -> f32 {
    (0..64).map(|i| i as f32).sum()
}

lem::main!();
