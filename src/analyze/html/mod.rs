//! The offline HTML report, `DIR/html/`: a dashboard with charts, a page
//! per report table and a view of each session. It opens from the file
//! system with no server and loads nothing from anywhere else: every page
//! carries a Content-Security-Policy that allows only its own files, and
//! no inline script or style.
//!
//! - Tables are generic: every row [`super::report::Output`] writes is
//!   also handed to [`HtmlReport::row`], and lands, as a JSON array, in
//!   `data/<table>-<n>.js` (chunks of [`CHUNK_ROWS`]); the page of a table
//!   loads them by `<script src>` (a page from `file://` cannot fetch
//!   JSON), and report.js sorts, filters and pages them in the browser.
//! - Session views ([`session_view`]) are bounded shards of JSON.
//! - Charts ([`charts`]) are SVG drawn by plotters, inline in index.html.
//! - Attackers' strings are HTML-escaped here and set with `textContent`
//!   in the browser; an HTML body is only ever shown as escaped source.
//! - Deterministic: rows come in report order, counters are sorted, and
//!   nothing about the run (time, paths of the output) is written, so two
//!   runs over the same spool give the same bytes.
//!
//! Written under `DIR/.html.partial/` and renamed to `DIR/html/` at the end.

mod charts;
mod dashboard;
pub mod pages;
mod session_view;

use super::load::LoadedSession;
use super::report::{Row, TABLES};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Rows per data file of a table.
pub const CHUNK_ROWS: usize = 5_000;

const REPORT_JS: &str = include_str!("assets/report.js");
const REPORT_CSS: &str = include_str!("assets/report.css");

struct TableData {
    name: &'static str,
    columns: &'static [&'static str],
    rows: u64,
    chunk: Vec<u8>,
    chunk_rows: usize,
    chunks: usize,
}

pub struct HtmlReport {
    temp: PathBuf,
    target: PathBuf,
    tables: Vec<TableData>,
    dashboard: dashboard::Dashboard,
    views: session_view::Shards,
}

impl HtmlReport {
    /// Starts a report under `out/.html.partial/`.
    pub fn open(out: &Path) -> io::Result<HtmlReport> {
        let temp = out.join(".html.partial");
        if std::fs::symlink_metadata(&temp).is_ok() {
            std::fs::remove_dir_all(&temp)?;
        }
        for sub in ["data", "sessions", "assets"] {
            std::fs::create_dir_all(temp.join(sub))?;
        }
        Ok(HtmlReport {
            views: session_view::Shards::new(temp.join("sessions")),
            target: out.join("html"),
            temp,
            tables: TABLES
                .iter()
                .map(|&(name, columns)| TableData {
                    name,
                    columns,
                    rows: 0,
                    chunk: Vec::new(),
                    chunk_rows: 0,
                    chunks: 0,
                })
                .collect(),
            dashboard: dashboard::Dashboard::default(),
        })
    }

    /// One row of a report table.
    pub fn row(&mut self, table: &str, row: &Row) -> io::Result<()> {
        self.dashboard.row(table, row);
        let Some(t) = self.tables.iter_mut().find(|t| t.name == table) else {
            return Ok(());
        };
        t.chunk
            .extend_from_slice(if t.chunk_rows == 0 { b"[\n[" } else { b",\n[" });
        for (i, (_, cell)) in row.iter().enumerate() {
            if i > 0 {
                t.chunk.push(b',');
            }
            cell.json(&mut t.chunk);
        }
        t.chunk.push(b']');
        t.chunk_rows += 1;
        t.rows += 1;
        if t.chunk_rows == CHUNK_ROWS {
            flush_chunk(&self.temp, t)?;
        }
        Ok(())
    }

    /// One session, after its `sessions` row: its view and its share of
    /// the dashboard.
    pub fn session(&mut self, s: &LoadedSession) -> io::Result<()> {
        self.dashboard.session(s);
        self.views.add(s)
    }

    /// Writes the pages and renames the report into place.
    pub fn finish(mut self, summary: &serde_json::Value) -> io::Result<()> {
        self.views.flush()?;
        let names: Vec<&str> = self.tables.iter().map(|t| t.name).collect();
        for t in &mut self.tables {
            flush_chunk(&self.temp, t)?;
            let columns = serde_json::to_string(t.columns).map_err(io::Error::other)?;
            write_file(
                &self.temp.join("data").join(format!("{}.js", t.name)),
                format!(
                    "LATRINE.table({:?},{columns},{},{});\n",
                    t.name, t.rows, t.chunks
                )
                .as_bytes(),
            )?;
        }
        for p in pages::TABLE_PAGES {
            if let Some(t) = self.tables.iter().find(|t| t.name == p.table) {
                let html = pages::table_page(p, &names, t.chunks, t.rows);
                write_file(
                    &self.temp.join(format!("{}.html", p.table)),
                    html.as_bytes(),
                )?;
            }
        }
        let session_page = pages::session_page(&names);
        write_file(&self.temp.join("session.html"), session_page.as_bytes())?;
        let rows = |name: &str| {
            self.tables
                .iter()
                .find(|t| t.name == name)
                .map_or(0, |t| t.rows)
        };
        let index = self
            .dashboard
            .page(summary, &names, rows("lookups"))
            .map_err(io::Error::other)?;
        write_file(&self.temp.join("index.html"), index.as_bytes())?;
        write_file(
            &self.temp.join("assets/report.js"),
            format!(
                "{REPORT_JS}LATRINE.perShard = {};\n",
                session_view::PER_SHARD
            )
            .as_bytes(),
        )?;
        write_file(&self.temp.join("assets/report.css"), REPORT_CSS.as_bytes())?;
        if std::fs::symlink_metadata(&self.target).is_ok() {
            std::fs::remove_dir_all(&self.target)?;
        }
        std::fs::rename(&self.temp, &self.target)
    }

    /// Throws away what was written (a failed run).
    pub fn abandon(self) {
        let _ = std::fs::remove_dir_all(&self.temp);
    }
}

fn flush_chunk(dir: &Path, t: &mut TableData) -> io::Result<()> {
    if t.chunk_rows == 0 {
        return Ok(());
    }
    let path = dir.join("data").join(format!("{}-{}.js", t.name, t.chunks));
    let mut f = io::BufWriter::new(std::fs::File::create(path)?);
    write!(f, "LATRINE.chunk({:?},", t.name)?;
    f.write_all(&t.chunk)?;
    f.write_all(b"\n]);\n")?;
    f.flush()?;
    t.chunk.clear();
    t.chunk_rows = 0;
    t.chunks += 1;
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    std::fs::write(path, bytes)
}
