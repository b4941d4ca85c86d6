// latrine's HTML report. Every value shown comes from attackers: it is
// only ever set with textContent, never parsed as HTML.
"use strict";
var LATRINE = {
  tables: {},
  shards: {},
  table: function (name, columns, rows, chunks) {
    this.tables[name] = { columns: columns, total: rows, chunks: chunks, rows: [] };
  },
  chunk: function (name, rows) {
    var t = this.tables[name];
    for (var i = 0; i < rows.length; i++) t.rows.push(rows[i]);
  },
  sessions: function (shard, list) {
    this.shards[shard] = list;
  }
};

(function () {
  var PAGE = 100;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function flag(iso) {
    if (typeof iso !== "string" || !/^[A-Z]{2}$/.test(iso)) return "";
    return String.fromCodePoint(0x1f1e6 + iso.charCodeAt(0) - 65, 0x1f1e6 + iso.charCodeAt(1) - 65) + " ";
  }

  function show(v) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v)) return v.join(", ");
    return String(v);
  }

  function compare(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    if (typeof a === "number" && typeof b === "number") return a - b;
    a = show(a); b = show(b);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function cell(name, column, value, index) {
    var td = el("td");
    if (name === "sessions" && column === "session_id") {
      var a = el("a", value);
      a.href = "session.html#" + index;
      td.appendChild(a);
    } else if (column === "country_iso") {
      td.textContent = flag(value) + show(value);
      td.className = "country";
    } else if (typeof value === "number") {
      td.textContent = show(value);
      td.className = "num";
    } else {
      var text = show(value);
      // Long values wrap in a box of bounded width; short ones stay on a line.
      if (text.length > 48) td.appendChild(el("div", text, "long"));
      else td.textContent = text;
    }
    return td;
  }

  function startTable(name) {
    var t = LATRINE.tables[name];
    if (!t) throw new Error("no data for table " + name);
    var rows = t.rows, columns = t.columns;
    var order = rows.map(function (_, i) { return i; });
    var view = order, page = 0, sortColumn = -1, descending = false, haystack = null;
    var head = document.querySelector("#table thead"), body = document.getElementById("rows");
    var count = document.getElementById("count"), pageLabel = document.getElementById("page");
    var tr = el("tr");
    columns.forEach(function (c, i) {
      var th = el("th", c);
      th.dataset.col = c;
      th.addEventListener("click", function () {
        descending = sortColumn === i ? !descending : false;
        sortColumn = i;
        head.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", descending ? "descending" : "ascending");
        order.sort(function (x, y) {
          var d = compare(rows[x][i], rows[y][i]);
          if (descending && rows[x][i] !== null && rows[y][i] !== null) d = -d;
          return d || x - y;
        });
        applyFilter();
      });
      tr.appendChild(th);
    });
    head.appendChild(tr);
    var filter = document.getElementById("filter"), needle = "";
    function applyFilter() {
      if (!needle) {
        view = order;
      } else {
        if (!haystack) haystack = rows.map(function (r) { return r.map(show).join("\u0001").toLowerCase(); });
        view = order.filter(function (i) { return haystack[i].indexOf(needle) >= 0; });
      }
      page = 0;
      render();
    }
    function render() {
      var pages = Math.max(1, Math.ceil(view.length / PAGE));
      if (page >= pages) page = pages - 1;
      var fragment = document.createDocumentFragment();
      view.slice(page * PAGE, page * PAGE + PAGE).forEach(function (i) {
        var r = el("tr");
        r.dataset.index = i;
        for (var c = 0; c < columns.length; c++) r.appendChild(cell(name, columns[c], rows[i][c], i));
        fragment.appendChild(r);
      });
      body.replaceChildren(fragment);
      count.textContent = view.length === rows.length ? rows.length + " rows" : view.length + " of " + rows.length + " rows";
      pageLabel.textContent = "page " + (page + 1) + " of " + pages;
    }
    var timer = null;
    filter.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { needle = filter.value.toLowerCase(); applyFilter(); }, 120);
    });
    document.getElementById("prev").addEventListener("click", function () { if (page > 0) { page--; render(); } });
    document.getElementById("next").addEventListener("click", function () { page++; render(); });
    render();
    document.body.dataset.ready = "true";
  }

  function details(pairs) {
    var dl = el("dl");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || (Array.isArray(p[1]) && !p[1].length)) return;
      dl.appendChild(el("dt", p[0]));
      dl.appendChild(el("dd", show(p[1])));
    });
    return dl;
  }

  function grid(columns, rows) {
    var table = el("table"), head = el("tr");
    columns.forEach(function (c) { head.appendChild(el("th", c)); });
    table.appendChild(el("thead")).appendChild(head);
    var body = table.appendChild(el("tbody"));
    rows.forEach(function (r) {
      var tr = body.appendChild(el("tr"));
      r.forEach(function (v) { tr.appendChild(el("td", show(v))); });
    });
    return table;
  }

  function renderSession(s, root) {
    document.getElementById("title").textContent = "Session " + s.session_id;
    root.replaceChildren();
    root.appendChild(details([
      ["sensor", s.sensor], ["path", s.path], ["started", s.started_at], ["ended", s.ended_at],
      ["end reason", s.end_reason], ["client", s.client], ["country", s.country_iso ? flag(s.country_iso) + s.country_iso : null],
      ["ASN", s.asn === null ? null : "AS" + s.asn + " " + show(s.as_org)], ["server", s.server],
      ["HELO", s.helo], ["commands", s.commands], ["flags", s.flags], ["limits hit", s.limits_hit],
      ["problems", s.problems], ["note", s.omitted]
    ]));
    if (s.tls) {
      root.appendChild(el("h2", "TLS"));
      root.appendChild(details([
        ["mode", s.tls.mode], ["version", s.tls.version], ["cipher", s.tls.cipher], ["SNI", s.tls.sni],
        ["ALPN", s.tls.alpn], ["offered ALPN", s.tls.offered_alpn], ["JA3", s.tls.ja3], ["JA4", s.tls.ja4],
        ["JA3 string", s.tls.ja3_string], ["error", s.tls.error]
      ]));
    }
    if (s.auth && s.auth.length) {
      root.appendChild(el("h2", "AUTH"));
      root.appendChild(grid(["at", "mechanism", "user name", "password", "accepted", "raw"], s.auth.map(function (a) {
        var t = a.attempt || {};
        return [a.at, t.mechanism, t.username, t.password, a.accepted === undefined ? t.accepted : a.accepted, t.raw];
      })));
    }
    if (s.transcript) {
      root.appendChild(el("h2", "Transcript"));
      if (s.transcript.error) root.appendChild(el("p", s.transcript.error, "error"));
      var list = el("table", null, "transcript");
      var tb = list.appendChild(el("tbody"));
      (s.transcript.records || []).forEach(function (r) {
        var tr = tb.appendChild(el("tr", null, "dir-" + r[1]));
        tr.appendChild(el("td", "+" + r[0] + "s", "time"));
        tr.appendChild(el("td", r[1] === "C" ? "client" : r[1] === "S" ? "server" : "note", "dir"));
        tr.appendChild(el("td", r[2], "bytes"));
      });
      root.appendChild(list);
      if (s.transcript.truncated) root.appendChild(el("p", "… transcript cut here (see transcript.log in the spool)", "note"));
    }
    (s.messages || []).forEach(function (m) {
      root.appendChild(el("h2", "Message " + m.index));
      root.appendChild(details([
        ["file", m.file], ["MAIL FROM", m.mail_from], ["RCPT TO", m.rcpt_to], ["recipients", m.rcpt_total],
        ["received", m.received_at], ["size", m.size], ["accepted", m.accepted], ["queue id", m.queue_id],
        ["truncated", m.truncated], ["parse error", m.parse_error], ["error", m.error]
      ]));
      if (m.headers !== undefined) {
        root.appendChild(el("h3", "Headers" + (m.headers_cut ? " (cut)" : "")));
        root.appendChild(el("pre", m.headers, "source"));
        root.appendChild(el("h3", "Body source, as text" + (m.body_cut ? " (cut)" : "")));
        root.appendChild(el("pre", m.body, "source"));
      }
      if (m.attachments.length) {
        root.appendChild(el("h3", "Attachments (" + m.attachments_total + ", not offered for download)"));
        root.appendChild(grid(["name", "type", "size", "sha256", "md5", "depth"], m.attachments.map(function (a) {
          return [a.filename, a.content_type, a.size, a.sha256, a.md5, a.depth];
        })));
      }
    });
    if (s.messages_total > (s.messages || []).length) {
      root.appendChild(el("p", (s.messages_total - s.messages.length) + " more messages not shown (see the spool)", "note"));
    }
    document.body.dataset.ready = "true";
  }

  function startSession() {
    var root = document.getElementById("session");
    function load() {
      var n = parseInt(location.hash.slice(1), 10);
      if (!(n >= 0)) { root.replaceChildren(el("p", "No session chosen: open one from the Sessions page.")); return; }
      var shard = Math.floor(n / LATRINE.perShard), item = n % LATRINE.perShard;
      function done() {
        var list = LATRINE.shards[shard];
        if (!list || !list[item]) { root.replaceChildren(el("p", "No session " + n + ".", "error")); return; }
        renderSession(list[item], root);
      }
      if (LATRINE.shards[shard]) return done();
      var script = document.createElement("script");
      script.src = "sessions/s" + shard + ".js";
      script.onload = done;
      script.onerror = function () { root.replaceChildren(el("p", "No session " + n + ".", "error")); };
      document.body.appendChild(script);
    }
    window.addEventListener("hashchange", load);
    load();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var table = document.body.dataset.table;
    if (table) startTable(table);
    else if (document.body.id === "session-view") startSession();
    else document.body.dataset.ready = "true";
  });
})();
