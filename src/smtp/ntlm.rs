//! NTLM over SMTP AUTH (MS-NLMP), as Exchange speaks it: the client's
//! NEGOTIATE (type 1) gets a CHALLENGE (type 2) naming a believable Windows
//! host, and the client's AUTHENTICATE (type 3) is taken apart for the
//! record: user, domain, workstation and the NTLMv2 (or v1) response, written
//! as the line hashcat cracks offline (modes 5600 and 5500).
//!
//! Every length and offset in a client's message is checked against the
//! message; nothing here trusts the client.

/// `NTLMSSP\0`.
const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// What Windows Server answers with: UNICODE, REQUEST_TARGET, SIGN, NTLM,
/// ALWAYS_SIGN, TARGET_TYPE_DOMAIN, EXTENDED_SESSIONSECURITY, TARGET_INFO,
/// VERSION, 128, KEY_EXCH, 56.
const CHALLENGE_FLAGS: u32 = 0xE289_8215;
const NEGOTIATE_UNICODE: u32 = 0x0000_0001;

/// The names a challenge carries (see `persona::NtlmNames`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub netbios_domain: String,
    pub netbios_computer: String,
    pub dns_domain: String,
    pub dns_computer: String,
    pub os_version: [u16; 3],
}

impl Target {
    /// Fills what the persona leaves empty from our host name, so that the
    /// names agree with each other and with the greeting:
    /// `mail.corp.example.com` is computer `MAIL` in domain `CORP`
    /// (`corp.example.com`).
    pub fn new(
        host: &str,
        netbios_domain: &str,
        netbios_computer: &str,
        dns_domain: &str,
        os_version: [u16; 3],
    ) -> Target {
        let host = host.trim_end_matches('.');
        let (first, rest) = host.split_once('.').unwrap_or((host, ""));
        let dns_domain = if dns_domain.is_empty() {
            if rest.is_empty() { "localdomain" } else { rest }.to_ascii_lowercase()
        } else {
            dns_domain.to_ascii_lowercase()
        };
        let netbios = |name: &str| -> String {
            let mut n: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect::<String>()
                .to_ascii_uppercase();
            n.truncate(15);
            if n.is_empty() { "WORKGROUP".into() } else { n }
        };
        let netbios_computer = if netbios_computer.is_empty() {
            netbios(first)
        } else {
            netbios(netbios_computer)
        };
        let netbios_domain = if netbios_domain.is_empty() {
            netbios(dns_domain.split('.').next().unwrap_or(""))
        } else {
            netbios(netbios_domain)
        };
        let dns_computer = if host.contains('.') {
            host.to_ascii_lowercase()
        } else {
            format!("{}.{dns_domain}", host.to_ascii_lowercase())
        };
        Target {
            netbios_domain,
            netbios_computer,
            dns_domain,
            dns_computer,
            os_version,
        }
    }
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Microseconds are enough: FILETIME counts 100 ns since 1601.
pub fn filetime(unix_seconds: u64) -> u64 {
    (unix_seconds + 11_644_473_600) * 10_000_000
}

/// The CHALLENGE (type 2) message.
pub fn challenge(target: &Target, server_challenge: [u8; 8], filetime: u64) -> Vec<u8> {
    let target_name = utf16(&target.netbios_domain);
    let mut info = Vec::new();
    let mut pair = |id: u16, value: &[u8]| {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(value);
    };
    pair(2, &utf16(&target.netbios_domain));
    pair(1, &utf16(&target.netbios_computer));
    pair(4, &utf16(&target.dns_domain));
    pair(3, &utf16(&target.dns_computer));
    pair(5, &utf16(&target.dns_domain));
    pair(7, &filetime.to_le_bytes());
    pair(0, &[]);

    const HEADER: usize = 56;
    let mut m = Vec::with_capacity(HEADER + target_name.len() + info.len());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    // TargetNameFields: length, maximum length, offset.
    m.extend_from_slice(&(target_name.len() as u16).to_le_bytes());
    m.extend_from_slice(&(target_name.len() as u16).to_le_bytes());
    m.extend_from_slice(&(HEADER as u32).to_le_bytes());
    m.extend_from_slice(&CHALLENGE_FLAGS.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0; 8]);
    let info_offset = HEADER + target_name.len();
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info_offset as u32).to_le_bytes());
    // Version: major, minor, build, three reserved bytes, NTLM revision 15.
    let [major, minor, build] = target.os_version;
    m.push(major as u8);
    m.push(minor as u8);
    m.extend_from_slice(&build.to_le_bytes());
    m.extend_from_slice(&[0, 0, 0, 15]);
    m.extend_from_slice(&target_name);
    m.extend_from_slice(&info);
    m
}

fn u16_at(m: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(m.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(m: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(m.get(at..at + 4)?.try_into().ok()?))
}

/// The bytes a security buffer (length, maximum, offset) at `at` points to.
fn field(m: &[u8], at: usize) -> Option<&[u8]> {
    let len = u16_at(m, at)? as usize;
    let offset = u32_at(m, at + 4)? as usize;
    m.get(offset..offset.checked_add(len)?)
}

/// The message type (1, 2 or 3), if `m` is an NTLMSSP message at all.
pub fn message_type(m: &[u8]) -> Option<u32> {
    (m.get(..8)? == SIGNATURE).then(|| u32_at(m, 8)).flatten()
}

/// What an AUTHENTICATE (type 3) message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    pub user: Vec<u8>,
    pub domain: Vec<u8>,
    pub workstation: Vec<u8>,
    pub lm_response: Vec<u8>,
    pub nt_response: Vec<u8>,
}

