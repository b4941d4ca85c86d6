//! Fingerprints of a TLS ClientHello (JA3 and JA4), from the raw bytes the
//! client sent. Sans-IO and defensive: the input is whatever an attacker put
//! on the wire, so every length is checked and nothing panics.
//!
//! JA3: `md5("version,ciphers,extensions,groups,point_formats")`, values in
//! decimal joined by `-`, GREASE values left out.
//! JA4 (the `JA4` part of FoxIO's JA4+): `t<ver><d|i><nn ciphers><nn exts><alpn>_<sha256 of sorted ciphers, 12 hex>_<sha256 of sorted extensions and signature algorithms, 12 hex>`.

use crate::escape::hex;
use md5::Md5;
use sha2::{Digest, Sha256};

/// What a ClientHello offered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub legacy_version: u16,
    pub ciphers: Vec<u16>,
    /// Extension types, in the order sent.
    pub extensions: Vec<u16>,
    pub groups: Vec<u16>,
    pub point_formats: Vec<u8>,
    pub signature_algorithms: Vec<u16>,
    pub supported_versions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<Vec<u8>>,
}

/// GREASE values (RFC 8701) are random noise that clients inject; fingerprints ignore them.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// A bounds-checked reader over untrusted bytes.
pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(super) fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }

    /// A vector with a length prefix of `width` bytes.
    pub(super) fn vec(&mut self, width: usize) -> Option<Reader<'a>> {
        let len = match width {
            1 => usize::from(self.u8()?),
            2 => usize::from(self.u16()?),
            _ => self.u24()?,
        };
        Some(Reader {
            bytes: self.take(len)?,
        })
    }

    pub(super) fn u16s(mut self) -> Vec<u16> {
        let mut out = Vec::new();
        while let Some(v) = self.u16() {
            out.push(v);
        }
        out
    }
}

/// The first handshake message in `records` (TLS records as sent), with
/// its 4-byte header: it may span several records.
pub(super) fn first_handshake(records: &[u8]) -> Option<Vec<u8>> {
    let mut handshake = Vec::new();
    let mut r = Reader { bytes: records };
    while let Some(content_type) = r.u8() {
        if content_type != 22 {
            break;
        }
        r.u16()?;
        let payload = r.vec(2)?;
        handshake.extend_from_slice(payload.bytes);
        if handshake.len() >= 4 {
            let need = 4
                + ((usize::from(handshake[1]) << 16)
                    | (usize::from(handshake[2]) << 8)
                    | usize::from(handshake[3]));
            if handshake.len() >= need {
                break;
            }
        }
    }
    Some(handshake)
}

/// Extracts the ClientHello from the first TLS records of a connection.
/// Returns `None` when the bytes are not a (complete) ClientHello.
pub fn parse(records: &[u8]) -> Option<ClientHello> {
    let handshake = first_handshake(records)?;
    let mut h = Reader { bytes: &handshake };
    if h.u8()? != 1 {
        return None;
    }
    let mut body = h.vec(3)?;
    let mut hello = ClientHello {
        legacy_version: body.u16()?,
        ..ClientHello::default()
    };
    body.take(32)?; // random
    body.vec(1)?; // session id
    hello.ciphers = body.vec(2)?.u16s();
    body.vec(1)?; // compression methods
    let Some(mut extensions) = body.vec(2) else {
        return Some(hello); // no extensions at all (old clients)
    };
    while let Some(kind) = extensions.u16() {
        let mut data = extensions.vec(2)?;
        hello.extensions.push(kind);
        match kind {
            0 => {
                // server_name: list of (type, name); take the first host name.
                let mut list = data.vec(2)?;
                if list.u8()? == 0 {
                    let name = list.vec(2)?;
                    hello.sni = Some(crate::escape::escape_text(name.bytes));
                }
            }
            10 => hello.groups = data.vec(2)?.u16s(),
            11 => hello.point_formats = data.vec(1)?.bytes.to_vec(),
            13 => hello.signature_algorithms = data.vec(2)?.u16s(),
            16 => {
                let mut list = data.vec(2)?;
                while let Some(proto) = list.vec(1) {
                    hello.alpn.push(proto.bytes.to_vec());
                }
            }
            43 => hello.supported_versions = data.vec(1)?.u16s(),
            _ => {}
        }
    }
    Some(hello)
}

/// JA4's two characters for a TLS version.
pub(super) fn ja4_version(version: u16) -> &'static str {
    match version {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        _ => "00",
    }
}

