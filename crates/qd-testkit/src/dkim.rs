//! A sending domain for authentication tests: an Ed25519 DKIM key made at test time, the
//! DNS records that publish it with SPF and DMARC, and messages signed with it.

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;

use crate::DnsRecord;

/// The header fields signed.
const SIGNED: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

pub struct SigningDomain {
    pub domain: String,
    pub selector: String,
    pkcs8: Vec<u8>,
}

impl SigningDomain {
    /// A fresh key for `domain` under `selector`.
    pub fn new(domain: &str, selector: &str) -> std::io::Result<SigningDomain> {
        let pkcs8 =
            Ed25519Key::generate_pkcs8().map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(SigningDomain {
            domain: domain.to_string(),
            selector: selector.to_string(),
            pkcs8,
        })
    }

    fn key(&self) -> std::io::Result<Ed25519Key> {
        Ed25519Key::from_pkcs8_der(&self.pkcs8).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The DKIM key record's text (`v=DKIM1; k=ed25519; p=…`).
    pub fn key_record(&self) -> std::io::Result<String> {
        Ok(format!(
            "v=DKIM1; k=ed25519; p={}",
            base64(&self.key()?.public_key())
        ))
    }

    /// The key record, SPF authorising `spf_ip` only (`-all`), and DMARC with `policy`.
    pub fn records(&self, spf_ip: &str, policy: &str) -> std::io::Result<Vec<DnsRecord>> {
        Ok(vec![
            DnsRecord::txt(
                &format!("{}._domainkey.{}", self.selector, self.domain),
                &self.key_record()?,
            ),
            DnsRecord::txt(&self.domain, &format!("v=spf1 ip4:{spf_ip} -all")),
            DnsRecord::txt(
                &format!("_dmarc.{}", self.domain),
                &format!("v=DMARC1; p={policy}"),
            ),
        ])
    }

    /// `message` with a DKIM-Signature over From, To, Subject, Date and Message-ID.
    pub fn sign(&self, message: &str) -> std::io::Result<String> {
        let signature = DkimSigner::from_key(self.key()?)
            .domain(self.domain.as_str())
            .selector(self.selector.as_str())
            .headers(SIGNED)
            .sign(message.as_bytes())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(format!("{}{message}", signature.to_header()))
    }
}

impl SigningDomain {
    /// `message` with an ARC set (instance 1) added by this domain as a forwarder
    /// would: ARC-Seal, ARC-Message-Signature over From, To, Subject and Date, and
    /// ARC-Authentication-Results, on top.
    pub async fn arc_seal(&self, message: &str) -> std::io::Result<String> {
        use mail_auth::arc::ArcSealer;
        use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
        use mail_auth::{AuthenticatedMessage, AuthenticationResults, MessageAuthenticator};
        let err = |e: String| std::io::Error::other(e);
        let parsed = AuthenticatedMessage::parse(message.as_bytes())
            .ok_or_else(|| err("the message does not parse".into()))?;
        // No earlier ARC set: nothing is looked up.
        let resolver = MessageAuthenticator::new(
            ResolverConfig::from_parts(None, vec![], vec![]),
            ResolverOpts::default(),
        )
        .map_err(|e| err(e.to_string()))?;
        let arc = resolver.verify_arc(&parsed).await;
        let results = AuthenticationResults::new(&self.domain);
        let set = ArcSealer::from_key(self.key()?)
            .domain(self.domain.as_str())
            .selector(self.selector.as_str())
            .headers(["From", "To", "Subject", "Date"])
            .seal(&parsed, &results, &arc)
            .map_err(|e| err(e.to_string()))?;
        Ok(format!("{}{message}", set.to_header()))
    }
}

/// Standard base64 with padding, on one line (the `base64` crate's).
pub fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}
