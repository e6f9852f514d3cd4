use lem::energy_bench;

#[energy_bench]
fn answer() -> u32 {
    42
}

fn main() {
    // the attribute leaves the function callable from ordinary code
    assert_eq!(answer(), 42);
}
