use lem::energy_bench;

#[energy_bench]
struct S;

fn main() {}
