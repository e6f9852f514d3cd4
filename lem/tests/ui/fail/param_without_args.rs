use lem::energy_bench;

#[energy_bench]
fn f(batch: usize) -> usize {
    batch
}

fn main() {}
