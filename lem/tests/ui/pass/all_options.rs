use lem::energy_bench;

#[energy_bench(
    cv = 0.1,
    window = 4,
    min_warmup = 4,
    max_warmup = 20,
    warmup = "converge",
    samples = 3,
    min_sample_s = 0,
    max_uncertainty = 0.01,
    cycles = 1,
    cycle_gap_s = 0.5,
    units = "items",
    device = "none",
    name = "renamed",
    seed = 7,
    random_start = true
)]
fn everything() -> u32 {
    7
}

#[energy_bench(warmup = "fixed", warmup_iters = 2, ignore)]
fn ignored() {}

#[energy_bench(ignore = false, random_start = false)]
fn not_ignored() {}

lem::main!();
