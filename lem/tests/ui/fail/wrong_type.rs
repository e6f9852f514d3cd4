use lem::energy_bench;

#[energy_bench(samples = "ten", cv = "low", units = 3)]
fn f() {}

fn main() {}
