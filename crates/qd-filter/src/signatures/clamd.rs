//! A clamd client: `zINSTREAM` over TCP or a Unix socket, with a timeout.
//!
//! Protocol (clamd(8)): send `zINSTREAM\0`, then chunks each prefixed by a 4-byte
//! big-endian length, then a zero length; the reply ends with `\0` and reads
//! `stream: OK` or `stream: NAME FOUND`.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

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

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

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

    fn connect(&self) -> Result<Box<dyn Stream>, ClamdError> {
        let err = |source| ClamdError::Connect {
            address: self.address(),
            source,
        };
        match &self.endpoint {
            Endpoint::Tcp(a) => {
                let addr = a
                    .to_socket_addrs()
                    .map_err(err)?
                    .next()
                    .ok_or_else(|| err(std::io::ErrorKind::NotFound.into()))?;
                let s = TcpStream::connect_timeout(&addr, self.timeout).map_err(err)?;
                s.set_read_timeout(Some(self.timeout)).map_err(err)?;
                s.set_write_timeout(Some(self.timeout)).map_err(err)?;
                Ok(Box::new(s))
            }
            #[cfg(unix)]
            Endpoint::Unix(p) => {
                // With a timeout, as for TCP: connecting to a hung clamd whose listen
                // queue is full would otherwise block a parse worker for good.
                let socket =
                    socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
                        .map_err(err)?;
                let addr = socket2::SockAddr::unix(p).map_err(err)?;
                socket.connect_timeout(&addr, self.timeout).map_err(err)?;
                let s = std::os::unix::net::UnixStream::from(socket);
                s.set_read_timeout(Some(self.timeout)).map_err(err)?;
                s.set_write_timeout(Some(self.timeout)).map_err(err)?;
                Ok(Box::new(s))
            }
            #[cfg(not(unix))]
            Endpoint::Unix(_) => Err(err(std::io::ErrorKind::Unsupported.into())),
        }
    }

    /// `zPING`: is clamd there?
    pub fn ping(&self) -> Result<(), ClamdError> {
        let mut s = self.connect()?;
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

    /// Scans one byte stream; `Some(name)` when clamd found something.
    pub fn scan_bytes(&self, bytes: &[u8]) -> Result<Option<String>, ClamdError> {
        let mut s = self.connect()?;
        let io = |source| ClamdError::Io {
            address: self.address(),
            source,
        };
        s.write_all(b"zINSTREAM\0").map_err(io)?;
        for chunk in bytes.chunks(CHUNK) {
            let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
            s.write_all(&len.to_be_bytes()).map_err(io)?;
            s.write_all(chunk).map_err(io)?;
        }
        s.write_all(&0u32.to_be_bytes()).map_err(io)?;
        s.flush().map_err(io)?;
        let reply = read_reply(&mut s).map_err(io)?;
        let body = reply.strip_prefix("stream:").unwrap_or(&reply).trim();
        if body == "OK" {
            Ok(None)
        } else if let Some(name) = body.strip_suffix(" FOUND") {
            Ok(Some(name.trim().to_owned()))
        } else {
            Err(ClamdError::Reply {
                address: self.address(),
                reply,
            })
        }
    }
}

fn read_reply(s: &mut dyn Stream) -> std::io::Result<String> {
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

/// Hands each attachment to clamd, remembering the first failure.
pub(crate) struct ClamdScan<'a> {
    pub(crate) client: &'a ClamdClient,
    pub(crate) error: RefCell<Option<ClamdError>>,
}

impl AttachmentScanner for ClamdScan<'_> {
    fn scan(&self, _part: &PartInfo, bytes: &[u8]) -> Vec<String> {
        if self.error.borrow().is_some() {
            return Vec::new();
        }
        match self.client.scan_bytes(bytes) {
            Ok(found) => found.into_iter().collect(),
            Err(e) => {
                *self.error.borrow_mut() = Some(e);
                Vec::new()
            }
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

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
