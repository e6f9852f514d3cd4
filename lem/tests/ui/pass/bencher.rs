use lem::energy_bench;

struct Model;
impl Model {
    fn generate(&self, n: usize) -> usize {
        n
    }
}

#[energy_bench(units = "tokens")]
fn generate(b: &mut lem::Bencher) {
    let model = Model; // setup: not measured
    b.sync_with(|| {}); // a GPU workload synchronises here
    b.iter(|| model.generate(64))
}

#[energy_bench(args = [2, 4])]
fn generate_batch(b: &mut lem::Bencher, batch: usize) {
    b.iter(|| batch * 64)
}

lem::main!();
