use lem::energy_bench;

#[energy_bench(cvv = 0.1)]
fn f() {}

fn main() {}
