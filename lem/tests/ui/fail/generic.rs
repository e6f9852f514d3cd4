use lem::energy_bench;

#[energy_bench]
fn g<T: Default>() -> T {
    T::default()
}

fn main() {}
