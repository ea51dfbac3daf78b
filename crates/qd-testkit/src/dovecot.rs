//! A private Dovecot IMAP server per test: generated config in a temp dir, test users in a
//! passwd-file, Maildirs under the temp dir, a free loopback port, optional TLS with a
//! CA generated at test time. The system's Dovecot config is never read.

use std::io::{BufRead as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Dovecot refuses to run mail processes as root; the package's `nobody` is fine.
const MAIL_UID: u32 = 65534;
const MAIL_GID: u32 = 65534;
const DOVECOT: &str = "/usr/sbin/dovecot";
const DOVEADM: &str = "/usr/bin/doveadm";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What went wrong with a test Dovecot.
#[derive(Debug, thiserror::Error)]
pub enum DovecotError {
    #[error(
        "Dovecot is not installed ({0} missing): install the Debian package dovecot-imapd \
         (`apt-get install -y dovecot-imapd`; .ci/run does)"
    )]
    NotInstalled(&'static str),
    #[error("test Dovecot: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("test Dovecot did not become ready: {0}")]
    NotReady(String),
    #[error("doveadm {args} failed: {stderr}")]
    Doveadm { args: String, stderr: String },
    #[error("test certificate: {0}")]
    Cert(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DovecotError {
    let context = context.into();
    move |source| DovecotError::Io { context, source }
}

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DovecotTls {
    /// Plain IMAP only (STARTTLS not offered).
    Off,
    /// `ssl = yes`: STARTTLS on the IMAP port and implicit TLS on [`Dovecot::imaps_port`].
    On,
}

/// A running private Dovecot; killed and waited for on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    imaps_port: Option<u16>,
    users: Vec<(String, String)>,
    delivered: AtomicU64,
    /// Configuration lines appended to the generated file.
    extra_conf: String,
    /// The OAuth2 token-introspection endpoint of [`Dovecot::start_with_xoauth2`].
    introspection: Option<Child>,
    oauth_dir: Option<tempfile::TempDir>,
    /// Unique per instance: its `instance_name` and its login greeting. Readiness is
    /// judged by this greeting, so a test never mistakes another instance that won the
    /// same free port (a port is free when chosen, not necessarily when Dovecot binds it)
    /// for its own: they share user names and passwords.
    instance: String,
}

impl std::fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dovecot")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("imaps_port", &self.imaps_port)
            .finish()
    }
}

impl Dovecot {
    /// Starts a server with these `(user, password)` pairs.
    pub fn start(users: &[(&str, &str)], tls: DovecotTls) -> Result<Dovecot, DovecotError> {
        Dovecot::start_with(users, tls, "")
    }

    /// One user `user`/`pass`, no TLS, and no IDLE in the capabilities: a server that
    /// clients must poll.
    pub fn start_without_idle() -> Result<Dovecot, DovecotError> {
        Dovecot::start_with(
            &[("user", "pass")],
            DovecotTls::Off,
            "imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE UIDPLUS MOVE NAMESPACE\n",
        )
    }

