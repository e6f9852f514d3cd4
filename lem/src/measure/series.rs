//! The meter's time series: every sampling round handed by the sampler to a writer thread
//! that streams it to a JSON Lines file (`results::timeseries`), and, when a result is
//! saved, its window converted into the `<stem>_timeseries.json` file beside it. Nothing is
//! kept in memory per sample, and nothing here runs on the sampler's thread or inside a
//! window's opening or closing.

use std::path::{Path, PathBuf};

use super::meter::Meter;
use crate::device::{Reading, Sample};
use crate::error::{Error, Result};
use crate::results::report::EnergyReport;
use crate::results::timeseries::read::{convert_window, stream_window, WindowSeries};
use crate::results::timeseries::writer::StreamWriter;
use crate::results::timeseries::{StreamDevice, StreamHeader};

fn lock(
    m: &std::sync::Mutex<Option<(StreamWriter, bool)>>,
) -> std::sync::MutexGuard<'_, Option<(StreamWriter, bool)>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a meter built with `keep_timeseries(true)` streams its samples: the temporary
/// directory, one file per process and meter.
pub(super) fn temporary_path(meter_id: u64) -> PathBuf {
    std::env::temp_dir().join(format!(
        "lem-timeseries-{}-{meter_id}.jsonl",
        std::process::id()
    ))
}

impl Meter {
    /// Stream every sampling round from now on to `path` (JSON Lines, flushed at least once
    /// a second; see `lem::timeseries`), labelled with `experiment_id`. A recording already
    /// under way is ended first (its file keeps its samples and gets its end mark; the
    /// meter's own temporary file is removed).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when it cannot be created (or the earlier recording
    /// failed).
    pub fn record_timeseries(&self, path: &Path, experiment_id: &str) -> Result<()> {
        self.start_recording(path, experiment_id, false)
    }

    pub(super) fn start_recording(
        &self,
        path: &Path,
        experiment_id: &str,
        temporary: bool,
    ) -> Result<()> {
        self.stop_timeseries()?;
        let devices = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let info = d.info();
                StreamDevice {
                    index: info.index,
                    uuid: info.uuid.clone(),
                    name: info.name.clone(),
                    baseline_power_w: self.baselines.get(i).and_then(|b| b.power_w),
                }
            })
            .collect();
        let header = StreamHeader::new(
            experiment_id,
            self.interval.as_secs_f64() * 1000.0,
            self.is_simulated(),
            (self.elapsed_s(), self.origin_unix_s),
            devices,
        );
        let writer = StreamWriter::create(path, &header, self.origin_s)?;
        self.sampler.shared().set_stream(Some(writer.sender()));
        *lock(&self.series) = Some((writer, temporary));
        Ok(())
    }

    /// End the time series' recording: the writer writes what it holds and the end mark.
    /// Returns the stream's file (`None` when nothing was recorded, or when it was the
    /// meter's own temporary file, now removed).
    ///
    /// # Errors
    /// [`Error::Device`] naming the file when writing it failed.
    pub fn stop_timeseries(&self) -> Result<Option<PathBuf>> {
        self.sampler.shared().set_stream(None);
        let Some((writer, temporary)) = lock(&self.series).take() else {
            return Ok(None);
        };
        let path = writer.path().to_path_buf();
        let done = writer.finish();
        if temporary {
            let _ = std::fs::remove_file(&path);
            return done.map(|_| None);
        }
        done.map(|_| Some(path))
    }

    /// The file the time series is being streamed to, if any.
    pub fn timeseries_stream(&self) -> Option<PathBuf> {
        lock(&self.series)
            .as_ref()
            .map(|(w, _)| w.path().to_path_buf())
    }

    /// Wait until every round taken so far is in the stream; its path.
    fn synced_stream(&self) -> Result<PathBuf> {
        Ok(self.synced_stream_dropped()?.0)
    }

    /// [`synced_stream`](Self::synced_stream), with the rounds the writer dropped so far.
    fn synced_stream_dropped(&self) -> Result<(PathBuf, u64)> {
        let g = lock(&self.series);
        let (writer, _) = g.as_ref().ok_or_else(|| {
            Error::config(
                "timeseries",
                "no time series is being recorded (build the meter with keep_timeseries(true), or call record_timeseries)",
            )
        })?;
        writer.sync()?;
        Ok((writer.path().to_path_buf(), writer.dropped_rounds()))
    }

    /// The samples inside a finished scope's window, with times relative to the window's
    /// start, read back from the time-series stream (needs
    /// [`keep_timeseries`](crate::measure::builder::MeterBuilder::keep_timeseries) or
    /// [`record_timeseries`](Self::record_timeseries) before the window opened; empty
    /// otherwise).
    pub fn timeseries(&self, report: &EnergyReport) -> Vec<Sample> {
        let Ok(path) = self.synced_stream() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let range = (report.start_s, report.start_s + report.duration_s);
        let read = stream_window(&path, range, |p| {
            out.push(Sample {
                t_s: p.t_s,
                device: p.device,
                reading: Reading {
                    power_w: p.power_w,
                    memory_used_mb: p.memory_used_mb,
                    temperature_c: p.temperature_c,
                    utilisation_pct: p.utilisation_pct,
                    throttle: Some(p.throttle_reasons),
                    ..Reading::default()
                },
            });
        });
        if read.is_err() {
            return Vec::new();
        }
        out
    }

    /// Write `result` atomically to `path`, with its time series beside it
    /// (`<stem>_timeseries.json`, converted from the stream one sample at a time) when
    /// `timeseries`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file or directory that could not be written;
    /// [`Error::InvalidConfig`] when `timeseries` but none is being recorded.
    pub fn save(
        &self,
        result: &mut crate::results::output::ResultFile,
        path: &Path,
        timeseries: bool,
    ) -> Result<()> {
        if !timeseries {
            return crate::results::output::write_result(path, result, None);
        }
        let (stream, dropped) = self.synced_stream_dropped()?;
        if dropped > 0 {
            result.report.warnings.push(format!(
                "time series: {dropped} sampling round(s) were not written because the disk writer fell behind: the series has gaps (the energy is unaffected)"
            ));
        }
        let report = &result.report;
        let devices = self
            .devices
            .iter()
            .map(|d| {
                let i = d.info();
                crate::results::output::TimeseriesDevice {
                    index: i.index,
                    uuid: i.uuid.clone(),
                    name: i.name.clone(),
                    baseline_power_w: report
                        .devices
                        .iter()
                        .find(|r| r.index == i.index)
                        .and_then(|r| r.energy.baseline_power_w),
                }
            })
            .collect();
        let experiment_id = result.experiment_id.clone();
        let w = WindowSeries {
            experiment_id: &experiment_id,
            interval_ms: report.sampling.interval_ms,
            simulated: report.simulated,
            devices,
            from_s: report.start_s,
            to_s: report.start_s + report.duration_s,
        };
        crate::results::output::write_result_with(path, result, |tp| {
            convert_window(&stream, tp, &w).map(|_| ())
        })
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let _ = self.stop_timeseries();
    }
}
