//! Fingerprints of the ServerHello latrine sent (JA3S and JA4S), from the
//! bytes written during the handshake: what an internet scanner records of
//! the sensor, kept so that an analyst can compare it with the real server's.
//!
//! JA3S: `md5("version,cipher,extensions")`, decimal, extensions in the
//! order sent, joined by `-`.
//! JA4S (FoxIO's JA4+): `t<ver><nn extensions><alpn>_<cipher, 4 hex>_<sha256 of
//! the extensions in order, 12 hex>`.

use super::client_hello::{Reader, first_handshake, ja4_alpn, ja4_version};
use crate::escape::hex;
use md5::Md5;
use sha2::{Digest, Sha256};

/// What a ServerHello chose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub legacy_version: u16,
    pub cipher: u16,
    /// Extension types, in the order sent.
    pub extensions: Vec<u16>,
    /// From supported_versions (TLS 1.3), if sent.
    pub selected_version: Option<u16>,
    pub alpn: Option<Vec<u8>>,
}

/// The ServerHello at the start of `records` (the server's first bytes of
/// the handshake), or `None`.
pub fn parse(records: &[u8]) -> Option<ServerHello> {
    let handshake = first_handshake(records)?;
    let mut h = Reader { bytes: &handshake };
    if h.u8()? != 2 {
        return None;
    }
    let mut body = h.vec(3)?;
    let mut hello = ServerHello {
        legacy_version: body.u16()?,
        ..ServerHello::default()
    };
    body.take(32)?; // random
    body.vec(1)?; // session id
    hello.cipher = body.u16()?;
    body.u8()?; // compression method
    let Some(mut extensions) = body.vec(2) else {
        return Some(hello);
    };
    while let Some(kind) = extensions.u16() {
        let mut data = extensions.vec(2)?;
        hello.extensions.push(kind);
        match kind {
            43 => hello.selected_version = data.u16(),
            16 => {
                let mut list = data.vec(2)?;
                hello.alpn = list.vec(1).map(|p| p.bytes.to_vec());
            }
            _ => {}
        }
    }
    Some(hello)
}

impl ServerHello {
    pub fn ja3s_string(&self) -> String {
        let extensions: Vec<String> = self.extensions.iter().map(u16::to_string).collect();
        format!(
            "{},{},{}",
            self.legacy_version,
            self.cipher,
            extensions.join("-")
        )
    }

    pub fn ja3s(&self) -> String {
        hex(&Md5::digest(self.ja3s_string().as_bytes()))
    }

    pub fn ja4s(&self) -> String {
        let version = ja4_version(self.selected_version.unwrap_or(self.legacy_version));
        let alpn = ja4_alpn(self.alpn.as_deref());
        let extensions: Vec<String> = self.extensions.iter().map(|e| format!("{e:04x}")).collect();
        let hash = if extensions.is_empty() {
            "000000000000".to_string()
        } else {
            hex(&Sha256::digest(extensions.join(",").as_bytes()))[..12].to_string()
        };
        format!(
            "t{version}{:02}{alpn}_{:04x}_{hash}",
            self.extensions.len().min(99),
            self.cipher
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS 1.3 ServerHello: TLS_AES_256_GCM_SHA384, supported_versions then key_share.
    fn sample() -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[9u8; 32]);
        body.push(0);
        body.extend_from_slice(&[0x13, 0x02, 0]);
        let exts: Vec<u8> = [
            &[0, 43, 0, 2, 3, 4][..],
            &[0, 51, 0, 6, 0, 29, 0, 2, 0xaa, 0xbb][..],
        ]
        .concat();
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![2];
        hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        let mut record = vec![22, 3, 3];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    #[test]
    fn fingerprints_of_a_known_server_hello() {
        let hello = parse(&sample()).unwrap();
        assert_eq!(hello.ja3s_string(), "771,4866,43-51");
        assert_eq!(hello.ja3s(), hex(&Md5::digest(b"771,4866,43-51")));
        let expected_hash = &hex(&Sha256::digest(b"002b,0033"))[..12];
        assert_eq!(hello.ja4s(), format!("t130200_1302_{expected_hash}"));
    }

    #[test]
    fn truncated_or_garbage_input_is_none_never_a_panic() {
        let full = sample();
        for end in 0..full.len() {
            let _ = parse(&full[..end]);
        }
        assert!(parse(&full[..20]).is_none());
        assert!(parse(b"220 mx ESMTP\r\n").is_none());
    }
}
