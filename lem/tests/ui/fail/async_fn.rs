use lem::energy_bench;

#[energy_bench]
async fn f() {}

fn main() {}
