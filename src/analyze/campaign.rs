//! Campaigns: messages whose decoded body is the same text once what varies
//! per recipient is taken out.
//!
//! The body is the message's text parts (HTML ones reduced to their text,
//! [`super::urls::text_of_html`]), joined by line breaks, at most
//! [`MAX_TEXT`] bytes of it. Normalisation, in this order:
//!
//! 1. leading blank lines go, then the first line if it is a greeting
//!    ("Dear ...", "Hello ...", "Hi ...", "Hey ...", "Greetings...",
//!    "Good morning/afternoon/evening/day...", "Attention ...", "Attn ...")
//!    of at most 100 characters;
//! 2. lower case;
//! 3. the text is cut into words at white space (so runs of white space
//!    count as one space);
//! 4. a word with an `@` between other characters (an address) becomes
//!    `<email>`; in a word holding a URL (`://` or `www.`), the query string
//!    and fragment become `?<q>`;
//! 5. every run of digits becomes `#`.
//!
//! The campaign id is the sha256 (hex) of the words joined by single spaces.
//! A body with no words belongs to no campaign.

use crate::escape::hex;
use sha2::{Digest, Sha256};

/// Body text looked at per message, in bytes.
pub const MAX_TEXT: usize = 4 * 1024 * 1024;
/// Characters of normalised text kept as the campaign's sample.
const SAMPLE_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Campaign {
    /// sha256 of the normalised text.
    pub id: String,
    /// The start of the normalised text.
    pub sample: String,
}

/// The campaign of a body, if it has any text.
pub fn campaign(body: &str) -> Option<Campaign> {
    let text = normalise(body);
    if text.is_empty() {
        return None;
    }
    Some(Campaign {
        id: hex(&Sha256::digest(text.as_bytes())),
        sample: text.chars().take(SAMPLE_CHARS).collect(),
    })
}

const GREETINGS: &[&str] = &[
    "dear",
    "hello",
    "hi",
    "hey",
    "greetings",
    "attention",
    "attn",
    "good morning",
    "good afternoon",
    "good evening",
    "good day",
];

fn is_greeting(line: &str) -> bool {
    let line = line.trim();
    if line.chars().count() > 100 {
        return false;
    }
    let lower = line.to_lowercase();
    GREETINGS.iter().any(|g| {
        lower.strip_prefix(g).is_some_and(|rest| {
            // The greeting must be a whole word: "Hi," but not "History".
            rest.chars().next().is_none_or(|c| !c.is_alphanumeric())
        })
    })
}

/// The normalised text of `body` (see the module documentation).
pub fn normalise(body: &str) -> String {
    let mut end = body.len().min(MAX_TEXT);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let body = &body[..end];
    let mut lines = body.lines().skip_while(|l| l.trim().is_empty()).peekable();
    if lines.peek().is_some_and(|l| is_greeting(l)) {
        lines.next();
    }
    let mut out = String::with_capacity(body.len());
    for line in lines {
        for word in line.split_whitespace() {
            let word = word.to_lowercase();
            let word = if is_address(&word) {
                "<email>".to_string()
            } else if word.contains("://") || word.contains("www.") {
                match word.find(['?', '#']) {
                    Some(q) => format!("{}?<q>", &word[..q]),
                    None => word,
                }
            } else {
                word
            };
            if !out.is_empty() {
                out.push(' ');
            }
            push_without_digits(&word, &mut out);
        }
    }
    out
}

fn is_address(word: &str) -> bool {
    !word.contains("://")
        && word
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
}

fn push_without_digits(word: &str, out: &mut String) {
    let mut in_digits = false;
    for c in word.chars() {
        if c.is_numeric() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings_recipients_and_numbers_do_not_matter() {
        let a = campaign(
            "Dear Alice,\r\n\r\nYour  account 12345 at bank@example.com is suspended.\r\n\
             Visit http://phish.example/login?id=777&u=alice now.\r\n",
        )
        .unwrap();
        let b = campaign(
            "\nHello Bob!\nYour account 9 at Support@Example.COM is\tsuspended.\n\
             Visit http://phish.example/login?id=1&u=bob now.",
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            normalise(
                "Hi Carol\nYour account 5 at x@y.example is suspended. Visit http://phish.example/login?z now."
            ),
            "your account # at <email> is suspended. visit http://phish.example/login?<q> now."
        );
        assert_eq!(
            a.id,
            hex(&Sha256::digest(
                "your account # at <email> is suspended. visit http://phish.example/login?<q> now."
            ))
        );
    }

    #[test]
    fn a_first_line_that_is_not_a_greeting_stays() {
        assert_eq!(
            normalise("History repeats\nitself"),
            "history repeats itself"
        );
        assert_eq!(normalise("Hi"), "");
        assert!(campaign(" \r\n\t").is_none());
    }
}
