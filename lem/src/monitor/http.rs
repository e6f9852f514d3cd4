//! The `/metrics` endpoint: a few tiny_http worker threads encode the registry on every
//! scrape. A scrape reads the metrics' atomics only: no driver call, no lock the sampler
//! takes.
//!
//! prometheus-client encodes OpenMetrics, served as such when the scraper's `Accept` asks
//! for `application/openmetrics-text`; otherwise the same metrics go out as the text
//! exposition 0.0.4 (Prometheus's classic format): a counter's `# HELP`/`# TYPE` lines name
//! its `_total` sample, and the `# UNIT` and `# EOF` lines are left out.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::registry::Registry;
use tiny_http::{Header, Request, Response, Server};

use crate::error::{Error, Result};

/// Worker threads answering scrapes.
const WORKERS: usize = 4;

/// The content type of each format.
pub const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics 1.0.0.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A running `/metrics` endpoint; dropping it (or [`stop`](Self::stop)) stops it.
#[must_use = "the endpoint stops when its handle is dropped"]
pub struct MetricsServer {
    addr: SocketAddr,
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    /// Anything else the endpoint's owner must stop with it (the exporter's own thread).
    pub(crate) on_stop: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Serve `registry` on `addr` (`host:port`; port 0 picks a free one).
    ///
    /// # Errors
    /// [`Error::Listen`] naming `addr` when it cannot be listened on (in use, not this
    /// host's address, not an address).
    pub fn start(addr: &str, registry: Arc<Registry>) -> Result<Self> {
        let listen = |reason: String| Error::Listen {
            addr: addr.to_string(),
            reason,
        };
        let parsed: SocketAddr = addr
            .parse()
            .map_err(|_| listen("not an address (host:port, e.g. 127.0.0.1:9477)".into()))?;
        let server = Server::http(parsed).map_err(|e| listen(e.to_string()))?;
        let bound = server.server_addr().to_ip().unwrap_or(parsed);
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::with_capacity(WORKERS);
        for i in 0..WORKERS {
            let (server, stop, registry) = (
                Arc::clone(&server),
                Arc::clone(&stop),
                Arc::clone(&registry),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("lem-metrics-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        if let Ok(rq) = server.recv() {
                            answer(rq, &registry);
                        }
                    }
                });
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => return Err(listen(format!("cannot start a thread: {e}"))),
            }
        }
        Ok(Self {
            addr: bound,
            server,
            stop,
            workers,
            on_stop: None,
        })
    }

    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and wait for the workers.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(f) = self.on_stop.take() {
            f();
        }
        self.stop.store(true, Ordering::Release);
        for _ in &self.workers {
            self.server.unblock();
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

/// Answer one request: `GET /metrics` (or `HEAD`), 404 for any other path, 405 for another
/// method.
fn answer(rq: Request, registry: &Registry) {
    let path = rq.url().split('?').next().unwrap_or("");
    let method = rq.method().as_str().to_ascii_uppercase();
    let reply = if path != "/metrics" {
        plain(404, "not found: lem serves /metrics\n")
    } else if method != "GET" && method != "HEAD" {
        plain(405, "method not allowed: GET /metrics\n")
    } else {
        let open = rq.headers().iter().any(|h| {
            h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
        });
        match encode(registry, open) {
            Ok(body) => {
                let kind = if open { OPENMETRICS } else { TEXT_004 };
                with_type(Response::from_string(body), kind)
            }
            Err(_) => plain(500, "the metrics could not be encoded\n"),
        }
    };
    let _ = rq.respond(reply);
}

fn plain(code: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    with_type(
        Response::from_string(body).with_status_code(code),
        "text/plain; charset=utf-8",
    )
}

fn with_type(
    r: Response<std::io::Cursor<Vec<u8>>>,
    kind: &str,
) -> Response<std::io::Cursor<Vec<u8>>> {
    match Header::from_bytes(&b"Content-Type"[..], kind.as_bytes()) {
        Ok(h) => r.with_header(h),
        Err(()) => r,
    }
}

/// The registry as OpenMetrics (`open`) or as the text exposition 0.0.4.
pub fn encode(registry: &Registry, open: bool) -> std::result::Result<String, std::fmt::Error> {
    let mut s = String::with_capacity(4096);
    prometheus_client::encoding::text::encode(&mut s, registry)?;
    Ok(if open { s } else { to_text_004(&s) })
}

/// OpenMetrics text to the text exposition 0.0.4: counters' metadata names their `_total`
/// samples; `# UNIT` and `# EOF` go.
pub fn to_text_004(open: &str) -> String {
    let counters: HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{p}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_name_their_total_sample_and_openmetrics_lines_go() {
        let open = "# HELP a_joules Energy.\n# TYPE a_joules counter\n# UNIT a_joules joules\na_joules_total{gpu=\"0\"} 1.5\n# HELP b_watts Power.\n# TYPE b_watts gauge\nb_watts 3.0\n# EOF\n";
        assert_eq!(
            to_text_004(open),
            "# HELP a_joules_total Energy.\n# TYPE a_joules_total counter\na_joules_total{gpu=\"0\"} 1.5\n# HELP b_watts Power.\n# TYPE b_watts gauge\nb_watts 3.0\n"
        );
    }
}
