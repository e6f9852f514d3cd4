use lem::energy_bench;

#[energy_bench(warmup = "slowly")]
fn f() {}

fn main() {}
