use lem::energy_bench;

#[energy_bench(max_uncertainty = 5)]
fn too_loose() {}

fn main() {}
