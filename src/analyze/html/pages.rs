//! The pages: one layout, a page per report table (generic over the
//! table's columns: the rows come from `data/<table>-<n>.js`), the
//! dashboard and the session view. Every value put into HTML here goes
//! through [`escape`]; the browser side only ever uses `textContent`.

use std::fmt::Write;

/// A page listing one of the report's tables.
pub struct TablePage {
    pub table: &'static str,
    pub title: &'static str,
}

/// The table pages, in menu order. A table missing from the report (say,
/// `denied` before deny lists exist) gets no page.
pub const TABLE_PAGES: &[TablePage] = &[
    TablePage {
        table: "sessions",
        title: "Sessions",
    },
    TablePage {
        table: "messages",
        title: "Messages",
    },
    TablePage {
        table: "recipients",
        title: "Recipients",
    },
    TablePage {
        table: "credentials",
        title: "Credentials",
    },
    TablePage {
        table: "attachments",
        title: "Attachments",
    },
    TablePage {
        table: "clients",
        title: "Clients",
    },
    TablePage {
        table: "campaigns",
        title: "Campaigns",
    },
    TablePage {
        table: "urls",
        title: "URLs",
    },
    TablePage {
        table: "domains",
        title: "Domains",
    },
    TablePage {
        table: "lookups",
        title: "OSINT lookups",
    },
    TablePage {
        table: "errors",
        title: "Errors",
    },
    TablePage {
        table: "denied",
        title: "Denied",
    },
];

/// Nothing loads but our own files: no network, no inline script or style.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; base-uri 'none'; form-action 'none'";

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `body` is HTML already escaped, `scripts` our own files.
pub fn page(
    title: &str,
    active: &str,
    tables: &[&str],
    body_attrs: &str,
    body: &str,
    scripts: &[String],
) -> String {
    let mut nav = String::new();
    let mut link = |file: &str, name: &str| {
        let class = if name == active {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{file}\"{class}>{}</a>", escape(name));
    };
    link("index.html", "Dashboard");
    for p in TABLE_PAGES.iter().filter(|p| tables.contains(&p.table)) {
        link(&format!("{}.html", p.table), p.title);
    }
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · latrine</title>\n<link rel=\"stylesheet\" href=\"assets/report.css\">\n\
         </head>\n<body{body_attrs}>\n<nav><span class=\"brand\">latrine</span>{nav}</nav>\n\
         <main>\n{body}\n</main>\n<script src=\"assets/report.js\"></script>\n",
        escape(title)
    );
    for src in scripts {
        let _ = writeln!(s, "<script src=\"{}\"></script>", escape(src));
    }
    s.push_str("</body>\n</html>\n");
    s
}

/// The page of a table: its rows are drawn by report.js.
pub fn table_page(p: &TablePage, tables: &[&str], chunks: usize, rows: u64) -> String {
    let mut scripts = vec![format!("data/{}.js", p.table)];
    scripts.extend((0..chunks).map(|i| format!("data/{}-{i}.js", p.table)));
    let body = format!(
        "<h1>{}</h1>\n<div class=\"controls\"><input id=\"filter\" type=\"search\" \
         placeholder=\"Filter (all columns)\" autocomplete=\"off\"> <span id=\"count\">{rows} rows</span>\
         <span class=\"pager\"><button id=\"prev\" type=\"button\">‹ Previous</button> \
         <span id=\"page\"></span> <button id=\"next\" type=\"button\">Next ›</button></span></div>\n\
         <div class=\"scroll\"><table id=\"table\"><thead></thead><tbody id=\"rows\"></tbody></table></div>",
        escape(p.title)
    );
    page(
        p.title,
        p.title,
        tables,
        &format!(" data-table=\"{}\"", escape(p.table)),
        &body,
        &scripts,
    )
}

/// The session view: report.js reads the session number from the URL's
/// fragment and loads its shard.
pub fn session_page(tables: &[&str]) -> String {
    let body = "<h1 id=\"title\">Session</h1>\n<div id=\"session\"><p>Loading…</p></div>";
    page("Session", "", tables, " id=\"session-view\"", body, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<a href=\"x\" onclick='y'>&amp;</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn every_page_has_the_csp_and_no_inline_script() {
        let p = &TABLE_PAGES[1];
        let html = table_page(p, &["sessions", "messages"], 2, 7);
        assert!(html.contains(&format!("content=\"{CSP}\"")));
        assert!(html.contains("<script src=\"data/messages-1.js\"></script>"));
        assert_eq!(
            html.matches("<script").count(),
            html.matches("<script src=").count()
        );
        // Only tables the report has are in the menu.
        assert!(html.contains("href=\"sessions.html\""));
        assert!(!html.contains("href=\"denied.html\""));
    }
}
