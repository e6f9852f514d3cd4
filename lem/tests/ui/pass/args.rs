use lem::energy_bench;

#[energy_bench(args = [1, 8, 32], cv = 0.03, samples = 20)]
fn decode(batch: usize) -> usize {
    batch * 2
}

#[energy_bench(args = ["a", "bb"])]
fn strings(s: &'static str) -> usize {
    s.len()
}

lem::main!();
