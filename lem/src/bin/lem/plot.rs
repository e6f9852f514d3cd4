//! `lem plot`: see `lem::plot`.

use std::path::Path;

use crate::ui::Ui;
use crate::Failure;

pub fn plot(ui: &Ui, input: &Path, output: &Path) -> Result<(), Failure> {
    lem::plot::plot_file(input, output)?;
    ui.say(format!("wrote {}", output.display()));
    Ok(())
}
