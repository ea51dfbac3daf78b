//! Opening an authenticated IMAP session: TCP, implicit TLS or STARTTLS (rustls), then
//! LOGIN, AUTHENTICATE PLAIN or AUTHENTICATE XOAUTH2.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::types::Capabilities;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::config::{Auth, MailboxConfig, Tls};
use super::ImapError;

/// The transport under an IMAP session.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub type Session = async_imap::Session<ImapStream>;

/// An authenticated session and what the server can do.
pub struct Connected {
    pub session: Session,
    pub idle: bool,
    pub mv: bool,
    pub uidplus: bool,
}

fn proto(mailbox: &str, e: impl std::fmt::Display) -> ImapError {
    ImapError::Protocol {
        mailbox: mailbox.to_string(),
        reason: e.to_string(),
    }
}

/// Builds the rustls client config: web PKI roots plus the mailbox's extra CA file.
/// The aws-lc-rs provider is named explicitly, so no process-wide default is needed.
fn tls_config(cfg: &MailboxConfig) -> Result<Arc<rustls::ClientConfig>, ImapError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &cfg.ca_file {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| ImapError::Config(format!("reading ca_file {}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| {
                ImapError::Config(format!("reading ca_file {}: {e}", path.display()))
            })?;
            roots
                .add(cert)
                .map_err(|e| ImapError::Config(format!("ca_file {}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn tls_wrap(cfg: &MailboxConfig, tcp: TcpStream) -> Result<ImapStream, ImapError> {
    let connector = tokio_rustls::TlsConnector::from(tls_config(cfg)?);
    let name = rustls_pki_types::ServerName::try_from(cfg.host.clone())
        .map_err(|e| ImapError::Config(format!("host {}: {e}", cfg.host)))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| ImapError::Tls {
            mailbox: cfg.name.clone(),
            reason: e.to_string(),
        })?;
    Ok(ImapStream::Tls(Box::new(tls)))
}

struct Plain<'a> {
    user: &'a str,
    secret: &'a str,
}

impl async_imap::Authenticator for Plain<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        // RFC 4616: authzid NUL authcid NUL passwd, authzid empty.
        let mut r = Vec::with_capacity(self.user.len() + self.secret.len() + 2);
        r.push(0);
        r.extend_from_slice(self.user.as_bytes());
        r.push(0);
        r.extend_from_slice(self.secret.as_bytes());
        r
    }
}

struct XOauth2<'a> {
    user: &'a str,
    token: &'a str,
    sent: bool,
}

impl async_imap::Authenticator for XOauth2<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        // The first answer carries the token. A second challenge is the server's JSON
        // error report; an empty answer makes it finish with NO (Google's XOAUTH2 doc).
        if self.sent {
            return Vec::new();
        }
        self.sent = true;
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token).into_bytes()
    }
}

/// Connects, protects and authenticates, within `timeout` for each step.
pub async fn connect(cfg: &MailboxConfig, timeout: Duration) -> Result<Connected, ImapError> {
    let step = |what: &'static str| {
        let name = cfg.name.clone();
        move |_| ImapError::Stalled {
            mailbox: name,
            during: what,
        }
    };
    let addr = (cfg.host.as_str(), cfg.port());
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(step("connect"))?
        .map_err(|e| ImapError::Connect {
            mailbox: cfg.name.clone(),
            address: format!("{}:{}", cfg.host, cfg.port()),
            source: e,
        })?;
    let _ = tcp.set_nodelay(true);
    let stream = match cfg.tls {
        Tls::Implicit => tokio::time::timeout(timeout, tls_wrap(cfg, tcp))
            .await
            .map_err(step("TLS handshake"))??,
        Tls::None | Tls::StartTls => ImapStream::Plain(tcp),
    };
    let mut client = async_imap::Client::new(stream);
    let greeting = tokio::time::timeout(timeout, client.read_response())
        .await
        .map_err(step("greeting"))?
        .map_err(|e| proto(&cfg.name, e))?;
    if greeting.is_none() {
        return Err(proto(
            &cfg.name,
            "server closed the connection before its greeting",
        ));
    }
    if cfg.tls == Tls::StartTls {
        tokio::time::timeout(timeout, client.run_command_and_check_ok("STARTTLS", None))
            .await
            .map_err(step("STARTTLS"))?
            .map_err(|e| ImapError::Tls {
                mailbox: cfg.name.clone(),
                reason: format!("STARTTLS refused: {e}"),
            })?;
        let tcp = match client.into_inner() {
            ImapStream::Plain(t) => t,
            ImapStream::Tls(_) => return Err(proto(&cfg.name, "STARTTLS over TLS")),
        };
        let stream = tokio::time::timeout(timeout, tls_wrap(cfg, tcp))
            .await
            .map_err(step("TLS handshake"))??;
        client = async_imap::Client::new(stream);
    }
    let secret = cfg.secret.resolve()?;
    let auth_failed = |e: async_imap::error::Error| ImapError::Auth {
        mailbox: cfg.name.clone(),
        user: cfg.user.clone(),
        reason: e.to_string(),
    };
    let login = async {
        match cfg.auth {
            Auth::Login => client
                .login(&cfg.user, &secret)
                .await
                .map_err(|(e, _)| auth_failed(e)),
            Auth::Plain => client
                .authenticate(
                    "PLAIN",
                    Plain {
                        user: &cfg.user,
                        secret: &secret,
                    },
                )
                .await
                .map_err(|(e, _)| auth_failed(e)),
            Auth::XOauth2 => client
                .authenticate(
                    "XOAUTH2",
                    XOauth2 {
                        user: &cfg.user,
                        token: &secret,
                        sent: false,
                    },
                )
                .await
                .map_err(|(e, _)| auth_failed(e)),
        }
    };
    let mut session = tokio::time::timeout(timeout, login)
        .await
        .map_err(step("authentication"))??;
    let caps: Capabilities = tokio::time::timeout(timeout, session.capabilities())
        .await
        .map_err(step("CAPABILITY"))?
        .map_err(|e| proto(&cfg.name, e))?;
    Ok(Connected {
        idle: caps.has_str("IDLE"),
        mv: caps.has_str("MOVE"),
        uidplus: caps.has_str("UIDPLUS"),
        session,
    })
}
