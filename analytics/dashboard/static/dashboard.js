// The dashboard pages: fetch the page's /api data every few seconds and render it as
// text (totals, tables) and uPlot charts. No other script, nothing from the network
// but this dashboard.
"use strict";
(function () {
  const REFRESH_MS = 5000;
  const body = document.body;
  const page = body.dataset.page;
  const app = body.dataset.app;
  const range = body.dataset.range;
  const fresh = document.getElementById("freshness");
  if (!page) { if (fresh) fresh.textContent = ""; return; }

  const COLORS = {
    internal: "#e5534b", invalid_param: "#f0883e", rate_limited: "#d4a72c", permission: "#a371f7",
    rejected_by_app: "#4493f8", muted: "#8b949e", content_filtered: "#3fb950", other: "#db61a2",
  };
  const PALETTE = ["#4493f8", "#e5534b", "#3fb950", "#d4a72c", "#a371f7", "#f0883e", "#db61a2", "#39c5cf", "#8b949e"];
  const nf = new Intl.NumberFormat("en-US");
  const qs = "?app=" + encodeURIComponent(app) + "&range=" + encodeURIComponent(range);

  function apiUrl() {
    if (page === "overview") return "/api/overview" + qs;
    if (page === "alerts") return "/api/alerts" + qs;
    if (page === "group") return "/api/group/" + encodeURIComponent(body.dataset.group) + qs;
    if (page === "code") return "/api/code/" + encodeURIComponent(body.dataset.code) + qs;
    return null;
  }
  const groupHref = (g) => "/group/" + encodeURIComponent(g) + qs;
  const codeHref = (c) => "/code/" + encodeURIComponent(c) + qs;

  function text(id, value) { const el = document.getElementById(id); if (el) el.textContent = value; }
  const num = (v) => (v === null || v === undefined ? "–" : nf.format(v));
  const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(2) + " %");
  const utc = (iso) => (iso ? String(iso).replace("T", " ").slice(0, 19) : "–");
  const hhmm = (iso) => utc(iso).slice(11, 16);

  function cell(row, value, cls, href) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (href) { const a = document.createElement("a"); a.href = href; a.textContent = value; td.appendChild(a); }
    else td.textContent = value;
    row.appendChild(td);
  }
  function fill(tableId, rows, columns) {
    const table = document.getElementById(tableId);
    if (!table) return;
    const tbody = table.tBodies[0];
    const out = document.createDocumentFragment();
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = table.tHead.rows[0].cells.length; td.className = "empty"; td.textContent = "none in this range";
      tr.appendChild(td); out.appendChild(tr);
    }
    for (const r of rows) {
      const tr = document.createElement("tr");
      for (const [value, cls, href] of columns(r)) cell(tr, value, cls, href);
      out.appendChild(tr);
    }
    tbody.replaceChildren(out);
  }
  function alertsTable(rows) {
    fill("alerts", rows, (a) => [
      [utc(a.raised_at).slice(5)], [a.group_id, "mono", groupHref(a.group_id)],
      [utc(a.window_start).slice(5, 10) + " " + hhmm(a.window_start) + "–" + hhmm(a.window_end)], [a.reason],
      [num(a.failures), "num"], [num(a.threshold), "num"],
      [a.baseline === null ? "–" : a.baseline.toFixed(1), "num"], [pct(a.failure_ratio), "num"],
    ]);
  }

  // --- charts ------------------------------------------------------------------------
  const charts = {};
  function themeColors() {
    const s = getComputedStyle(document.documentElement);
    return { fg: s.getPropertyValue("--muted").trim(), grid: s.getPropertyValue("--line").trim() };
  }
  function axes(yValues) {
    const c = themeColors();
    const ax = { stroke: c.fg, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 } };
    const y = Object.assign({}, ax, { size: 60 });
    if (yValues) y.values = yValues;
    return [ax, y];
  }
  // stacked bars: series k draws the sum of the first k layers, largest first, so each
  // smaller sum covers the one above it; the legend shows each layer's own value
  function stacked(id, buckets, layers, colorOf) {
    const names = Object.keys(layers);
    const sums = [];
    let acc = buckets.map(() => 0);
    for (const n of names) { acc = acc.map((v, i) => v + layers[n][i]); sums.push(acc); }
    const data = [buckets];
    const series = [{}];
    for (let k = names.length - 1; k >= 0; k--) {
      const n = names[k];
      data.push(sums[k]);
      series.push({
        label: n, fill: colorOf(n, k), stroke: colorOf(n, k), width: 0,
        paths: uPlot.paths.bars({ size: [0.85, 40] }),
        value: (u, v, si, i) => (i === null || i === undefined ? "–" : nf.format(layers[n][i])),
      });
    }
    if (!names.length) { data.push(buckets.map(() => 0)); series.push({ label: "failures", stroke: "#8b949e" }); }
    draw(id, data, series);
  }
  function line(id, buckets, values, label, color, format) {
    draw(id, [buckets, values.map((v) => (v === null ? null : v))],
      [{}, { label, stroke: color, width: 2, spanGaps: false, value: (u, v) => (v === null ? "–" : format(v)) }],
      (u, ticks) => ticks.map((v) => (v * 100).toFixed(v < 0.1 ? 1 : 0) + " %"));
  }
  function bars(id, buckets, values, label, color) {
    draw(id, [buckets, values], [{}, { label, fill: color, stroke: color, width: 0,
      paths: uPlot.paths.bars({ size: [0.85, 40] }) }]);
  }
  function draw(id, data, series, yValues) {
    const el = document.getElementById(id);
    if (!el || typeof uPlot === "undefined") return;
    const key = series.map((s) => s.label || "").join("|");
    const old = charts[id];
    if (old && old.key === key && old.theme === themeKey()) { old.plot.setData(data); return; }
    if (old) old.plot.destroy();
    const width = Math.max(300, el.clientWidth || 600);
    // times in UTC, like every table of the dashboard
    const plot = new uPlot({ width, height: 220, series, axes: axes(yValues), legend: { live: true },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true } }, cursor: { drag: { x: false } } }, data, el);
    charts[id] = { plot, key, theme: themeKey() };
  }
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const themeKey = () => (dark.matches ? "dark" : "light");
  dark.addEventListener("change", () => last && render(last));
  window.addEventListener("resize", () => {
    for (const id in charts) {
      const el = document.getElementById(id);
      charts[id].plot.setSize({ width: Math.max(300, el.clientWidth), height: 220 });
    }
  });

  function bucketLabel(seconds) {
    if (seconds >= 3600) return (seconds / 3600) + " h";
    return (seconds / 60) + " min";
  }

  // --- pages -------------------------------------------------------------------------
  const RENDER = {
    overview(d) {
      text("total-failures", num(d.totals.failures));
      text("total-groups", num(d.totals.groups));
      text("total-senders", num(d.totals.senders));
      text("total-ratio", pct(d.totals.failure_ratio));
      const t = d.trend;
      stacked("chart-categories", t.buckets, t.categories, (n) => COLORS[n] || "#8b949e");
      line("chart-ratio", t.buckets, t.failure_ratio, "failure ratio", "#e5534b", pct);
      fill("top-groups", d.top_groups, (g) => [
        [g.group_id, "mono", groupHref(g.group_id)], [num(g.failures), "num"], [pct(g.failure_ratio), "num"],
      ]);
      fill("top-codes", d.top_codes, (c) => [
        [String(c.error_code), "num", codeHref(c.error_code)], [c.category], [c.meaning],
        [num(c.failures), "num"], [num(c.groups), "num"],
      ]);
      alertsTable(d.alerts);
      return t.bucket_seconds;
    },
    group(d) {
      text("total-failures", num(d.totals.failures));
      text("total-senders", num(d.totals.senders));
      text("total-codes", num(d.totals.codes));
      text("total-ratio", pct(d.totals.failure_ratio));
      const t = d.trend;
      stacked("chart-codes", t.buckets, t.codes, (n, k) => PALETTE[k % PALETTE.length]);
      line("chart-ratio", t.buckets, t.failure_ratio, "failure ratio", "#e5534b", pct);
      fill("top-senders", d.top_senders, (s) => [
        [s.sender || "–", "mono"], [num(s.failures), "num"], [String(s.top_code), "num", codeHref(s.top_code)],
      ]);
      const perCode = Object.entries(t.codes).map(([c, v]) => [c, v.reduce((a, b) => a + b, 0)]);
      perCode.sort((a, b) => b[1] - a[1] || Number(a[0]) - Number(b[0]));
      fill("group-codes", perCode, ([c, n]) => [[c, "num", codeHref(c)], [num(n), "num"]]);
      fill("latest", d.latest, (e) => [
        [utc(e.event_time)], [e.sender || "–", "mono"], [String(e.error_code), "num", codeHref(e.error_code)],
        [e.category], [e.error_info || "–"], [e.platform || "–"],
      ]);
      alertsTable(d.alerts);
      return t.bucket_seconds;
    },
    code(d) {
      text("code-category", d.category);
      text("code-meaning", d.meaning);
      text("total-failures", num(d.totals.failures));
      text("total-groups", num(d.totals.groups));
      text("total-senders", num(d.totals.senders));
      bars("chart-code", d.trend.buckets, d.trend.failures, "failures", COLORS[d.category] || "#4493f8");
      fill("top-groups", d.top_groups, (g) => [[g.group_id, "mono", groupHref(g.group_id)], [num(g.failures), "num"]]);
      return d.trend.bucket_seconds;
    },
    alerts(d) { alertsTable(d.alerts); return null; },
  };

  let last = null;
  function render(d) {
    last = d;
    const bucket = RENDER[page](d);
    if (bucket) document.querySelectorAll(".bucket").forEach((el) => { el.textContent = bucketLabel(bucket); });
    const f = d.freshness;
    fresh.textContent = "data as of " + utc(f.as_of) + " UTC (" + Math.round(f.age_seconds) + " s ago, " + f.source + ")";
    fresh.classList.toggle("stale", f.age_seconds > 120);
    body.dataset.loaded = String(Number(body.dataset.loaded || 0) + 1);
  }
  async function refresh() {
    try {
      const resp = await fetch(apiUrl(), { cache: "no-store" });
      const d = await resp.json();
      if (!resp.ok) { fresh.textContent = d.error || ("HTTP " + resp.status); fresh.classList.add("stale"); }
      else render(d);
    } catch (err) {
      fresh.textContent = "dashboard unreachable, retrying"; fresh.classList.add("stale");
    }
    setTimeout(refresh, REFRESH_MS);
  }
  refresh();
})();
