//! A clamd client: `zINSTREAM` over TCP or a Unix socket, within a deadline.
//!
//! Protocol (clamd(8)): send `zINSTREAM\0`, then chunks each prefixed by a 4-byte
//! big-endian length, then a zero length; the reply ends with `\0` and reads
//! `stream: OK` or `stream: NAME FOUND`. A stream longer than clamd's StreamMaxLength
//! gets `INSTREAM size limit exceeded. ERROR`, and clamd closes the connection.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use qd_mail::view::{AttachmentScanner, PartInfo};

/// Chunk size for INSTREAM; clamd's StreamMaxLength bounds the total, not the chunk.
const CHUNK: usize = 64 * 1024;

/// What went wrong talking to clamd.
#[derive(Debug, thiserror::Error)]
pub enum ClamdError {
    #[error("clamd at {address} is unreachable: {source}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("clamd at {address} failed mid-scan: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("clamd at {address} answered {reply:?}")]
    Reply { address: String, reply: String },
    /// clamd refused the stream as longer than its StreamMaxLength: clamd works, this
    /// attachment was not scanned.
    #[error("clamd at {address} refused an attachment as larger than its StreamMaxLength")]
    SizeLimit { address: String },
}

#[derive(Debug, Clone)]
enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

/// A clamd client. Every scan opens its own connection, so one client serves threads.
#[derive(Debug, Clone)]
pub struct ClamdClient {
    endpoint: Endpoint,
    timeout: Duration,
}

trait Stream: Read + Write {
    /// Sets the read and write timeouts (each blocking call's, not the exchange's).
    fn set_timeouts(&self, timeout: Duration) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    fn set_timeouts(&self, timeout: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

#[cfg(unix)]
impl Stream for std::os::unix::net::UnixStream {
    fn set_timeouts(&self, timeout: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

/// A connection whose every read and write gets only the time left until one deadline.
/// Socket timeouts alone bound each call: a clamd that trickles its reply a byte at a
/// time, or takes our chunks as slowly, would hold the thread for thousands of them.
struct Deadlined {
    stream: Box<dyn Stream>,
    deadline: Instant,
}

impl Deadlined {
    fn arm(&self) -> std::io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        // A zero timeout means "none" to the socket: out of time is an error here.
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_timeouts(left)
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.stream.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm()?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.arm()?;
        self.stream.flush()
    }
}

/// clamd's answer to a stream longer than its StreamMaxLength.
fn is_size_limit(reply: &str) -> bool {
    reply.contains("size limit exceeded")
}

impl ClamdClient {
    /// `address` is `host:port` or an absolute Unix socket path.
    pub fn new(address: &str, timeout: Duration) -> ClamdClient {
        let endpoint = if address.starts_with('/') {
            Endpoint::Unix(PathBuf::from(address))
        } else {
            Endpoint::Tcp(address.trim_start_matches("tcp://").to_owned())
        };
        ClamdClient { endpoint, timeout }
    }

    fn address(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp(a) => a.clone(),
            Endpoint::Unix(p) => p.display().to_string(),
        }
    }

    /// Connects within the time left until `deadline`; every later read and write of
    /// the connection gets only what is left of it.
    fn connect(&self, deadline: Instant) -> Result<Deadlined, ClamdError> {
        let err = |source| ClamdError::Connect {
            address: self.address(),
            source,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(err(std::io::ErrorKind::TimedOut.into()));
        }
        let stream: Box<dyn Stream> = match &self.endpoint {
            Endpoint::Tcp(a) => {
                let addr = a
                    .to_socket_addrs()
                    .map_err(err)?
                    .next()
                    .ok_or_else(|| err(std::io::ErrorKind::NotFound.into()))?;
                Box::new(TcpStream::connect_timeout(&addr, left).map_err(err)?)
            }
            #[cfg(unix)]
            Endpoint::Unix(p) => {
                // With a timeout, as for TCP: connecting to a hung clamd whose listen
                // queue is full would otherwise block a parse worker for good.
                let socket =
                    socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
                        .map_err(err)?;
                let addr = socket2::SockAddr::unix(p).map_err(err)?;
                socket.connect_timeout(&addr, left).map_err(err)?;
                Box::new(std::os::unix::net::UnixStream::from(socket))
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => return Err(err(std::io::ErrorKind::Unsupported.into())),
        };
        Ok(Deadlined { stream, deadline })
    }

    /// `zPING`: is clamd there?
    pub fn ping(&self) -> Result<(), ClamdError> {
        let mut s = self.connect(Instant::now() + self.timeout)?;
        let io = |source| ClamdError::Io {
            address: self.address(),
            source,
        };
        s.write_all(b"zPING\0").map_err(io)?;
        let reply = read_reply(&mut s).map_err(io)?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(ClamdError::Reply {
                address: self.address(),
                reply,
            })
        }
    }

    /// Scans one byte stream; `Some(name)` when clamd found something. The whole
    /// exchange, connecting included, gets the client's timeout.
    pub fn scan_bytes(&self, bytes: &[u8]) -> Result<Option<String>, ClamdError> {
        let mut s = self.connect(Instant::now() + self.timeout)?;
        let io = |source| ClamdError::Io {
            address: self.address(),
            source,
        };
        if let Err(e) = send_stream(&mut s, bytes) {
            // clamd answers a stream over its StreamMaxLength and closes the
            // connection while we are still writing: its reply says why.
            return match read_reply(&mut s) {
                Ok(reply) if is_size_limit(&reply) => Err(ClamdError::SizeLimit {
                    address: self.address(),
                }),
                _ => Err(io(e)),
            };
        }
        let reply = read_reply(&mut s).map_err(io)?;
        let body = reply.strip_prefix("stream:").unwrap_or(&reply).trim();
        if body == "OK" {
            Ok(None)
        } else if let Some(name) = body.strip_suffix(" FOUND") {
            Ok(Some(name.trim().to_owned()))
        } else if is_size_limit(&reply) {
            Err(ClamdError::SizeLimit {
                address: self.address(),
            })
        } else {
            Err(ClamdError::Reply {
                address: self.address(),
                reply,
            })
        }
    }
}

fn send_stream(s: &mut Deadlined, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(b"zINSTREAM\0")?;
    for chunk in bytes.chunks(CHUNK) {
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        s.write_all(&len.to_be_bytes())?;
        s.write_all(chunk)?;
    }
    s.write_all(&0u32.to_be_bytes())?;
    s.flush()
}

fn read_reply(s: &mut Deadlined) -> std::io::Result<String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(buf.get(..n).unwrap_or_default());
        if reply.contains(&0) || reply.len() > 4096 {
            break;
        }
    }
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    Ok(
        String::from_utf8_lossy(reply.get(..end).unwrap_or_default())
            .trim()
            .to_owned(),
    )
}

