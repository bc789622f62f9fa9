//! A mirror that dies: a local TCP relay to the host's own Debian mirror (read from its apt
//! sources, never written down here) that stops for good after relaying a byte budget. Stopping
//! closes every open connection and the listening socket, so apt sees a connection reset in the
//! middle of a download and then "connection refused" on its retries, as when a mirror goes away.
//!
//! apt addresses the relay as `http://127.0.0.1:PORT/PATH`; the relay rewrites each request's
//! `Host:` line to the real mirror's (a CDN refuses a request for an unknown host). apt's
//! requests are GETs without bodies, so the client's stream is only header lines.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The host's Debian mirror as the planner reads it from its apt sources
/// (`mirror::host_archive_uri`), split into `(host[:port], path)` for the relay; it must be
/// plain http, which the relay forwards byte for byte.
pub fn host_mirror() -> (String, String) {
    let uri = mesos_image::mirror::host_archive_uri(std::path::Path::new("/etc/apt"))
        .expect("a Debian mirror in the host's apt sources (the mirror fault relays to it)");
    let rest = uri.strip_prefix("http://").unwrap_or_else(|| panic!("the host's mirror {uri} is not plain http"));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (host.to_owned(), format!("/{}", path.trim_end_matches('/')))
}

/// The relay. Dropping it stops it.
pub struct DyingMirror {
    pub port: u16,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

struct State {
    upstream: String,
    budget: Option<u64>,
    relayed: AtomicU64,
    stopped: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

impl DyingMirror {
    /// Relay `127.0.0.1:port` (0: any free port) to `upstream`; with `budget`, stop for good
    /// once that many bytes came back from the mirror.
    pub fn start(upstream: &str, port: u16, budget: Option<u64>) -> DyingMirror {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            budget,
            relayed: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let shared = Arc::clone(&state);
        let acceptor = std::thread::spawn(move || {
            while !shared.stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => relay(&shared, client),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            // The listener drops here: new connections are refused from now on.
        });
        DyingMirror { port, state, acceptor: Some(acceptor) }
    }

    /// Bytes relayed from the mirror so far.
    pub fn relayed(&self) -> u64 {
        self.state.relayed.load(Ordering::SeqCst)
    }

    /// Whether the budget ran out (the mirror died).
    pub fn died(&self) -> bool {
        self.state.stopped.load(Ordering::SeqCst)
    }
}

impl Drop for DyingMirror {
    fn drop(&mut self) {
        self.state.stop();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl State {
    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn relay(state: &Arc<State>, client: TcpStream) {
    client.set_nonblocking(false).unwrap();
    let address = if state.upstream.contains(':') { state.upstream.clone() } else { format!("{}:80", state.upstream) };
    let Ok(server) = TcpStream::connect(address) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut open = state.open.lock().unwrap();
        open.push(client.try_clone().unwrap());
        open.push(server.try_clone().unwrap());
    }
    let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let requests = Arc::clone(state);
    std::thread::spawn(move || {
        // Requests: rewrite each `Host:` line, pass every other line through.
        let mut pending = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            let read = match from_client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..read]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let out = if line.len() > 5 && line[..5].eq_ignore_ascii_case(b"host:") {
                    format!("Host: {}\r\n", requests.upstream).into_bytes()
                } else {
                    line
                };
                if to_server.write_all(&out).is_err() {
                    return;
                }
            }
        }
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let responses = Arc::clone(state);
    let (mut from_server, mut to_client) = (server, client);
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        loop {
            let read = match from_server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let total = responses.relayed.fetch_add(read as u64, Ordering::SeqCst) + read as u64;
            if responses.budget.is_some_and(|budget| total > budget) {
                // The mirror dies in the middle of this response.
                let _ = to_client.write_all(&buf[..read / 2]);
                responses.stop();
                break;
            }
            if to_client.write_all(&buf[..read]).is_err() {
                break;
            }
        }
        let _ = to_client.shutdown(Shutdown::Both);
    });
}
