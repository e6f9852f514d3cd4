use lem::energy_bench;

#[energy_bench(args = [1])]
fn f(a: usize, b: usize) -> usize {
    a + b
}

fn main() {}
