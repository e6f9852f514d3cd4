use lem::energy_bench;

struct S;

impl S {
    #[energy_bench]
    fn m(&self) {}
}

fn main() {}
