use lem::energy_bench;

#[energy_bench(args = [1, 2])]
fn f() {}

fn main() {}
