//! Small attachments with real formats: a log excerpt, a valid PNG, a minimal PDF.
//! Parsers and virus scanners look at magic numbers, so random bytes would be unrealistic.

use rand::Rng;

pub struct Attachment {
    pub filename: &'static str,
    pub content_type: &'static str,
    pub data: Vec<u8>,
}

pub fn make<R: Rng>(rng: &mut R, domain: &str, invoice: &str, ts: i64) -> Attachment {
    match rng.gen_range(0..20) {
        0..=8 => Attachment {
            filename: "log.txt",
            content_type: "text/plain; charset=us-ascii",
            data: log(rng, domain, ts),
        },
        9..=15 => Attachment {
            filename: "screenshot.png",
            content_type: "image/png",
            data: png(rng),
        },
        _ => Attachment {
            filename: "invoice.pdf",
            content_type: "application/pdf",
            data: pdf(rng, invoice),
        },
    }
}

fn log<R: Rng>(rng: &mut R, domain: &str, ts: i64) -> Vec<u8> {
    use std::fmt::Write;
    const EVENTS: &[&str] = &[
        "connect() failed (111: Connection refused) while connecting to upstream",
        "upstream timed out (110: Connection timed out) while reading response header from upstream",
        "FastCGI sent in stderr: \"PHP message: PHP Fatal error: Allowed memory size exhausted\"",
        "SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify failed)",
        "open() \"/var/www/html/favicon.ico\" failed (2: No such file or directory)",
        "limiting requests, excess: 20.120 by zone \"perip\"",
    ];
    let mut s = String::with_capacity(600);
    let mut t = ts - rng.gen_range(600..7200);
    for n in 0..rng.gen_range(3..8) {
        t += rng.gen_range(1..90);
        let dt = chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
        let _ = write!(
            s,
            "{} [error] {}#0: *{} {}, client: 192.0.2.{}, server: {domain}, request: \"GET /{} HTTP/1.1\"\r\n",
            dt.format("%Y/%m/%d %H:%M:%S"),
            rng.gen_range(1000..40000),
            1000 + n * 17,
            EVENTS[rng.gen_range(0..EVENTS.len())],
            rng.gen_range(1..255),
            ["", "wp-login.php", "checkout", "api/orders", "index.php"][rng.gen_range(0..5)],
        );
    }
    s.into_bytes()
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
    }
    c ^ 0xFFFF_FFFF
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// A grey 16x12 PNG with a stored (uncompressed) zlib stream: valid, a few hundred bytes.
fn png<R: Rng>(rng: &mut R) -> Vec<u8> {
    const W: usize = 16;
    const H: usize = 12;
    let mut raw = Vec::with_capacity((W + 1) * H);
    let base: u8 = rng.gen_range(40..200);
    for y in 0..H {
        raw.push(0); // filter type None
        for x in 0..W {
            raw.push(base.wrapping_add((x * 5 + y * 3) as u8) ^ (rng.gen::<u8>() & 7));
        }
    }
    let mut z = vec![0x78, 0x01, 0x01]; // zlib header, one final stored block
    let len = raw.len() as u16;
    z.extend_from_slice(&len.to_le_bytes());
    z.extend_from_slice(&(!len).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(W as u32).to_be_bytes());
    ihdr.extend_from_slice(&(H as u32).to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A one-page PDF with a correct cross-reference table.
fn pdf<R: Rng>(rng: &mut R, invoice: &str) -> Vec<u8> {
    let text = format!(
        "BT /F1 14 Tf 72 720 Td (Invoice {invoice}) Tj 0 -24 Td (Amount due: EUR {}.{:02}) Tj ET",
        rng.gen_range(5..900),
        rng.gen_range(0..100)
    );
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.push_str(&format!("{} 0 obj\n{body}\nendobj\n", i + 1));
    }
    let xref = out.len();
    out.push_str(&format!(
        "xref\n0 {}\n0000000000 65535 f \n",
        objects.len() + 1
    ));
    for o in offsets {
        out.push_str(&format!("{o:010} 00000 n \n"));
    }
    out.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crc_matches_the_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    }

    #[test]
    fn formats_have_their_magic_and_stay_small() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let p = png(&mut rng);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n") && p.ends_with(&[0xAE, 0x42, 0x60, 0x82]));
        let d = pdf(&mut rng, "INV-2024-00001");
        assert!(d.starts_with(b"%PDF-1.4") && d.ends_with(b"%%EOF\n"));
        let l = log(&mut rng, "x.example", 1_704_067_200);
        for a in [p, d, l] {
            assert!((100..1500).contains(&a.len()), "{}", a.len());
        }
    }
}