    /// One user `user` who logs in with AUTHENTICATE XOAUTH2 and the bearer `token`
    /// (also with the password `pass`, by LOGIN/PLAIN; the password file is asked first,
    /// so `pass` would pass as a token too — tests use other tokens). Dovecot checks tokens against
    /// a private OAuth2 introspection endpoint (a few lines of Python's standard
    /// library on a loopback port) that knows only `token`, as Microsoft 365 or Google
    /// would.
    pub fn start_with_xoauth2(token: &str) -> Result<Dovecot, DovecotError> {
        let port = crate::free_port();
        let script = tempfile::Builder::new()
            .prefix("qd-oauth2-")
            .tempdir()
            .map_err(io("creating temp dir"))?;
        let path = script.path().join("introspect.py");
        std::fs::write(&path, INTROSPECT_PY).map_err(io("writing introspect.py"))?;
        let child = Command::new("python3")
            .arg(&path)
            .arg(port.to_string())
            .arg(token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("starting the OAuth2 introspection endpoint (python3)"))?;
        let mut guard = ChildGuard(Some(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(DovecotError::NotReady(format!(
                    "the OAuth2 introspection endpoint on port {port} did not start"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let conf_path = script.path().join("oauth2.conf.ext");
        std::fs::write(
            &conf_path,
            format!(
                "introspection_mode = post\n\
                 introspection_url = http://127.0.0.1:{port}/introspect\n\
                 username_attribute = username\n\
                 active_attribute = active\n\
                 active_value = true\n"
            ),
        )
        .map_err(io("writing oauth2.conf.ext"))?;
        set_mode(script.path(), 0o755)?;
        set_mode(&conf_path, 0o644)?;
        let extra = format!(
            "auth_mechanisms = plain login xoauth2\n\
             passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n  args = {}\n}}\n",
            conf_path.display()
        );
        let mut d = Dovecot::start_with(&[("user", "pass")], DovecotTls::Off, &extra)?;
        d.introspection = guard.0.take();
        d.oauth_dir = Some(script);
        Ok(d)
    }

    /// Like [`Dovecot::start`], with `extra_conf` appended to the generated configuration.
    pub fn start_with(
        users: &[(&str, &str)],
        tls: DovecotTls,
        extra_conf: &str,
    ) -> Result<Dovecot, DovecotError> {
        if !Path::new(DOVECOT).exists() {
            return Err(DovecotError::NotInstalled(DOVECOT));
        }
        let dir = tempfile::Builder::new()
            .prefix("qd-dovecot-")
            .tempdir()
            .map_err(io("creating temp dir"))?;
        // The mail processes run as nobody and must reach the homes inside the temp dir.
        set_mode(dir.path(), 0o755)?;
        let users: Vec<(String, String)> = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        let mut passwd = String::new();
        for (u, p) in &users {
            passwd.push_str(&format!("{u}:{{PLAIN}}{p}::::::\n"));
            let maildir = dir.path().join("home").join(u).join("Maildir");
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(maildir.join(sub)).map_err(io("creating Maildir"))?;
            }
            chown_tree(&dir.path().join("home").join(u))?;
        }
        std::fs::write(dir.path().join("users"), passwd).map_err(io("writing users"))?;
        let imaps_port = match tls {
            DovecotTls::On => {
                write_certs(dir.path())?;
                Some(crate::free_port())
            }
            DovecotTls::Off => None,
        };
        let mut d = Dovecot {
            dir,
            child: None,
            port: crate::free_port(),
            imaps_port,
            users,
            delivered: AtomicU64::new(0),
            extra_conf: extra_conf.to_string(),
            introspection: None,
            oauth_dir: None,
            instance: format!(
                "qd-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ),
        };
        d.write_config()?;
        d.spawn()?;
        Ok(d)
    }

    /// One user `user`/`pass`, no TLS.
    pub fn start_plain() -> Result<Dovecot, DovecotError> {
        Dovecot::start(&[("user", "pass")], DovecotTls::Off)
    }

    fn write_config(&self) -> Result<(), DovecotError> {
        let d = self.dir.path().display();
        let ssl = if self.imaps_port.is_some() {
            format!("ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n")
        } else {
            "ssl = no\n".to_string()
        };
        let conf = format!(
            "instance_name = {instance}\n\
             login_greeting = {instance} ready\n\
             base_dir = {d}/run\n\
             state_dir = {d}/state\n\
             log_path = {d}/dovecot.log\n\
             info_log_path = {d}/dovecot.log\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             {ssl}\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             mail_location = maildir:~/Maildir\n\
             mail_fsync = never\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid={MAIL_UID} gid={MAIL_GID} home={d}/home/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {port}\n  }}\n  \
             inet_listener imaps {{\n    port = {imaps}\n  }}\n}}\n\
             service stats {{\n  inet_listener http {{\n    port = 0\n  }}\n}}\n\
             protocol imap {{\n  mail_max_userip_connections = 100\n}}\n{extra}",
            extra = self.extra_conf,
            instance = self.instance,
            port = self.port,
            imaps = self.imaps_port.unwrap_or(0),
        );
        std::fs::write(self.conf_path(), conf).map_err(io("writing dovecot.conf"))
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    fn spawn(&mut self) -> Result<(), DovecotError> {
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(self.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(io("starting dovecot"))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(DovecotError::NotReady(format!(
                        "dovecot exited with {status}; log: {}",
                        self.log()
                    )));
                }
            }
            // Dovecot's master binds every listener before it answers on any, and exits
            // when one bind fails; so our greeting on the plain port means the TLS port is
            // ours too.
            if self.greets_as_itself() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DovecotError::NotReady(format!(
                    "port {} did not greet as {} after {READY_TIMEOUT:?}; log: {}",
                    self.port,
                    self.instance,
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the plain port answers with this instance's own greeting.
    fn greets_as_itself(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .is_err()
        {
            return false;
        }
        let mut line = String::new();
        match std::io::BufReader::new(stream).read_line(&mut line) {
            Ok(_) => line.starts_with("* OK") && line.contains(&format!("{} ready", self.instance)),
            Err(_) => false,
        }
    }

    /// The plain IMAP port (STARTTLS is offered there when TLS is on).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port, when TLS is on.
    pub fn imaps_port(&self) -> Option<u16> {
        self.imaps_port
    }

    /// PEM file of the CA that signed the server certificate (TLS on only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The password of a configured user.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
    }

    /// Dovecot's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The Maildir directory of a folder (`INBOX` or a name with `.` or `/` as the
    /// hierarchy separator; Maildir++ stores `a/b` as `.a.b`).
    pub fn folder_dir(&self, user: &str, folder: &str) -> PathBuf {
        let maildir = self.dir.path().join("home").join(user).join("Maildir");
        if folder.eq_ignore_ascii_case("INBOX") {
            maildir
        } else {
            maildir.join(format!(".{}", folder.replace('/', ".")))
        }
    }

    /// Delivers one message by writing it into the folder's `new/` (via `tmp/` and a
    /// rename, as an MDA does), owned by the mail user. The folder is created when absent.
    pub fn deliver(&self, user: &str, folder: &str, raw: &[u8]) -> Result<(), DovecotError> {
        let dir = self.folder_dir(user, folder);
        if !dir.join("new").is_dir() {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(dir.join(sub)).map_err(io("creating folder"))?;
            }
            if !folder.eq_ignore_ascii_case("INBOX") {
                std::fs::write(dir.join("maildirfolder"), b"").map_err(io("maildirfolder"))?;
            }
            chown_tree(&dir)?;
        }
        let n = self.delivered.fetch_add(1, Ordering::Relaxed);
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let name = format!("{secs}.M{n}P{}.qdtest", std::process::id());
        let tmp = dir.join("tmp").join(&name);
        {
            let mut f = std::fs::File::create(&tmp).map_err(io("writing message"))?;
            f.write_all(raw).map_err(io("writing message"))?;
        }
        std::os::unix::fs::chown(&tmp, Some(MAIL_UID), Some(MAIL_GID))
            .map_err(io("chown message"))?;
        std::fs::rename(&tmp, dir.join("new").join(&name)).map_err(io("moving message to new/"))
    }

    /// Messages currently in a folder (files in `new/` and `cur/`; 0 for a missing
    /// folder). Expunged messages are gone from disk at once in Maildir.
    pub fn count(&self, user: &str, folder: &str) -> usize {
        let dir = self.folder_dir(user, folder);
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(dir.join(s))
                    .map(|it| it.filter(|e| e.is_ok()).count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Files in a folder carrying this Maildir flag letter in their info (`S` seen,
    /// `F` flagged, ...; keywords are letters `a`..`z`).
    pub fn count_with_flag(&self, user: &str, folder: &str, letter: char) -> usize {
        let dir = self.folder_dir(user, folder).join("cur");
        std::fs::read_dir(dir)
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.split_once(":2,")
                            .is_some_and(|(_, flags)| flags.contains(letter))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// Runs `doveadm` against this instance.
    pub fn doveadm(&self, args: &[&str]) -> Result<String, DovecotError> {
        if !Path::new(DOVEADM).exists() {
            return Err(DovecotError::NotInstalled(DOVEADM));
        }
        let out = Command::new(DOVEADM)
            .arg("-c")
            .arg(self.conf_path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io("running doveadm"))?;
        if !out.status.success() {
            return Err(DovecotError::Doveadm {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The folder's current UIDVALIDITY.
    pub fn uidvalidity(&self, user: &str, folder: &str) -> Result<u32, DovecotError> {
        let out = self.doveadm(&[
            "-f",
            "flow",
            "mailbox",
            "status",
            "-u",
            user,
            "uidvalidity",
            folder,
        ])?;
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("uidvalidity="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| DovecotError::Doveadm {
                args: "mailbox status uidvalidity".into(),
                stderr: format!("unexpected output: {out}"),
            })
    }

    /// Gives the folder a new UIDVALIDITY, as a server does after its index was rebuilt:
    /// every UID a client remembered is void.
    pub fn set_uidvalidity(
        &self,
        user: &str,
        folder: &str,
        value: u32,
    ) -> Result<(), DovecotError> {
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            user,
            "--uid-validity",
            &value.to_string(),
            folder,
        ])?;
        Ok(())
    }

    /// Stops the server (kill + wait). The port frees about a second later.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Dovecot's children (imap, imap-login, auth) exit when the master's pipes
        // close; give them a moment so a restart finds the base_dir free.
        let pid_file = self.dir.path().join("run").join("master.pid");
        let _ = std::fs::remove_file(pid_file);
    }

    /// Stops and starts the server on the same ports and data: every client connection
    /// is cut. Waits until the ports accept connections again.
    pub fn restart(&mut self) -> Result<(), DovecotError> {
        self.stop();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                // The old listener may still hold the port for a moment.
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Whether the master process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut c) = self.introspection.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills a helper process unless it was handed over.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The OAuth2 introspection endpoint (RFC 7662): active only for the one token.
const INTROSPECT_PY: &str = r#"import http.server, json, sys, urllib.parse
TOKEN = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        ok = (form.get("token") or [""])[0] == TOKEN
        body = json.dumps({"active": True, "username": "user"} if ok else {"active": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn set_mode(path: &Path, mode: u32) -> Result<(), DovecotError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("chmod"))
}

fn chown_tree(root: &Path) -> Result<(), DovecotError> {
    std::os::unix::fs::chown(root, Some(MAIL_UID), Some(MAIL_GID)).map_err(io("chown"))?;
    if root.is_dir() {
        for entry in std::fs::read_dir(root).map_err(io("read_dir"))? {
            let entry = entry.map_err(io("read_dir"))?;
            chown_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// A CA and a server certificate for `localhost` / 127.0.0.1 signed by it.
fn write_certs(dir: &Path) -> Result<(), DovecotError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let cert_err = |e: rcgen::Error| DovecotError::Cert(e.to_string());
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "quietdesk test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(cert_err)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(cert_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).map_err(io("writing ca.pem"))?;
    std::fs::write(dir.join("cert.pem"), cert.pem()).map_err(io("writing cert.pem"))?;
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).map_err(io("writing key.pem"))?;
    Ok(())
}
