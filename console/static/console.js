// The console's own behaviour. It hangs on data-* attributes only: the
// Content-Security-Policy allows no inline script or handler, and every
// action works as a plain form without this file.
(function () {
  "use strict";

  function human(n) {
    if (n === null || n === undefined) return "";
    var u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }

  // [data-chart]: a usage chart, {"t": [unix days], "in": [...], "out": [...]}.
  function drawCharts(root) {
    if (typeof uPlot === "undefined") return;
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.getAttribute("data-drawn")) return;
      var d;
      try { d = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
      el.setAttribute("data-drawn", "1");
      var opts = {
        width: Math.max(el.clientWidth, 320),
        height: 240,
        scales: { x: { time: true } },
        series: [
          {},
          { label: "in (from clients)", stroke: "#2563eb", fill: "rgba(37,99,235,0.12)", width: 2, value: function (u, v) { return human(v); } },
          { label: "out (to clients)", stroke: "#d97706", width: 2, value: function (u, v) { return human(v); } }
        ],
        axes: [{}, { size: 80, values: function (u, vals) { return vals.map(human); } }]
      };
      new uPlot(opts, [d.t, d["in"], d.out], el);
    });
  }

  // [data-live]: a region the live stream updates. It counts the updates
  // it received in data-live-updates (tests wait for the first, which the
  // server sends once it follows the live state); a stream that says the
  // session ended sends the page to the login form.
  function watchLive() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      el.addEventListener("htmx:sseMessage", function (e) {
        if (e.detail && e.detail.type === "logout") { window.location.assign("/login"); return; }
        el.setAttribute("data-live-updates", String(Number(el.getAttribute("data-live-updates") || 0) + 1));
      });
    });
  }

  // htmx requests carry the session's CSRF token as a header (forms carry
  // it as a field).
  document.addEventListener("htmx:configRequest", function (e) {
    var m = document.querySelector('meta[name="csrf-token"]');
    if (m) e.detail.headers["X-CSRF-Token"] = m.getAttribute("content");
  });
  document.addEventListener("htmx:afterSwap", function (e) { drawCharts(e.target); });
  document.addEventListener("DOMContentLoaded", function () { drawCharts(); watchLive(); });
})();
