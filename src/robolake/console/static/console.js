// robolake console: line charts (SVG) and the episode player. Written for this console; it
// loads nothing from anywhere but the console itself.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d"];
  var dataEl = document.getElementById("page-data");
  var data = dataEl ? JSON.parse(dataEl.textContent) : null;

  function svgEl(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function fmt(value, unit) {
    if (unit === "bytes") {
      var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, v = value;
      while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
      return (i ? v.toFixed(1) : v.toFixed(0)) + " " + units[i];
    }
    if (unit === "percentunit") { return (value * 100).toFixed(0) + "%"; }
    if (unit === "s") { return value < 1 ? (value * 1000).toFixed(1) + " ms" : value.toFixed(2) + " s"; }
    if (unit === "reqps") { return value.toFixed(value < 10 ? 2 : 0) + "/s"; }
    if (unit === "m") { return (value * 1000).toFixed(0) + " mm"; }
    return Math.abs(value) >= 100 ? value.toFixed(0) : String(Math.round(value * 100) / 100);
  }

  function clock(unixS, spanS) {
    var d = new Date(unixS * 1000), two = function (n) { return ("0" + n).slice(-2); };
    var hm = two(d.getHours()) + ":" + two(d.getMinutes());
    return spanS < 600 ? hm + ":" + two(d.getSeconds()) : hm;
  }

  // series: [{legend, points: [[x, y], ...]}]; opts: {unit, time (x is unix seconds), xUnit}
  function lineChart(container, series, opts) {
    var W = 560, H = 210, L = 64, R = 26, T = 10, B = 26;
    var xs = [], ys = [];
    series.forEach(function (s) { s.points.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
    container.textContent = "";
    if (!xs.length) {
      container.innerHTML = '<span class="muted">no data in this period</span>';
      return null;
    }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min(0, Math.min.apply(null, ys)), y1 = Math.max.apply(null, ys);
    if (x1 === x0) { x1 = x0 + 1; }
    if (y1 === y0) { y1 = y0 + 1; }
    var sx = function (x) { return L + (x - x0) / (x1 - x0) * (W - L - R); };
    var sy = function (y) { return H - B - (y - y0) / (y1 - y0) * (H - T - B); };
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg", role: "img" }, container);
    for (var i = 0; i <= 4; i += 1) {
      var yv = y0 + (y1 - y0) * i / 4, yy = sy(yv);
      svgEl("line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "grid" }, svg);
      svgEl("text", { x: L - 6, y: yy + 4, class: "tick", "text-anchor": "end" }, svg).textContent = fmt(yv, opts.unit);
      var xv = x0 + (x1 - x0) * i / 4;
      var label = opts.time ? clock(xv, x1 - x0) : xv.toFixed(1) + (opts.xUnit || "");
      svgEl("text", { x: sx(xv), y: H - 8, class: "tick", "text-anchor": "middle" }, svg).textContent = label;
    }
    series.forEach(function (s, k) {
      if (!s.points.length) { return; }
      var d = s.points.map(function (p, j) { return (j ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1); });
      svgEl("path", { d: d.join(" "), class: "series", stroke: COLORS[k % COLORS.length] }, svg);
      if (s.points.length === 1) {
        var only = s.points[0];
        svgEl("circle", { cx: sx(only[0]), cy: sy(only[1]), r: 3, fill: COLORS[k % COLORS.length] }, svg);
      }
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    series.forEach(function (s, k) {
      var item = document.createElement("span");
      item.style.color = COLORS[k % COLORS.length];
      item.textContent = "\u25A0 " + (s.legend || "value");
      legend.appendChild(item);
    });
    container.appendChild(legend);
    return { svg: svg, sx: sx, top: T, bottom: H - B, x0: x0, x1: x1 };
  }

  function metricsPage() {
    var panels = document.querySelectorAll(".chart[data-panel]");
    fetch(data.api, { credentials: "same-origin" }).then(function (r) {
      return r.json().then(function (doc) { return { ok: r.ok, doc: doc }; });
    }).then(function (answer) {
      if (!answer.ok) { throw new Error(answer.doc.error || "the metrics API failed"); }
      answer.doc.panels.forEach(function (panel, i) {
        var box = document.getElementById("panel-" + i);
        lineChart(box, panel.series, { unit: panel.unit, time: true });
        box.setAttribute("data-series", String(panel.series.length));
      });
      document.body.setAttribute("data-charts", "ready");
    }).catch(function (err) {
      panels.forEach(function (p) { p.querySelector(".plot").innerHTML = ""; p.querySelector(".plot").textContent = String(err.message || err); });
      document.body.setAttribute("data-charts", "failed");
    });
  }

  function columns(rows, col) { return rows.map(function (row) { return Array.isArray(row) ? row[col] : row; }); }

  function zip(t, values) {
    var out = [];
    for (var i = 0; i < Math.min(t.length, values.length); i += 1) { out.push([t[i], values[i]]); }
    return out;
  }

  function addCursor(chart, id) {
    if (!chart) { return null; }
    return svgEl("line", { id: id, class: "cursor", x1: chart.sx(chart.x0), x2: chart.sx(chart.x0), y1: chart.top, y2: chart.bottom }, chart.svg);
  }

  function episodePage() {
    var pose = data.pose, grip = data.gripper;
    var posBox = document.getElementById("pose-plot"), gripBox = document.getElementById("gripper-plot");
    var axes = ["x", "y", "z"].map(function (name, c) {
      return { legend: "eef " + name + " (m)", points: zip(pose.t, columns(pose.eef_position_m, c)) };
    });
    var charts = [
      [lineChart(posBox, axes, { unit: "", xUnit: " s" }), "pose-cursor"],
      [lineChart(gripBox, [{ legend: "gripper width", points: zip(grip.t, columns(grip.width_m, 0)) }], { unit: "m", xUnit: " s" }), "gripper-cursor"]
    ].map(function (pair) { return { chart: pair[0], line: addCursor(pair[0], pair[1]) }; });
    var video = document.getElementById("video");
    if (!video) { return; }
    function follow() {
      var t = video.currentTime;
      charts.forEach(function (c) {
        if (!c.chart) { return; }
        var x = c.chart.sx(Math.max(c.chart.x0, Math.min(c.chart.x1, t))).toFixed(2);
        c.line.setAttribute("x1", x);
        c.line.setAttribute("x2", x);
        c.line.setAttribute("data-time", t.toFixed(3));
      });
    }
    function loop() { follow(); if (!video.paused && !video.ended) { window.requestAnimationFrame(loop); } }
    video.addEventListener("timeupdate", follow);
    video.addEventListener("seeked", follow);
    video.addEventListener("play", function () { window.requestAnimationFrame(loop); });
    document.querySelectorAll(".frame[data-frame]").forEach(function (img) {
      img.addEventListener("click", function () {
        if (data.fps) { video.currentTime = Number(img.getAttribute("data-frame")) / data.fps; }
      });
    });
    follow();
  }

  if (data && data.api === "/api/metrics") { metricsPage(); }
  if (data && data.pose) { episodePage(); }
  // The jobs page while a job runs: the server renders the board again every few seconds.
  if (data && data.refresh_s) { window.setTimeout(function () { window.location.reload(); }, data.refresh_s * 1000); }
})();