/// Strings are UTF-16LE when the client negotiated Unicode, else its OEM
/// code page; UTF-16 is converted to UTF-8 (lossily), OEM kept as sent.
fn text(bytes: &[u8], unicode: bool) -> Vec<u8> {
    if unicode {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units).into_bytes()
    } else {
        bytes.to_vec()
    }
}

pub fn parse_authenticate(m: &[u8]) -> Option<Authenticate> {
    if message_type(m)? != 3 {
        return None;
    }
    let flags = u32_at(m, 60).unwrap_or(NEGOTIATE_UNICODE);
    let unicode = flags & NEGOTIATE_UNICODE != 0;
    Some(Authenticate {
        lm_response: field(m, 12)?.to_vec(),
        nt_response: field(m, 20)?.to_vec(),
        domain: text(field(m, 28)?, unicode),
        user: text(field(m, 36)?, unicode),
        workstation: text(field(m, 44)?, unicode),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The response as hashcat wants it: NetNTLMv2 (mode 5600) for a response
/// longer than 24 bytes, NetNTLMv1 (mode 5500) otherwise. `None` for an
/// anonymous attempt (no NT response).
pub fn crackable(a: &Authenticate, server_challenge: &[u8]) -> Option<String> {
    let user = String::from_utf8_lossy(&a.user);
    let domain = String::from_utf8_lossy(&a.domain);
    let challenge = hex(server_challenge);
    match a.nt_response.len() {
        0 => None,
        n if n > 24 => Some(format!(
            "{user}::{domain}:{challenge}:{}:{}",
            hex(&a.nt_response[..16]),
            hex(&a.nt_response[16..])
        )),
        _ => Some(format!(
            "{user}::{domain}:{}:{}:{challenge}",
            hex(&a.lm_response),
            hex(&a.nt_response)
        )),
    }
}

/// The server challenge inside a CHALLENGE message we made.
pub fn server_challenge(challenge_message: &[u8]) -> &[u8] {
    challenge_message.get(24..32).unwrap_or(&[])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An AUTHENTICATE message as a client builds one (Unicode strings).
    pub(crate) fn authenticate(user: &str, domain: &str, ws: &str, nt: &[u8]) -> Vec<u8> {
        let lm = [0u8; 24];
        let (d, u, w) = (utf16(domain), utf16(user), utf16(ws));
        let mut payload = Vec::new();
        let mut fields = Vec::new();
        let base = 72usize;
        for part in [&lm[..], nt, &d, &u, &w, &[][..]] {
            let offset = base + payload.len();
            fields.extend_from_slice(&(part.len() as u16).to_le_bytes());
            fields.extend_from_slice(&(part.len() as u16).to_le_bytes());
            fields.extend_from_slice(&(offset as u32).to_le_bytes());
            payload.extend_from_slice(part);
        }
        let mut m = Vec::new();
        m.extend_from_slice(SIGNATURE);
        m.extend_from_slice(&3u32.to_le_bytes());
        m.extend_from_slice(&fields);
        m.extend_from_slice(&CHALLENGE_FLAGS.to_le_bytes());
        m.extend_from_slice(&[0; 8]);
        assert_eq!(m.len(), base);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn names_are_derived_coherently_from_the_host() {
        let t = Target::new("mail.corp.example.com", "", "", "", [10, 0, 17763]);
        assert_eq!(t.netbios_computer, "MAIL");
        assert_eq!(t.netbios_domain, "CORP");
        assert_eq!(t.dns_domain, "corp.example.com");
        assert_eq!(t.dns_computer, "mail.corp.example.com");
        let t = Target::new("ex01", "CONTOSO", "", "contoso.local", [10, 0, 17763]);
        assert_eq!(t.dns_computer, "ex01.contoso.local");
        assert_eq!(t.netbios_domain, "CONTOSO");
    }

    #[test]
    fn challenge_has_the_names_at_the_offsets_it_declares() {
        let t = Target::new("mail.corp.example.com", "", "", "", [10, 0, 17763]);
        let m = challenge(&t, *b"\x01\x02\x03\x04\x05\x06\x07\x08", filetime(0));
        assert_eq!(message_type(&m), Some(2));
        assert_eq!(field(&m, 12).unwrap(), &utf16("CORP")[..]);
        assert_eq!(server_challenge(&m), b"\x01\x02\x03\x04\x05\x06\x07\x08");
        let info = field(&m, 40).unwrap();
        // The AV pairs end with MsvAvEOL.
        assert_eq!(&info[info.len() - 4..], &[0, 0, 0, 0]);
        let computer = utf16("MAIL");
        assert!(info.windows(computer.len()).any(|w| w == &computer[..]));
        assert_eq!(&m[48..52], &[10, 0, 0x63, 0x45]);
    }

    #[test]
    fn authenticate_gives_a_hashcat_line() {
        let mut nt = vec![0xAAu8; 16];
        nt.extend_from_slice(&[0x01, 0x01, 0, 0, 0, 0, 0, 0, 0xBB]);
        let m = authenticate("alice", "CORP", "WS01", &nt);
        let a = parse_authenticate(&m).unwrap();
        assert_eq!(a.user, b"alice");
        assert_eq!(a.domain, b"CORP");
        assert_eq!(a.workstation, b"WS01");
        let line = crackable(&a, &[0x11; 8]).unwrap();
        assert_eq!(
            line,
            format!(
                "alice::CORP:1111111111111111:{}:0101000000000000bb",
                "aa".repeat(16)
            )
        );
    }

    #[test]
    fn hostile_offsets_are_refused() {
        let mut m = authenticate("a", "b", "c", &[1; 24]);
        // NT response offset far past the end.
        m[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_authenticate(&m), None);
        assert_eq!(parse_authenticate(b"NTLMSSP\0\x03\0\0\0"), None);
        assert_eq!(message_type(b"garbage"), None);
    }
}
