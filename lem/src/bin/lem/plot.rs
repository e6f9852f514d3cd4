//! `lem plot`: see `lem::plot`.

use std::path::Path;

use crate::ui::Ui;
use crate::Failure;

pub fn plot(ui: &Ui, input: &Path, output: &Path) -> Result<(), Failure> {
    let info = lem::plot::plot_file(input, output)?;
    if let Some(why) = info.partial() {
        ui.warn(format!(
            "{}: {why} ({} samples plotted)",
            input.display(),
            info.sample_count
        ));
    }
    ui.say(format!("wrote {}", output.display()));
    Ok(())
}
