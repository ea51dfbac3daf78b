//! A private authoritative DNS server (Debian `dnsmasq-base`) on a free loopback port,
//! for the SPF, DKIM and DMARC tests: it answers the TXT and A records the test gives
//! and NXDOMAIN for every other name (it forwards nothing). The server runs in the
//! foreground as our child; dropping the value kills it and waits for it.

use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs the daemon.
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// The TTL of the records served (dnsmasq's default for its own records is 0, which
/// no resolver may cache).
const TTL_SECS: u32 = 300;
/// The longest character-string a TXT record holds; longer texts are split (resolvers
/// join them again for SPF and DKIM).
const TXT_CHUNK: usize = 255;

/// One record to serve.
#[derive(Debug, Clone)]
pub enum DnsRecord {
    Txt {
        name: String,
        text: String,
    },
    A {
        name: String,
        ip: Ipv4Addr,
    },
    /// Every name under `domain` is asked of the server at `port` on loopback (a
    /// socket that never answers makes a name server that hangs).
    Forward {
        domain: String,
        port: u16,
    },
}

impl DnsRecord {
    pub fn txt(name: &str, text: &str) -> DnsRecord {
        DnsRecord::Txt {
            name: name.to_string(),
            text: text.to_string(),
        }
    }

    fn config_line(&self) -> std::io::Result<String> {
        match self {
            DnsRecord::Txt { name, text } => {
                if text.contains(['"', '\n', '\\']) {
                    return Err(std::io::Error::other(format!(
                        "TXT text for {name} holds a quote, backslash or line break"
                    )));
                }
                let chunks: Vec<String> = text
                    .as_bytes()
                    .chunks(TXT_CHUNK)
                    .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                    .collect();
                Ok(format!("txt-record={name},{}", chunks.join(",")))
            }
            DnsRecord::A { name, ip } => Ok(format!("host-record={name},{ip}")),
            DnsRecord::Forward { domain, port } => Ok(format!("server=/{domain}/127.0.0.1#{port}")),
        }
    }
}

/// A running private dnsmasq.
pub struct Dnsmasq {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq serving `records` and waits until it accepts connections.
    pub fn start(records: &[DnsRecord]) -> std::io::Result<Dnsmasq> {
        if !Path::new(DNSMASQ).exists() {
            return Err(std::io::Error::other(format!(
                "{DNSMASQ} is missing: install Debian's dnsmasq-base (`apt-get install -y \
                 dnsmasq-base`; .ci/run does)"
            )));
        }
        let dir = tempfile::tempdir()?;
        let port = crate::free_port();
        let mut conf = format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             no-poll\nlocal=/#/\nlocal-ttl={TTL_SECS}\npid-file=\nuser=root\ngroup=root\n"
        );
        for r in records {
            conf.push_str(&r.config_line()?);
            conf.push('\n');
        }
        let conf_path = dir.path().join("dnsmasq.conf");
        std::fs::write(&conf_path, conf)?;
        let log = std::fs::File::create(dir.path().join("dnsmasq.err"))?;
        let child = Command::new(DNSMASQ)
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let mut dns = Dnsmasq { child, port, dir };
        dns.wait_ready()?;
        Ok(dns)
    }

    fn wait_ready(&mut self) -> std::io::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let err = std::fs::read_to_string(self.dir.path().join("dnsmasq.err"))
                    .unwrap_or_default();
                return Err(std::io::Error::other(format!(
                    "dnsmasq exited early ({status}): {err}"
                )));
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return Ok(());
            }
            if start.elapsed() > READY_DEADLINE {
                return Err(std::io::Error::other(format!(
                    "dnsmasq did not listen on port {} within {READY_DEADLINE:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:PORT`, as `filter.dns.servers` takes it.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
