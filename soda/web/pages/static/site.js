// What every page shares: the theme toggle, copy buttons, the session's CSRF token.
"use strict";
var Site = (function () {
  var root = document.documentElement;
  var system = window.matchMedia("(prefers-color-scheme: dark)");

  function effective() {
    return root.dataset.theme || (system.matches ? "dark" : "light");
  }
  function showToggle() {
    var button = document.getElementById("theme-toggle");
    if (!button) return;
    var dark = effective() === "dark";
    button.textContent = dark ? "Light theme" : "Dark theme";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
  }
  function toggle() {
    var next = effective() === "dark" ? "light" : "dark";
    root.dataset.theme = next;
    try { localStorage.setItem("theme", next); } catch (e) { /* not remembered */ }
    showToggle();
    document.dispatchEvent(new CustomEvent("themechange"));
  }
  var button = document.getElementById("theme-toggle");
  if (button) button.addEventListener("click", toggle);
  system.addEventListener("change", function () { showToggle(); document.dispatchEvent(new CustomEvent("themechange")); });
  showToggle();

  document.addEventListener("click", function (event) {
    var target = event.target.closest("[data-copy]");
    if (!target) return;
    var text = document.getElementById(target.dataset.copy).textContent;
    var done = function () { var old = target.textContent; target.textContent = "Copied"; setTimeout(function () { target.textContent = old; }, 1500); };
    if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, function () {});
  });

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.content : "";
  }
  // Requests that change things carry the session's CSRF token (soda/web/access.py checks it).
  function send(url, options) {
    options = options || {};
    options.headers = Object.assign({"X-CSRF-Token": meta("csrf-token")}, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options);
  }
  // A DALI error document begins with its label; show it as it came.
  function errorText(response) {
    return response.text().then(function (text) {
      return (text || ("HTTP " + response.status)).trim().split("\n")[0];
    });
  }
  function bytes(n) {
    if (n === null || n === undefined) return "";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  return {base: meta("base"), send: send, errorText: errorText, bytes: bytes, effectiveTheme: effective};
})();
