// Before the first paint: the theme chosen on this browser, if any (else the system's).
(function () {
  try {
    var chosen = localStorage.getItem("theme");
    if (chosen === "light" || chosen === "dark") document.documentElement.dataset.theme = chosen;
  } catch (e) { /* storage refused: follow the system */ }
})();
