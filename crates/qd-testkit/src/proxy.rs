//! A loopback TCP proxy that can go silent: the connections it carries stop passing bytes
//! in both directions while their sockets stay open — what a NAT or firewall that drops a
//! connection's state looks like to both ends. Connections opened after a
//! [`StallProxy::stall_existing`] pass bytes normally. It can also leave out the
//! server's lines that contain a given text ([`StallProxy::drop_server_lines`]): a server
//! whose answer comes back short; rewrite them ([`StallProxy::replace_in_server_lines`]):
//! a server that answers otherwise; and pass the server's bytes at a set rate
//! ([`StallProxy::throttle_server`]): a slow link.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The open connections: each one's silence flag and its two sockets.
type Connections = Arc<Mutex<Vec<(Arc<AtomicBool>, TcpStream, TcpStream)>>>;

/// A running proxy to `127.0.0.1:<target>`.
#[derive(Debug)]
pub struct StallProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    /// One flag per connection: set = silent.
    conns: Connections,
    accepted: Arc<AtomicU64>,
    /// Server lines holding any of these texts are left out, or have it replaced.
    dropped: Dropped,
    /// Bytes per second the server's side passes at; 0: as fast as they come.
    rate: Arc<AtomicU64>,
}

/// Texts whose lines the server-to-client direction leaves out (`None`), or rewrites with
/// the text replaced (`Some`).
type Dropped = Arc<Mutex<Vec<(Vec<u8>, Option<Vec<u8>>)>>>;

impl StallProxy {
    /// Starts forwarding a free loopback port to `127.0.0.1:target`.
    pub fn start(target: u16) -> std::io::Result<StallProxy> {
        StallProxy::start_on(0, target)
    }

    /// Starts forwarding `127.0.0.1:port` to `127.0.0.1:target`: a server that appears
    /// at an address a client was already told to use.
    pub fn start_on(port: u16, target: u16) -> std::io::Result<StallProxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Connections = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let dropped: Dropped = Arc::default();
        let rate = Arc::new(AtomicU64::new(0));
        {
            let stop = stop.clone();
            let conns = conns.clone();
            let accepted = accepted.clone();
            let dropped = dropped.clone();
            let rate = rate.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let _ = client.set_nonblocking(false);
                            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                                let _ = client.shutdown(Shutdown::Both);
                                continue;
                            };
                            accepted.fetch_add(1, Ordering::Relaxed);
                            let silent = Arc::new(AtomicBool::new(false));
                            if let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
                                client.try_clone(),
                                server.try_clone(),
                                client.try_clone(),
                                server.try_clone(),
                            ) {
                                pump(client, s2, silent.clone(), None, None);
                                pump(
                                    server,
                                    c2,
                                    silent.clone(),
                                    Some(dropped.clone()),
                                    Some(rate.clone()),
                                );
                                if let Ok(mut list) = conns.lock() {
                                    list.push((silent, c3, s3));
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Ok(StallProxy {
            port,
            stop,
            conns,
            accepted,
            dropped,
            rate,
        })
    }

    /// From now on, the server's bytes reach the client at about `bytes_per_sec` (0: no
    /// limit), on every connection.
    pub fn throttle_server(&self, bytes_per_sec: u64) {
        self.rate.store(bytes_per_sec, Ordering::Relaxed);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// From now on, every line the server sends that contains `text` is left out (the
    /// lines are those ending in LF; bytes wait until their line is complete).
    pub fn drop_server_lines(&self, text: &str) {
        if let Ok(mut list) = self.dropped.lock() {
            list.push((text.as_bytes().to_vec(), None));
        }
    }

    /// From now on, in every line the server sends, `text` is replaced by `with` (a
    /// tagged `OK` turned into `NO`, say).
    pub fn replace_in_server_lines(&self, text: &str, with: &str) {
        if let Ok(mut list) = self.dropped.lock() {
            list.push((text.as_bytes().to_vec(), Some(with.as_bytes().to_vec())));
        }
    }

    /// Every connection open now stops passing bytes (its sockets stay open).
    pub fn stall_existing(&self) {
        if let Ok(list) = self.conns.lock() {
            for (silent, _, _) in list.iter() {
                silent.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Copies `from` to `to` until either side closes; once `silent` is set, reads are
/// swallowed instead of forwarded. With `dropped` texts set, whole lines pass, except
/// those that hold one of them. With a `rate`, bytes are written in small pieces, each
/// followed by the time it takes at that rate.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    silent: Arc<AtomicBool>,
    dropped: Option<Dropped>,
    rate: Option<Arc<AtomicU64>>,
) {
    thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if silent.load(Ordering::Relaxed) {
                        continue;
                    }
                    let texts: Vec<(Vec<u8>, Option<Vec<u8>>)> = dropped
                        .as_ref()
                        .and_then(|d| {
                            d.lock()
                                .ok()
                                .map(|l| l.iter().filter(|(t, _)| !t.is_empty()).cloned().collect())
                        })
                        .unwrap_or_default();
                    let out: Vec<u8> = if texts.is_empty() && pending.is_empty() {
                        buf[..n].to_vec()
                    } else {
                        pending.extend_from_slice(&buf[..n]);
                        let complete = pending
                            .iter()
                            .rposition(|&b| b == b'\n')
                            .map_or(0, |p| p + 1);
                        let rest = pending.split_off(complete);
                        let lines = std::mem::replace(&mut pending, rest);
                        lines
                            .split_inclusive(|&b| b == b'\n')
                            .filter_map(|line| rewrite(line, &texts))
                            .flatten()
                            .collect()
                    };
                    let rate = rate.as_ref().map_or(0, |r| r.load(Ordering::Relaxed));
                    let written = if rate == 0 {
                        to.write_all(&out)
                    } else {
                        out.chunks(1024).try_for_each(|piece| {
                            to.write_all(piece)?;
                            thread::sleep(Duration::from_secs_f64(
                                piece.len() as f64 / rate as f64,
                            ));
                            Ok(())
                        })
                    };
                    if written.is_err() {
                        break;
                    }
                }
            }
        }
        if !silent.load(Ordering::Relaxed) {
            let _ = to.write_all(&pending);
            let _ = to.shutdown(Shutdown::Write);
        }
    });
}

/// One server line as passed on: `None` when a text it holds drops it, else the line with
/// each replaced text's first occurrence rewritten.
fn rewrite(line: &[u8], texts: &[(Vec<u8>, Option<Vec<u8>>)]) -> Option<Vec<u8>> {
    let mut line = line.to_vec();
    for (text, with) in texts {
        let Some(at) = line.windows(text.len()).position(|w| w == text.as_slice()) else {
            continue;
        };
        let with = with.as_ref()?;
        line.splice(at..at + text.len(), with.iter().copied());
    }
    Some(line)
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(list) = self.conns.lock() {
            for (_, c, s) in list.iter() {
                let _ = c.shutdown(Shutdown::Both);
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}
