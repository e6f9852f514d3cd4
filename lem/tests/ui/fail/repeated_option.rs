use lem::energy_bench;

#[energy_bench(samples = 3, samples = 4)]
fn f() {}

fn main() {}
