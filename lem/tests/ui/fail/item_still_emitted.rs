use lem::energy_bench;

// The function is still emitted on error, so this call resolves and only the option is
// reported.
#[energy_bench(bogus)]
fn f() -> u32 {
    1
}

fn main() {
    let _ = f();
}