/// JA4's two characters for an ALPN protocol: its first and last, `9` for
/// one that is not alphanumeric, `00` for none.
pub(super) fn ja4_alpn(protocol: Option<&[u8]>) -> String {
    match protocol {
        Some(p) if !p.is_empty() => {
            let pick = |b: u8| {
                if b.is_ascii_alphanumeric() {
                    b as char
                } else {
                    '9'
                }
            };
            format!("{}{}", pick(p[0]), pick(p[p.len() - 1]))
        }
        _ => "00".into(),
    }
}

fn join<T: std::fmt::Display>(values: impl Iterator<Item = T>, sep: &str) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(sep)
}

impl ClientHello {
    /// The JA3 string (before hashing).
    pub fn ja3_string(&self) -> String {
        let clean = |v: &[u16]| join(v.iter().filter(|&&x| !is_grease(x)), "-");
        format!(
            "{},{},{},{},{}",
            self.legacy_version,
            clean(&self.ciphers),
            clean(&self.extensions),
            clean(&self.groups),
            join(self.point_formats.iter(), "-")
        )
    }

    pub fn ja3(&self) -> String {
        hex(&Md5::digest(self.ja3_string().as_bytes()))
    }

    pub fn ja4(&self) -> String {
        let version = self
            .supported_versions
            .iter()
            .copied()
            .filter(|&v| !is_grease(v))
            .max()
            .unwrap_or(self.legacy_version);
        let version = ja4_version(version);
        let ciphers: Vec<u16> = self
            .ciphers
            .iter()
            .copied()
            .filter(|&c| !is_grease(c))
            .collect();
        let extensions: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|&e| !is_grease(e))
            .collect();
        let alpn = ja4_alpn(self.alpn.first().map(Vec::as_slice));
        let mut sorted_ciphers: Vec<String> = ciphers.iter().map(|c| format!("{c:04x}")).collect();
        sorted_ciphers.sort();
        let mut sorted_exts: Vec<String> = extensions
            .iter()
            .filter(|&&e| e != 0 && e != 16)
            .map(|e| format!("{e:04x}"))
            .collect();
        sorted_exts.sort();
        let sigs: Vec<String> = self
            .signature_algorithms
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect();
        let mut ext_text = sorted_exts.join(",");
        if !sigs.is_empty() {
            ext_text = format!("{ext_text}_{}", sigs.join(","));
        }
        let short = |text: &str| {
            if text.is_empty() {
                "000000000000".to_string()
            } else {
                hex(&Sha256::digest(text.as_bytes()))[..12].to_string()
            }
        };
        format!(
            "t{version}{}{:02}{:02}{alpn}_{}_{}",
            if self.sni.is_some() { 'd' } else { 'i' },
            ciphers.len().min(99),
            extensions.len().min(99),
            short(&sorted_ciphers.join(",")),
            short(&ext_text)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal TLS 1.2 ClientHello: two ciphers (one GREASE), SNI, groups,
    /// point formats.
    fn sample() -> Vec<u8> {
        let mut exts = Vec::new();
        // server_name "mx.example.com"
        let name = b"mx.example.com";
        let mut sni = vec![0u8];
        sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni.extend_from_slice(name);
        let mut sni_ext = (sni.len() as u16).to_be_bytes().to_vec();
        sni_ext.extend_from_slice(&sni);
        exts.extend_from_slice(&[0, 0]);
        exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
        exts.extend_from_slice(&sni_ext);
        // supported_groups: x25519 (29), secp256r1 (23)
        exts.extend_from_slice(&[0, 10, 0, 6, 0, 4, 0, 29, 0, 23]);
        // ec_point_formats: uncompressed
        exts.extend_from_slice(&[0, 11, 0, 2, 1, 0]);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 4, 0x0a, 0x0a, 0xc0, 0x2f]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn ja3_of_a_known_hello() {
        let hello = parse(&sample()).unwrap();
        assert_eq!(hello.sni.as_deref(), Some("mx.example.com"));
        assert_eq!(hello.ja3_string(), "771,49199,0-10-11,29-23,0");
        assert_eq!(hello.ja3(), hex(&Md5::digest(b"771,49199,0-10-11,29-23,0")));
        assert!(hello.ja4().starts_with("t12d010300_"), "{}", hello.ja4());
    }

    #[test]
    fn truncated_or_garbage_input_is_none_never_a_panic() {
        let full = sample();
        for end in 0..full.len() {
            let _ = parse(&full[..end]);
        }
        assert!(parse(b"EHLO x\r\n").is_none());
        assert!(parse(&[22, 3, 1, 0xff, 0xff, 1]).is_none());
    }
}
