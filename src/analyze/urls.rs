//! URLs in message bodies, found without fetching or resolving anything.
//!
//! - Text: every `http://` or `https://` (any case) up to a space, a control
//!   character or one of `<>"'` and backtick, with trailing punctuation
//!   (`.,;:!?` and an unbalanced `)`) taken off.
//! - HTML: the same over the text, plus the values of `href`, `src`,
//!   `action`, `formaction` and `background` attributes, entity-decoded
//!   (`h&#116;tp://` is a link to a browser) and stripped of the tabs and
//!   line breaks browsers ignore.
//!
//! Scheme and authority are lower-cased; the rest is kept as sent. Each
//! scan is linear in its input; a URL is cut at [`MAX_URL_LEN`] bytes (before lower-casing) and at
//! most [`MAX_URLS`] distinct URLs are kept per message.

use std::collections::BTreeSet;

pub const MAX_URL_LEN: usize = 2048;
pub const MAX_URLS: usize = 1000;

/// The distinct URLs of one message, sorted.
#[derive(Debug, Default)]
pub struct Urls {
    pub found: BTreeSet<String>,
    /// Distinct URLs past [`MAX_URLS`], not kept.
    pub dropped: usize,
}

impl Urls {
    fn add(&mut self, candidate: &str) {
        let Some(url) = canonical(candidate) else {
            return;
        };
        if self.found.len() >= MAX_URLS {
            if !self.found.contains(&url) {
                self.dropped += 1;
            }
            return;
        }
        self.found.insert(url);
    }
}

/// Byte offsets where `http://` or `https://` starts, any case.
fn scheme_at(bytes: &[u8], i: usize) -> Option<usize> {
    let rest = bytes.get(i..)?;
    for scheme in [&b"https://"[..], b"http://"] {
        if rest.len() >= scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(scheme.len());
        }
    }
    None
}

fn ends_url(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | '\'' | '`')
}

/// URLs in plain text.
pub fn from_text(text: &str, out: &mut Urls) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !matches!(bytes[i], b'h' | b'H') {
            i += 1;
            continue;
        }
        let Some(scheme_len) = scheme_at(bytes, i) else {
            i += 1;
            continue;
        };
        // `i` is at an ASCII byte, so a char boundary.
        let rest = &text[i + scheme_len..];
        let len = rest.find(ends_url).unwrap_or(rest.len());
        out.add(trim_trailing(cut(
            &text[i..i + scheme_len + len],
            MAX_URL_LEN,
        )));
        i += scheme_len + len.max(1);
    }
}

/// Takes off punctuation that ends a sentence rather than the URL.
fn trim_trailing(url: &str) -> &str {
    let mut open = url.matches('(').count();
    let mut close = url.matches(')').count();
    let mut url = url;
    while let Some(last) = url.chars().next_back() {
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | ']' | '}' | '*' => true,
            ')' => open < close,
            _ => false,
        };
        if !strip {
            break;
        }
        if last == ')' {
            close -= 1;
        } else if last == '(' {
            open -= 1;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
    url
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Lower-cases scheme and authority; None when there is no host.
fn canonical(url: &str) -> Option<String> {
    host(url)?;
    let after = url.find("://")? + 3;
    let authority_len = url[after..]
        .find(['/', '?', '#', '\\'])
        .unwrap_or(url.len() - after);
    let mut out = url[..after + authority_len].to_lowercase();
    out.push_str(&url[after + authority_len..]);
    Some(out)
}

/// The host of a URL, lower-case, without user, port or trailing dot.
pub fn host(url: &str) -> Option<String> {
    let after = url.find("://")? + 3;
    let rest = &url[after..];
    let authority = &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        &v6[..v6.find(']')?]
    } else {
        match host_port.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host_port,
        }
    };
    let host = host.trim_end_matches('.').to_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Attributes whose value a browser loads or follows.
const URL_ATTRIBUTES: &[&str] = &["href", "src", "action", "formaction", "background"];

/// URLs in HTML: link attributes and the text. Returns the text
/// ([`text_of_html`]).
pub fn from_html(html: &str, out: &mut Urls) -> String {
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let Some(attribute) = URL_ATTRIBUTES.iter().find(|a| {
            bytes.len() - i >= a.len() && bytes[i..i + a.len()].eq_ignore_ascii_case(a.as_bytes())
        }) else {
            i += 1;
            continue;
        };
        // An attribute name stands alone: `data-href=` or `hrefx=` are not it.
        let before_ok = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-');
        let mut j = i + attribute.len();
        if !before_ok {
            i = j;
            continue;
        }
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if bytes.get(j) != Some(&b'=') {
            i = j.max(i + 1);
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let (start, end) = match bytes.get(j) {
            Some(&q @ (b'"' | b'\'')) => {
                let end = memchr::memchr(q, &bytes[j + 1..]).map_or(bytes.len(), |e| j + 1 + e);
                (j + 1, end)
            }
            _ => {
                let end = bytes[j..]
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || *b == b'>')
                    .map_or(bytes.len(), |e| j + e);
                (j, end)
            }
        };
        // Quotes, spaces and `>` are ASCII: these are char boundaries.
        let value: String = decode_entities(&html[start..end])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let value = value.trim();
        if value.len() >= 7 && scheme_at(value.as_bytes(), 0).is_some() {
            out.add(cut(value, MAX_URL_LEN));
        }
        i = end.max(i + 1);
    }
    let text = text_of_html(html);
    from_text(&text, out);
    text
}

