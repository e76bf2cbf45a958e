// The statistics page: small SVG bar charts of /stats.json, each followed by its numbers
// as a table (the chart's text alternative).
"use strict";
var Charts = (function () {
  var SVG = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function short(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
    if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
    if (n >= 1e4) return (n / 1e3).toFixed(0) + "k";
    return String(Math.round(n * 10) / 10);
  }
  // Vertical bars (a series over days); labels thinned to fit.
  function columns(title, items, cls) {
    var w = 360, h = 180, left = 38, bottom = 22, top = 8;
    var svg = el("svg", {viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": title});
    el("title", {}, svg).textContent = title;
    var max = Math.max.apply(null, items.map(function (d) { return d.value; }).concat([1]));
    var n = Math.max(items.length, 1), step = (w - left - 4) / n;
    el("line", {x1: left, y1: h - bottom, x2: w, y2: h - bottom, "class": "axis"}, svg);
    el("text", {x: left - 4, y: top + 8, "text-anchor": "end"}, svg).textContent = short(max);
    el("text", {x: left - 4, y: h - bottom, "text-anchor": "end"}, svg).textContent = "0";
    var every = Math.ceil(n / 6);
    items.forEach(function (d, i) {
      var bh = (h - bottom - top) * d.value / max;
      var bar = el("rect", {x: left + i * step + step * 0.1, y: h - bottom - bh, width: Math.max(step * 0.8, 1), height: bh, "class": cls || "bar1"}, svg);
      el("title", {}, bar).textContent = d.label + ": " + d.shown;
      if (i % every === 0) el("text", {x: left + i * step + step / 2, y: h - 6, "text-anchor": "middle"}, svg).textContent = d.tick || d.label;
    });
    return svg;
  }
  // Horizontal bars (categories).
  function rows(title, items, cls) {
    var w = 360, line = 24, left = 128, h = Math.max(items.length, 1) * line + 6;
    var svg = el("svg", {viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": title});
    el("title", {}, svg).textContent = title;
    var max = Math.max.apply(null, items.map(function (d) { return d.value; }).concat([1]));
    items.forEach(function (d, i) {
      var y = 3 + i * line, bw = (w - left - 76) * d.value / max;
      var name = d.label.length > 19 ? d.label.slice(0, 18) + "…" : d.label;
      el("text", {x: left - 6, y: y + 15, "text-anchor": "end"}, svg).textContent = name;
      var bar = el("rect", {x: left, y: y + 3, width: Math.max(bw, 1), height: line - 8, "class": cls || "bar1"}, svg);
      el("title", {}, bar).textContent = d.label + ": " + d.shown;
      el("text", {x: left + bw + 4, y: y + 15}, svg).textContent = d.shown;
    });
    if (!items.length) el("text", {x: 8, y: 18}, svg).textContent = "nothing yet";
    return svg;
  }
  function table(caption, head, body) {
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    summary.textContent = "The numbers";
    details.appendChild(summary);
    var t = document.createElement("table");
    var c = document.createElement("caption"); c.className = "hint"; c.textContent = caption; t.appendChild(c);
    var tr = document.createElement("tr");
    head.forEach(function (h, i) { var th = document.createElement("th"); th.scope = "col"; th.textContent = h; if (i) th.className = "num"; tr.appendChild(th); });
    var thead = document.createElement("thead"); thead.appendChild(tr); t.appendChild(thead);
    var tbody = document.createElement("tbody");
    body.forEach(function (r) {
      var row = document.createElement("tr");
      r.forEach(function (v, i) { var td = document.createElement("td"); td.textContent = v; if (i) td.className = "num"; row.appendChild(td); });
      tbody.appendChild(row);
    });
    t.appendChild(tbody); details.appendChild(t);
    return details;
  }
  function put(id, svg, details) {
    var section = document.getElementById(id);
    section.appendChild(svg); section.appendChild(details);
  }
  function draw(data) {
    var n = function (v) { return (v === null || v === undefined) ? "–" : Number(v).toLocaleString("en"); };
    var totals = document.getElementById("totals");
    totals.textContent = "";
    [["Cutouts", n(data.totals.cutouts)], ["Bytes", Site.bytes(data.totals.bytes)], ["Requests", n(data.totals.requests)], ["Users", n(data.totals.users)]].forEach(function (t) {
      var d = document.createElement("div"); var s = document.createElement("strong"); s.textContent = t[1];
      d.appendChild(s); d.appendChild(document.createTextNode(t[0])); totals.appendChild(d);
    });
    var days = data.per_day.map(function (d) { return {label: d.day, tick: d.day.slice(5), value: d.cutouts, shown: n(d.cutouts)}; });
    put("chart-per-day-cutouts", columns("Cutouts per day, " + data.days + " days", days, "bar1"),
        table("Cutouts per day", ["day", "cutouts"], data.per_day.map(function (d) { return [d.day, n(d.cutouts)]; })));
    var bytes = data.per_day.map(function (d) { return {label: d.day, tick: d.day.slice(5), value: d.bytes, shown: Site.bytes(d.bytes)}; });
    put("chart-per-day-bytes", columns("Bytes per day", bytes, "bar2"),
        table("Bytes per day", ["day", "bytes"], data.per_day.map(function (d) { return [d.day, n(d.bytes)]; })));
    [["chart-by-survey", "by_survey", "survey", "bar3"], ["chart-by-format", "by_format", "format", "bar4"], ["chart-by-kind", "by_kind", "kind", "bar1"]].forEach(function (c) {
      var list = data[c[1]] || [];
      put(c[0], rows("Cutouts by " + c[2], list.map(function (d) { return {label: d[c[2]], value: d.cutouts, shown: n(d.cutouts)}; }), c[3]),
          table("Cutouts by " + c[2], [c[2], "cutouts", "bytes"], list.map(function (d) { return [d[c[2]], n(d.cutouts), n(d.bytes)]; })));
    });
    put("chart-phases", rows("Jobs by phase", data.jobs_by_phase.map(function (d) { return {label: d.phase, value: d.jobs, shown: n(d.jobs)}; }), "bar2"),
        table("Jobs by phase", ["phase", "jobs"], data.jobs_by_phase.map(function (d) { return [d.phase, n(d.jobs)]; })));
    put("chart-users", rows("Top users by cutouts", data.top_users.map(function (d) { return {label: d.user, value: d.cutouts, shown: n(d.cutouts)}; }), "bar3"),
        table("Top users", ["user", "cutouts", "bytes"], data.top_users.map(function (d) { return [d.user, n(d.cutouts), n(d.bytes)]; })));
    var lat = data.latency_ms || {};
    var points = ["p50", "p90", "p99", "max"].filter(function (k) { return lat[k] !== null && lat[k] !== undefined; });
    put("chart-latency", rows("/sync latency percentiles of " + n(lat.count) + " requests", points.map(function (k) { return {label: k, value: lat[k], shown: lat[k].toFixed(1) + " ms"}; }), "bar4"),
        table("/sync latency (" + n(lat.count) + " requests)", ["percentile", "ms"], ["p50", "p90", "p99", "max"].map(function (k) { return [k, lat[k] === null || lat[k] === undefined ? "–" : lat[k].toFixed(1)]; })));
  }
  return {draw: draw};
})();

(function () {
  var box = document.getElementById("stats");
  var status = document.getElementById("stats-status");
  if (!box) return;
  fetch(box.dataset.source, {credentials: "same-origin", headers: {"Accept": "application/json"}}).then(function (response) {
    if (!response.ok) return Site.errorText(response).then(function (t) { status.textContent = t; status.className = "error-text"; });
    return response.json().then(function (data) {
      Charts.draw(data);
      box.hidden = false;
      status.textContent = "From " + data.since.replace("T", " ").slice(0, 16) + " to " + data.until.replace("T", " ").slice(0, 16) + " UTC.";
    });
  }, function () { status.textContent = "The service did not answer."; status.className = "error-text"; });
})();
