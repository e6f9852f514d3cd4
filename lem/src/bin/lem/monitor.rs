//! `lem monitor`: every device's energy, live, on a Prometheus `/metrics` endpoint, until
//! SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use lem::monitor::serve::Exporter;
use lem::monitor::{GpuMetrics, MetricsServer, DEFAULT_LISTEN};

use crate::signals;
use crate::ui::Ui;
use crate::Failure;

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    meter: lem::args::MeterArgs,
    /// Address to serve /metrics on, host:port (default 127.0.0.1:9477: loopback only;
    /// 0.0.0.0:9477 for every interface).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Export each process's share of the active energy
    /// (lem_process_gpu_active_energy_joules_total; an estimate from SM utilisation).
    #[arg(long)]
    processes: bool,
}

/// Serve until a signal; exit 0.
pub fn monitor(ui: &Ui, a: &MonitorArgs) -> Result<u8, Failure> {
    let builder = a.meter.builder()?;
    // the address first: a port in use is said before a baseline is measured
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = GpuMetrics::register(&mut registry);
    let server = MetricsServer::start(&a.listen, Arc::new(registry))?;
    let meter = ui.with_baseline_progress(builder).build()?;
    for n in meter.notices() {
        ui.warn(n);
    }
    // from here on SIGINT and SIGTERM end the loop (during the baseline they end lem)
    signals::install()?;
    let mut exporter = Exporter::new(&meter, metrics, a.processes);
    ui.say(format!(
        "lem monitor: serving http://{}/metrics for {} device(s){}, every {} ms; Ctrl-C stops",
        server.addr(),
        meter.devices().len(),
        if meter.is_simulated() {
            " (simulated)"
        } else {
            ""
        },
        meter.interval().as_millis()
    ));
    let interval = meter.interval();
    let mut next = Instant::now() + interval;
    while signals::received().is_none() {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        exporter.tick(&meter);
        next += interval;
        if next < Instant::now() {
            next = Instant::now() + interval;
        }
    }
    exporter.stop(&meter);
    server.stop();
    Ok(0)
}
