//! The stream's writer: a thread of its own (`lem-timeseries`) owns the file. Producers hand
//! it whole sampling rounds through a bounded channel and never wait: a round that finds
//! the channel full (the disk fell behind by thousands of rounds) is counted as dropped.
//! The writer formats, buffers and hands its buffer to the operating system at least every
//! [`FLUSH_PERIOD_S`], so a killed process leaves every sample up to the last flush.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{write_line, EndLine, StreamEnd, StreamHeader, FLUSH_PERIOD_S};
use crate::device::Sample;
use crate::error::{Error, Result};

/// Rounds the channel holds before a producer's round is dropped (about 80 s at 100 ms,
/// 8 s at 1 ms).
const CHANNEL_ROUNDS: usize = 8192;

enum Msg {
    Round(Vec<Sample>),
    /// Flush everything received so far, then answer.
    Sync(mpsc::Sender<std::result::Result<(), String>>),
}

/// The producer's side: hands rounds to the writer without waiting.
#[derive(Debug, Clone)]
pub struct StreamSender {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl StreamSender {
    /// Hand one sampling round to the writer; never waits, never touches the file. A round
    /// that does not fit (the writer is far behind, or has failed) is counted as dropped.
    pub fn send_round(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        match self.tx.try_send(Msg::Round(samples)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hand one round to the writer, waiting while the channel is full: for producers that
    /// may wait (a file converter, a generator), never for the sampler.
    ///
    /// # Errors
    /// [`Error::Io`]-like [`Error::Device`] when the writer has stopped.
    pub fn send_round_waiting(&self, samples: Vec<Sample>) -> Result<()> {
        self.tx.send(Msg::Round(samples)).map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::Device {
        device: "time series".into(),
        reason: "the time-series writer has stopped".into(),
    }
}

/// A stream being written: the file's path and its writer thread.
#[derive(Debug)]
pub struct StreamWriter {
    path: PathBuf,
    sender: StreamSender,
    handle: Option<JoinHandle<std::result::Result<u64, String>>>,
}

impl StreamWriter {
    /// Create `path` (truncating it) and start the thread that writes `header` and then
    /// every round sent, with times relative to the meter's clock at `origin_s`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file when it cannot be created; [`Error::Device`] when the
    /// thread cannot start.
    pub fn create(path: &Path, header: &StreamHeader, origin_s: f64) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let head = serde_json::to_string(header)?;
        let (tx, rx) = mpsc::sync_channel(CHANNEL_ROUNDS);
        let dropped = Arc::new(AtomicU64::new(0));
        let d = dropped.clone();
        let name = path.display().to_string();
        let handle = std::thread::Builder::new()
            .name("lem-timeseries".into())
            .spawn(move || {
                write_stream(file, &head, &rx, origin_s, &d).map_err(|e| format!("{name}: {e}"))
            })
            .map_err(|e| Error::Device {
                device: "time series".into(),
                reason: format!("cannot start the time-series writer: {e}"),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            sender: StreamSender { tx, dropped },
            handle: Some(handle),
        })
    }

    /// The stream's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sampling rounds dropped so far because the writer fell behind.
    pub fn dropped_rounds(&self) -> u64 {
        self.sender.dropped.load(Ordering::Relaxed)
    }

    /// A producer's handle.
    pub fn sender(&self) -> StreamSender {
        self.sender.clone()
    }

    /// Wait until every round sent so far is in the file.
    ///
    /// # Errors
    /// [`Error::Device`] naming the file when the writer failed.
    pub fn sync(&self) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        if self.sender.tx.send(Msg::Sync(tx)).is_err() {
            return Err(self.failure());
        }
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Device {
                device: "time series".into(),
                reason: e,
            }),
            Err(_) => Err(self.failure()),
        }
    }

    fn failure(&self) -> Error {
        Error::Device {
            device: "time series".into(),
            reason: format!(
                "{}: the time-series writer has stopped",
                self.path.display()
            ),
        }
    }

    /// End the stream: the writer writes what it still holds and the trailer (`complete`),
    /// and stops. Returns the number of samples written. Every [`StreamSender`] must be
    /// dropped first (or the writer waits for them).
    ///
    /// # Errors
    /// [`Error::Device`] naming the file when the writer failed.
    pub fn finish(mut self) -> Result<u64> {
        self.end()
    }

    fn end(&mut self) -> Result<u64> {
        let Some(handle) = self.handle.take() else {
            return Ok(0);
        };
        // the writer ends when every sender is gone: replace ours by a dead one
        let (dead, _) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.sender.tx, dead));
        match handle.join() {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(Error::Device {
                device: "time series".into(),
                reason: e,
            }),
            Err(_) => Err(self.failure()),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// The writer thread's body: header, rounds as they come, a flush at least every period,
/// and the trailer once every sender has gone.
fn write_stream(
    file: File,
    header: &str,
    rx: &Receiver<Msg>,
    origin_s: f64,
    dropped: &AtomicU64,
) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 16, file);
    writeln!(w, "{header}")?;
    w.flush()?;
    let period = Duration::from_secs_f64(FLUSH_PERIOD_S);
    let mut last_flush = Instant::now();
    let mut count: u64 = 0;
    loop {
        let wait = period.saturating_sub(last_flush.elapsed());
        match rx.recv_timeout(wait) {
            Ok(Msg::Round(samples)) => {
                for s in &samples {
                    write_line(&mut w, s, origin_s)?;
                }
                count += samples.len() as u64;
            }
            Ok(Msg::Sync(reply)) => {
                let r = w.flush().map_err(|e| e.to_string());
                let failed = r.is_err();
                let _ = reply.send(r);
                if failed {
                    return Err(std::io::Error::other("cannot flush"));
                }
                last_flush = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last_flush.elapsed() >= period {
            w.flush()?;
            last_flush = Instant::now();
        }
    }
    let end = EndLine {
        end: StreamEnd {
            complete: true,
            sample_count: count,
            dropped_rounds: dropped.load(Ordering::Relaxed),
        },
    };
    serde_json::to_writer(&mut w, &end)?;
    w.write_all(b"\n")?;
    w.flush()?;
    // best effort: everything is already with the operating system, and a pipe cannot sync
    let _ = w.get_ref().sync_all();
    Ok(count)
}
