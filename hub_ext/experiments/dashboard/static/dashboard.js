/* latticehub experiments dashboard: live run page, compare plots, small SVG line plots.
 *
 * No dependencies. Text from the server is only ever inserted with textContent (never
 * innerHTML), so values such as "<script>" stay text. Requests that use the Hub session
 * cookie carry the XSRF token (header X-XSRFToken, or _xsrf in the EventSource URL):
 * HubOAuth refuses cookie authentication without it.
 */
(function () {
  "use strict";

  function meta(name) {
    const el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.content : "";
  }

  const XSRF = meta("lh-xsrf");
  const BASE = meta("lh-base") || "/services/experiments/";
  const SVGNS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const MAX_LOG_LINES = 2000;
  const MAX_PLOT_POINTS = 4000;

  /** fetch() under the service prefix with the XSRF header and the session cookie. */
  function api(path, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ "X-XSRFToken": XSRF, Accept: "application/json" },
      opts.headers || {});
    return fetch(BASE + path, opts);
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVGNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** "2024-05-01 14:03:07" in the browser's time zone. */
  function localTime(ms) {
    const d = new Date(ms);
    const p = function (n) { return String(n).padStart(2, "0"); };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function localTimes(root) {
    (root || document).querySelectorAll("time[data-ms]").forEach(function (t) {
      const ms = Number(t.dataset.ms);
      if (!ms) return;
      t.title = t.textContent;
      t.dateTime = new Date(ms).toISOString();
      t.textContent = localTime(ms);
    });
  }

  function timeEl(ms) {
    const t = el("time", { "data-ms": String(ms), title: new Date(ms).toISOString() },
      localTime(ms));
    t.dateTime = new Date(ms).toISOString();
    return t;
  }

  function formatDuration(start, end) {
    if (!start || !end) return "";
    const s = Math.max(0, end - start) / 1000;
    if (s < 60) return s.toFixed(1) + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  function formatNumber(v) {
    if (typeof v !== "number") return String(v);
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(3);
    return String(Number(v.toPrecision(6)));
  }

  // -- plots ---------------------------------------------------------------------------

  /** About n round tick values covering [lo, hi]. */
  function niceTicks(lo, hi, n) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / Math.max(1, n);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(function (f) { return f * mag; })
      .find(function (s) { return s >= raw; }) || 10 * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    }
    return ticks;
  }

  /**
   * At most `limit` of `points` ([x, y], y finite), keeping each bucket's lowest and highest
   * point and the first and last: a spike between two kept points is never hidden. The rule
   * of latticehub/thinning.py (the widgets and the live history use it).
   */
  function thin(points, limit) {
    const n = points.length;
    if (n <= limit) return points;
    const buckets = Math.floor((limit - 2) / 2);
    const kept = new Set([0, n - 1]);
    for (let b = 0; b < buckets; b++) {
      const start = Math.floor((b * n) / buckets);
      const end = Math.floor(((b + 1) * n) / buckets);
      let lo = start, hi = start;
      for (let i = start + 1; i < end; i++) {
        if (points[i][1] < points[lo][1]) lo = i;
        if (points[i][1] > points[hi][1]) hi = i;
      }
      kept.add(lo);
      kept.add(hi);
    }
    return Array.from(kept).sort(function (a, b) { return a - b; })
      .map(function (i) { return points[i]; });
  }

  /**
   * Draw a line plot into `container` (replacing what was there).
   *
   * series: [{name, color, points: [[x, y], ...]}]; opts: {title, logY, xLabel, height}.
   * Non-finite y (and y <= 0 on a log axis) are left out.
   */
  function plot(container, series, opts) {
    opts = opts || {};
    const width = Math.max(280, container.clientWidth || 480);
    const height = opts.height || 240;
    const m = { left: 62, right: 22, top: 22, bottom: 34 };
    const logY = !!opts.logY;
    const clean = series.map(function (s, i) {
      const pts = s.points.filter(function (p) {
        return Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!logY || p[1] > 0);
      });
      return { name: s.name, color: s.color || PALETTE[i % PALETTE.length],
        points: thin(pts, MAX_PLOT_POINTS) };
    });
    const all = clean.flatMap(function (s) { return s.points; });
    container.textContent = "";
    const root = svg("svg", { width: width, height: height, viewBox: "0 0 " + width + " " + height,
      class: "plot", role: "img" });
    root.appendChild(svg("text", { x: m.left, y: 14, class: "title" }, opts.title || ""));
    container.appendChild(root);
    const legend = el("div", { class: "legend" });
    clean.forEach(function (s) {
      const item = el("span", { class: "item" });
      const sw = el("span", { class: "swatch" });
      sw.style.background = s.color;
      item.appendChild(sw);
      item.appendChild(document.createTextNode(s.name + (s.points.length ? "" : " (no data)")));
      legend.appendChild(item);
    });
    container.appendChild(legend);
    if (!all.length) {
      root.appendChild(svg("text", { x: width / 2, y: height / 2, class: "nodata",
        "text-anchor": "middle" }, logY ? "no positive values" : "no data yet"));
      return root;
    }
    const ty = logY ? Math.log10 : function (v) { return v; };
    let x0 = Math.min.apply(null, all.map(function (p) { return p[0]; }));
    let x1 = Math.max.apply(null, all.map(function (p) { return p[0]; }));
    let y0 = Math.min.apply(null, all.map(function (p) { return ty(p[1]); }));
    let y1 = Math.max.apply(null, all.map(function (p) { return ty(p[1]); }));
    if (x1 === x0) { x0 -= 1; x1 += 1; }
    if (y1 === y0) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
    const pad = (y1 - y0) * 0.05;
    y0 -= pad; y1 += pad;
    const pw = width - m.left - m.right;
    const ph = height - m.top - m.bottom;
    const sx = function (x) { return m.left + ((x - x0) / (x1 - x0)) * pw; };
    const sy = function (y) { return m.top + ph - ((ty(y) - y0) / (y1 - y0)) * ph; };
    const syRaw = function (t) { return m.top + ph - ((t - y0) / (y1 - y0)) * ph; };

    const grid = svg("g", { class: "grid" });
    const axes = svg("g", { class: "axes" });
    niceTicks(x0, x1, Math.max(2, Math.floor(pw / 80))).forEach(function (t) {
      const x = sx(t);
      grid.appendChild(svg("line", { x1: x, x2: x, y1: m.top, y2: m.top + ph }));
      axes.appendChild(svg("text", { x: x, y: m.top + ph + 14, "text-anchor": "middle" },
        formatNumber(t)));
    });
    let yticks;
    if (logY && y1 - y0 >= 1) {
      yticks = [];
      for (let e = Math.ceil(y0); e <= Math.floor(y1); e++) yticks.push(e);
    } else {
      yticks = niceTicks(y0, y1, Math.max(2, Math.floor(ph / 40)));
    }
    yticks.forEach(function (t) {
      const y = syRaw(t);
      grid.appendChild(svg("line", { x1: m.left, x2: m.left + pw, y1: y, y2: y }));
      axes.appendChild(svg("text", { x: m.left - 6, y: y + 4, "text-anchor": "end" },
        logY ? formatNumber(Math.pow(10, t)) : formatNumber(t)));
    });
    axes.appendChild(svg("line", { x1: m.left, x2: m.left, y1: m.top, y2: m.top + ph }));
    axes.appendChild(svg("line", { x1: m.left, x2: m.left + pw, y1: m.top + ph,
      y2: m.top + ph }));
    axes.appendChild(svg("text", { x: m.left + pw / 2, y: height - 4, "text-anchor": "middle",
      class: "label" }, opts.xLabel || "step"));
    root.appendChild(grid);
    root.appendChild(axes);
    clean.forEach(function (s) {
      if (!s.points.length) return;
      let d = "";
      s.points.forEach(function (p, i) {
        d += (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1);
      });
      const path = svg("path", { d: d, class: "series", stroke: s.color, fill: "none",
        "data-name": s.name, "data-points": s.points.length });
      path.appendChild(svg("title", {}, s.name));
      root.appendChild(path);
      if (s.points.length === 1) {
        const p = s.points[0];
        root.appendChild(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: s.color }));
      }
    });
    // hover read-out: the nearest point of each series at the pointer's x
    const cursor = svg("line", { class: "cursor", y1: m.top, y2: m.top + ph, x1: -10, x2: -10 });
    const readout = svg("text", { class: "readout", x: width - m.right, y: 14,
      "text-anchor": "end" });
    root.appendChild(cursor);
    root.appendChild(readout);
    root.addEventListener("mousemove", function (ev) {
      const box = root.getBoundingClientRect();
      const px = ((ev.clientX - box.left) / box.width) * width;
      if (px < m.left || px > m.left + pw) return;
      const x = x0 + ((px - m.left) / pw) * (x1 - x0);
      cursor.setAttribute("x1", px);
      cursor.setAttribute("x2", px);
      const parts = [];
      clean.forEach(function (s) {
        if (!s.points.length) return;
        let best = s.points[0];
        s.points.forEach(function (p) { if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p; });
        parts.push((clean.length > 1 ? s.name + ": " : "") + formatNumber(best[1]) + " @ " +
          formatNumber(best[0]));
      });
      readout.textContent = parts.join("  ");
    });
    root.addEventListener("mouseleave", function () {
      cursor.setAttribute("x1", -10);
      cursor.setAttribute("x2", -10);
      readout.textContent = "";
    });
    return root;
  }

  /** A set of metric plots (one per key), redrawn at most once per animation frame. */
  function PlotBoard(container, logBox) {
    this.container = container;
    this.logBox = logBox;
    this.boxes = new Map();
    this.data = new Map(); // key -> series name -> Map(step|ts|value -> [x, y])
    this.names = [];
    this.dirty = new Set();
    this.pending = false;
    const self = this;
    if (logBox) logBox.addEventListener("change", function () {
      self.boxes.forEach(function (_, key) { self.dirty.add(key); });
      self.schedule();
    });
    window.addEventListener("resize", function () {
      self.boxes.forEach(function (_, key) { self.dirty.add(key); });
      self.schedule();
    });
  }
  PlotBoard.prototype.box = function (key) {
    let box = this.boxes.get(key);
    if (!box) {
      box = el("div", { class: "plotbox", "data-key": key });
      const keys = Array.from(this.boxes.keys()).concat([key]).sort();
      const next = keys[keys.indexOf(key) + 1];
      this.container.insertBefore(box, next ? this.boxes.get(next) : null);
      this.boxes.set(key, box);
      this.data.set(key, new Map());
    }
    return box;
  };
  PlotBoard.prototype.add = function (key, name, points) {
    this.box(key);
    const bySeries = this.data.get(key);
    if (!bySeries.has(name)) bySeries.set(name, new Map());
    const series = bySeries.get(name);
    points.forEach(function (p) {
      const y = typeof p.value === "number" ? p.value : Number(p.value);
      series.set(p.step + "|" + p.timestamp + "|" + p.value, [p.step, y]);
    });
    this.dirty.add(key);
    this.schedule();
  };
  PlotBoard.prototype.clear = function () {
    this.data.forEach(function (m, key) { m.clear(); });
    this.boxes.forEach((_, key) => this.dirty.add(key));
  };
  PlotBoard.prototype.schedule = function () {
    if (this.pending) return;
    this.pending = true;
    const self = this;
    requestAnimationFrame(function () {
      self.pending = false;
      self.dirty.forEach(function (key) { self.draw(key); });
      self.dirty.clear();
    });
  };
  PlotBoard.prototype.draw = function (key) {
    const names = this.names.length ? this.names : Array.from(this.data.get(key).keys());
    const bySeries = this.data.get(key);
    const series = names.map(function (name, i) {
      const pts = Array.from((bySeries.get(name) || new Map()).values());
      pts.sort(function (a, b) { return a[0] - b[0]; });
      return { name: name, color: PALETTE[i % PALETTE.length], points: pts };
    });
    plot(this.boxes.get(key), series, { title: key, logY: this.logBox && this.logBox.checked });
  };

  // -- run page ------------------------------------------------------------------------

  function LogPane(node) {
    this.node = node;
    this.partial = null;
  }
  LogPane.prototype.atBottom = function () {
    return this.node.scrollHeight - this.node.scrollTop - this.node.clientHeight < 40;
  };
  LogPane.prototype.append = function (lines) {
    const stick = this.atBottom();
    const frag = document.createDocumentFragment();
    lines.forEach(function (line) {
      const row = el("div", { class: "line", "data-offset": String(line.offset) });
      row.appendChild(el("span", { class: "ln" }, line.offset + 1));
      row.appendChild(document.createTextNode(line.text));
      frag.appendChild(row);
    });
    this.node.insertBefore(frag, this.partial);
    let extra = this.node.querySelectorAll(".line").length - MAX_LOG_LINES;
    while (extra-- > 0) this.node.removeChild(this.node.querySelector(".line"));
    if (stick) this.node.scrollTop = this.node.scrollHeight;
  };
  LogPane.prototype.setPartial = function (text) {
    if (!this.partial) {
      this.partial = el("div", { class: "line partial" });
      this.node.appendChild(this.partial);
    }
    this.partial.textContent = text;
  };

  let ticker = null;

  /** While a run is active, its duration counts up once a second. */
  function tickDuration(run) {
    if (ticker) clearInterval(ticker);
    ticker = null;
    if (run.end_time || !["RUNNING", "QUEUED"].includes(run.status)) return;
    const dur = document.getElementById("duration");
    if (!dur) return;
    const tick = function () { dur.textContent = formatDuration(run.start_time, Date.now()); };
    tick();
    ticker = setInterval(tick, 1000);
  }

  function setStatus(run) {
    tickDuration(run);
    const badge = document.getElementById("status");
    if (badge) {
      badge.textContent = run.status;
      badge.className = "badge s-" + run.status.toLowerCase();
    }
    const reason = document.getElementById("status-reason");
    if (reason) reason.textContent = run.status_reason || "";
    const name = document.getElementById("run-name");
    if (name && run.name) name.textContent = run.name;
    if (run.end_time) {
      const end = document.getElementById("end-time");
      if (end) {
        end.textContent = "";
        end.appendChild(timeEl(run.end_time));
      }
      const dur = document.getElementById("duration");
      if (dur) dur.textContent = formatDuration(run.start_time, run.end_time);
      const cancel = document.getElementById("cancel-job");
      if (cancel && ["FINISHED", "FAILED", "KILLED", "LOST"].includes(run.status)) cancel.remove();
    }
  }

  function setLatest(points) {
    const table = document.getElementById("latest-metrics");
    if (!table) return;
    const latest = new Map();
    points.forEach(function (p) {
      const cur = latest.get(p.key);
      if (!cur || p.step > cur.step || (p.step === cur.step && p.timestamp >= cur.timestamp)) {
        latest.set(p.key, p);
      }
    });
    latest.forEach(function (p, key) {
      let row = Array.from(table.querySelectorAll("tr")).find(function (r) {
        return r.dataset.key === key;
      });
      if (!row) {
        row = el("tr", { "data-key": key });
        row.appendChild(el("th", {}, key));
        row.appendChild(el("td", { class: "num" }));
        row.appendChild(el("td", { class: "muted" }));
        table.appendChild(row);
        const none = document.getElementById("no-metrics");
        if (none) none.remove();
      }
      const cells = row.querySelectorAll("td");
      const shownStep = Number((cells[1].textContent.match(/-?\d+/) || ["-1"])[0]);
      if (p.step >= shownStep) {
        cells[0].textContent = formatNumber(typeof p.value === "number" ? p.value : Number(p.value));
        cells[1].textContent = "step " + p.step;
      }
    });
  }

  function addTimeline(items) {
    const section = document.getElementById("timeline-section");
    const body = document.querySelector("#timeline tbody");
    if (!section || !body || !items.length) return;
    section.hidden = false;
    items.forEach(function (e) {
      const tr = el("tr");
      const td = el("td");
      td.appendChild(timeEl(e.time));
      tr.appendChild(td);
      tr.appendChild(el("td", {}, e.kind));
      tr.appendChild(el("td", {}, e.message));
      body.appendChild(tr);
    });
  }

  function setLive(state, title) {
    const dot = document.getElementById("live");
    if (!dot) return;
    dot.className = "live " + state;
    dot.title = title;
    document.body.dataset.live = state;
  }

  function runPage(data) {
    const panes = {
      stdout: new LogPane(document.getElementById("log-stdout")),
      stderr: new LogPane(document.getElementById("log-stderr")),
    };
    const board = new PlotBoard(document.getElementById("plots"), document.getElementById("log-y"));
    data.metric_keys.forEach(function (key) { board.box(key); });
    tickDuration({ status: data.status, start_time: data.start_time, end_time: data.end_time });
    const url = BASE + "api/v1/runs/" + encodeURIComponent(data.run_id) + "/stream?tail=" +
      data.tail + "&metrics=1&events=" + data.events + "&_xsrf=" + encodeURIComponent(XSRF);
    const source = new EventSource(url);
    setLive("connecting", "connecting to the live stream");
    source.addEventListener("open", function () { setLive("on", "live"); });
    source.addEventListener("log", function (ev) {
      const msg = JSON.parse(ev.data);
      const pane = panes[msg.stream];
      if (pane) pane.append(msg.lines);
    });
    source.addEventListener("partial", function (ev) {
      const msg = JSON.parse(ev.data);
      const pane = panes[msg.stream];
      if (pane) pane.setPartial(msg.text);
    });
    source.addEventListener("metrics", function (ev) {
      const msg = JSON.parse(ev.data);
      if (msg.reset) board.clear();
      const byKey = new Map();
      msg.points.forEach(function (p) {
        if (!byKey.has(p.key)) byKey.set(p.key, []);
        byKey.get(p.key).push(p);
      });
      byKey.forEach(function (points, key) { board.add(key, key, points); });
      setLatest(msg.points);
    });
    source.addEventListener("run", function (ev) { setStatus(JSON.parse(ev.data)); });
    source.addEventListener("timeline", function (ev) {
      addTimeline(JSON.parse(ev.data).items || []);
    });
    source.addEventListener("end", function (ev) {
      source.close();
      let msg = {};
      try { msg = JSON.parse(ev.data || "{}"); } catch (e) { msg = {}; }
      if (msg.reason === "access_revoked") {
        setLive("off", msg.message || "you may no longer read this run");
      } else {
        setLive("ended", "the run has ended; everything was received");
      }
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        setLive("off", "live updates unavailable: reload the page");
      } else {
        setLive("connecting", "reconnecting");
      }
    });

    const cancel = document.getElementById("cancel-job");
    if (cancel) {
      cancel.addEventListener("click", function () {
        if (!window.confirm("Cancel this job?")) return;
        const out = document.getElementById("cancel-result");
        cancel.disabled = true;
        api("api/v1/jobs/" + encodeURIComponent(cancel.dataset.job), { method: "DELETE" })
          .then(function (r) {
            return r.json().catch(function () { return {}; }).then(function (body) {
              if (r.ok) {
                out.textContent = "cancel requested (" + (body.state || "") + ")";
                const st = document.getElementById("job-state");
                if (st && body.state) st.textContent = body.state;
              } else {
                out.textContent = "refused: " + (body.message || r.status);
                cancel.disabled = false;
              }
            });
          })
          .catch(function (e) { out.textContent = "failed: " + e; cancel.disabled = false; });
      });
    }
  }

  // -- compare page --------------------------------------------------------------------

  function comparePage(data) {
    document.querySelectorAll(".swatch[data-series]").forEach(function (sw) {
      sw.style.background = PALETTE[Number(sw.dataset.series) % PALETTE.length];
    });
    const board = new PlotBoard(document.getElementById("plots"), document.getElementById("log-y"));
    const labels = data.runs.map(function (r, i) {
      const dup = data.runs.filter(function (o) { return o.name === r.name; }).length > 1;
      return dup ? r.name + " (" + r.id.slice(0, 6) + ")" : r.name;
    });
    board.names = labels;
    data.metric_keys.forEach(function (key) {
      board.box(key);
      data.runs.forEach(function (r, i) {
        api("api/v1/runs/" + encodeURIComponent(r.id) + "/metrics/" + encodeURIComponent(key) +
          "?limit=50000")
          .then(function (resp) { return resp.ok ? resp.json() : { items: [] }; })
          .then(function (body) { board.add(key, labels[i], body.items || []); });
      });
    });
    const onlyDiff = document.getElementById("only-diff");
    if (onlyDiff) onlyDiff.addEventListener("change", function () {
      document.querySelectorAll("#compare-params tr.same").forEach(function (tr) {
        tr.hidden = onlyDiff.checked;
      });
    });
  }

  // -- runs table ----------------------------------------------------------------------

  function projectPage() {
    const all = document.getElementById("select-all");
    const button = document.getElementById("compare-button");
    const boxes = function () {
      return Array.from(document.querySelectorAll('#runs input[name="run"]'));
    };
    const update = function () {
      const n = boxes().filter(function (b) { return b.checked; }).length;
      button.disabled = n < 2;
      button.textContent = n ? "Compare " + n + " selected" : "Compare selected";
    };
    if (all) all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      update();
    });
    document.querySelectorAll('#runs input[name="run"]').forEach(function (b) {
      b.addEventListener("change", update);
    });
    if (button) update();
  }

  function start() {
    localTimes();
    const dataNode = document.getElementById("lh-data");
    const data = dataNode ? JSON.parse(dataNode.textContent) : null;
    if (document.body.classList.contains("run-page") && data) runPage(data);
    else if (document.body.classList.contains("compare-page") && data) comparePage(data);
    if (document.getElementById("runs")) projectPage();
  }

  window.LH = { api: api, base: BASE, plot: plot, niceTicks: niceTicks, thin: thin };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
