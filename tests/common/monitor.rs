//! `lem monitor` as a child process, and a minimal HTTP client that scrapes it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `lem monitor`; killed when dropped.
pub struct Monitor {
    pub child: Child,
    pub addr: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Monitor {
    /// Start `c` (a `lem monitor` command listening on port 0) and wait for its address.
    #[allow(clippy::zombie_processes)] // waited for by Drop
    pub fn start(mut c: Command) -> Self {
        let mut child = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut seen = Vec::new();
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("lem monitor did not start: {seen:?}"));
            if let Some(rest) = line.split("serving http://").nth(1) {
                let addr = rest.split('/').next().unwrap().to_string();
                return Self {
                    child,
                    addr,
                    stderr: rx,
                };
            }
            seen.push(line);
        }
    }

    /// GET `path` with `accept`: (status, content type, body).
    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String, String) {
        get(&self.addr, path, accept)
    }

    /// The metrics as text 0.0.4, parsed.
    pub fn scrape(&self) -> Metrics {
        let (code, _, body) = self.get("/metrics", None);
        assert_eq!(code, 200, "{body}");
        Metrics::parse(&body)
    }

    /// Send SIGTERM and wait: the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill on the child's pid, which has not been waited for yet.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().unwrap()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `path` from `addr` over HTTP/1.0: (status, content type, body).
pub fn get(addr: &str, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rq = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(a) = accept {
        rq.push_str(&format!("Accept: {a}\r\n"));
    }
    rq.push_str("\r\n");
    s.write_all(rq.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let kind = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (code, kind, body.to_string())
}

/// Samples of an exposition: `name{labels}` → value.
#[derive(Debug, Clone)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(body: &str) -> Self {
        let mut m = BTreeMap::new();
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (k, v) = line.rsplit_once(' ').unwrap();
            m.insert(k.to_string(), v.parse::<f64>().unwrap());
        }
        Self(m)
    }

    /// The one sample of `name` whose labels contain every `labels` pair.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(k, _)| {
                k.split('{').next() == Some(name)
                    && labels
                        .iter()
                        .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
        found.first().copied()
    }

    /// Every series of `name`.
    pub fn series(&self, name: &str) -> Vec<(&str, f64)> {
        self.0
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(k, v)| (k.as_str(), *v))
            .collect()
    }
}