/// HTML without tags and comments, entities decoded; block tags become line
/// breaks, other tags spaces.
pub fn text_of_html(html: &str) -> String {
    let mut text = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        text.push_str(&decode_entities(&rest[..lt]));
        let tag = &rest[lt..];
        let (skip, block) = if tag.starts_with("<!--") {
            (tag.find("-->").map_or(tag.len(), |e| e + 3), false)
        } else {
            let end = tag.find('>').map_or(tag.len(), |e| e + 1);
            (end, is_block(&tag[..end]))
        };
        text.push(if block { '\n' } else { ' ' });
        rest = &tag[skip..];
    }
    text.push_str(&decode_entities(rest));
    text
}

fn is_block(tag: &str) -> bool {
    let name: String = tag
        .trim_start_matches(['<', '/'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .take(10)
        .collect::<String>()
        .to_ascii_lowercase();
    matches!(
        name.as_str(),
        "br" | "p"
            | "div"
            | "tr"
            | "li"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "table"
            | "blockquote"
            | "hr"
            | "title"
    )
}

/// Decodes `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&nbsp;` and numeric
/// references; anything else is kept as is.
pub fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        // Entities are short; a missing `;` within 12 bytes means none.
        let semi = tail.as_bytes().iter().take(12).position(|&b| b == b';');
        let decoded = semi.and_then(|semi| {
            let name = &tail[1..semi];
            let c = match name {
                "amp" | "AMP" => Some('&'),
                "lt" | "LT" => Some('<'),
                "gt" | "GT" => Some('>'),
                "quot" | "QUOT" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => {
                    let num = name.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse::<u32>().ok()?,
                    };
                    Some(char::from_u32(code).unwrap_or('\u{fffd}'))
                }
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &tail[len..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Vec<String> {
        let mut urls = Urls::default();
        from_text(s, &mut urls);
        urls.found.into_iter().collect()
    }

    fn html(s: &str) -> Vec<String> {
        let mut urls = Urls::default();
        from_html(s, &mut urls);
        urls.found.into_iter().collect()
    }

    #[test]
    fn text_urls() {
        assert_eq!(
            text("Visit HTTP://Example.COM/Path?a=B. Or (see https://x.example/a_(b)), now!"),
            ["http://example.com/Path?a=B", "https://x.example/a_(b)"]
        );
        assert_eq!(text("<http://a.example/x>"), ["http://a.example/x"]);
        assert!(text("http:// nothing").is_empty());
        assert!(text("https://").is_empty());
        assert_eq!(text("http://http://h.example"), ["http://http://h.example"]);
    }

    #[test]
    fn html_urls() {
        let found = html(
            "<a HREF = 'http://a.example/?x=1&amp;y=2'>click</a>\
             <img src=h&#116;tps://b.example/i.png><a data-href=\"http://no.example/\">\
             <form action=\"javascript:void(0)\">see https://c.example/t&amp;c</form>",
        );
        assert_eq!(
            found,
            [
                "http://a.example/?x=1&y=2",
                "https://b.example/i.png",
                "https://c.example/t&c"
            ]
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host("http://user:pw@WWW.Example.com.:8080/x").unwrap(),
            "www.example.com"
        );
        assert_eq!(host("http://[2001:db8::1]:80/").unwrap(), "2001:db8::1");
        assert_eq!(host("https://a.example?q").unwrap(), "a.example");
        assert!(host("http:///path").is_none());
    }

    #[test]
    fn hostile_inputs_are_linear_and_safe() {
        let big = "http://".repeat(200_000);
        let start = std::time::Instant::now();
        let _ = text(&big);
        let _ = html(&"<a href=".repeat(200_000));
        let _ = html(&"&#".repeat(200_000));
        let _ = html(&"<!--".repeat(200_000));
        let _ = html("<!--");
        let _ = html("href=\"");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}