/// Hands each attachment to clamd, remembering the first failure. After clamd
/// refused one attachment as too large, the others are still worth scanning.
pub(crate) struct ClamdScan<'a> {
    pub(crate) client: &'a ClamdClient,
    pub(crate) error: RefCell<Option<ClamdError>>,
    pub(crate) too_large: std::cell::Cell<usize>,
}

impl AttachmentScanner for ClamdScan<'_> {
    fn scan(&self, _part: &PartInfo, bytes: &[u8]) -> Vec<String> {
        if self.error.borrow().is_some() {
            return Vec::new();
        }
        match self.client.scan_bytes(bytes) {
            Ok(found) => found.into_iter().collect(),
            Err(ClamdError::SizeLimit { .. }) => {
                self.too_large.set(self.too_large.get() + 1);
                Vec::new()
            }
            Err(e) => {
                *self.error.borrow_mut() = Some(e);
                Vec::new()
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)] // helpers too, not only #[test] functions
    use super::*;

    /// A fake clamd on a Unix socket that serves one connection with `serve`.
    fn fake_clamd(
        serve: impl FnOnce(std::os::unix::net::UnixStream) + Send + 'static,
    ) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                serve(stream);
            }
        });
        (dir, path.to_str().unwrap().to_owned())
    }

    /// A clamd that answers one byte at a time, each well within the timeout, and never
    /// ends its reply: the scan gives up after about the timeout. (Each read had its own
    /// timeout before, so the scan took 4096 bytes' worth of trickle.)
    #[test]
    fn a_clamd_trickling_its_reply_is_given_the_timeout_for_the_whole_scan() {
        let (_dir, address) = fake_clamd(|mut stream| {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if stream.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let client = ClamdClient::new(&address, Duration::from_millis(500));
        let (tx, rx) = std::sync::mpsc::channel();
        let started = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(client.scan_bytes(b"attachment"));
        });
        let result = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the scan ended within about its timeout");
        assert!(matches!(result, Err(ClamdError::Io { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// clamd refuses a stream over its StreamMaxLength and closes the connection while
    /// the client still writes: the write fails, but the reply says why, and that is
    /// not an unreachable clamd.
    #[test]
    fn a_stream_over_clamds_size_limit_is_reported_as_such() {
        let (_dir, address) = fake_clamd(|mut stream| {
            let mut head = [0u8; 64];
            let _ = stream.read_exact(&mut head);
            let _ = stream.write_all(b"INSTREAM size limit exceeded. ERROR\0");
            // Dropped here with the client's data unread.
        });
        let client = ClamdClient::new(&address, Duration::from_secs(5));
        let result = client.scan_bytes(&vec![0u8; 4 << 20]);
        assert!(
            matches!(result, Err(ClamdError::SizeLimit { .. })),
            "{result:?}"
        );
    }

    /// A clamd that accepts nothing and whose listen queue is full: the connect gives up
    /// after the timeout (it blocked for good before) and the scan reports the error,
    /// which the unreachable policy then turns into quarantine.
    #[test]
    fn a_hung_socket_times_out_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clamd.sock");
        let listener =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        listener
            .bind(&socket2::SockAddr::unix(&path).unwrap())
            .unwrap();
        listener.listen(0).unwrap();
        // Fill the queue: connections that are never accepted.
        let mut queued = Vec::new();
        for _ in 0..4 {
            let s =
                socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&socket2::SockAddr::unix(&path).unwrap());
            queued.push(s);
        }
        let client = ClamdClient::new(path.to_str().unwrap(), Duration::from_millis(300));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(client.ping());
        });
        let result = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the ping returned instead of blocking");
        assert!(result.is_err(), "{result:?}");
        drop(queued);
        drop(listener);
    }
}
