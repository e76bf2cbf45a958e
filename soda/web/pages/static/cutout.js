// The cutout page: the preview, downloads and code follow the form as it changes.
"use strict";
(function () {
  var form = document.getElementById("cutout-form");
  var preview = document.getElementById("preview");
  var status = document.getElementById("preview-status");
  var survey = document.getElementById("f-survey");
  var shown = null, timer = null, asked = 0;

  function query() {
    return new URLSearchParams(new FormData(form)).toString();
  }
  function say(text, bad) {
    status.textContent = text;
    status.classList.toggle("error-text", !!bad);
  }
  function showPreview(url) {
    var mine = ++asked;
    say("Cutting…");
    fetch(url, {credentials: "same-origin"}).then(function (response) {
      if (mine !== asked) return;
      if (response.status === 204) { say("No pixels of the survey there: nothing to show.", true); preview.removeAttribute("src"); return; }
      if (!response.ok) return Site.errorText(response).then(function (t) { say(t, true); preview.removeAttribute("src"); });
      return response.blob().then(function (blob) {
        if (mine !== asked) return;
        if (shown) URL.revokeObjectURL(shown);
        shown = URL.createObjectURL(blob);
        preview.src = shown;
        preview.dataset.request = url;
        say("Preview ready.");
      });
    }, function () { say("The service did not answer.", true); });
  }
  function update() {
    fetch(Site.base + "/ui/cutout/request?" + query(), {credentials: "same-origin"}).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { say(body.error, true); return; }
        document.getElementById("code-curl").textContent = body.curl;
        document.getElementById("code-pyvo").textContent = body.pyvo;
        document.getElementById("dl-fits").href = body.fits;
        var png = document.getElementById("dl-png");
        png.href = body.png || "#";
        png.classList.toggle("disabled", !body.png);
        history.replaceState(null, "", "?" + query());
        if (preview.dataset.request !== body.preview) showPreview(body.preview);
        else if (preview.getAttribute("src")) say("Preview ready.");  // the form is right again
      });
    }, function () { say("The service did not answer.", true); });
  }
  function soon() { clearTimeout(timer); timer = setTimeout(update, 350); }

  survey.addEventListener("change", function () {
    // Another survey: its bands, and its example position.
    var option = survey.selectedOptions[0];
    var boxes = document.getElementById("band-boxes");
    boxes.textContent = "";
    option.dataset.bands.split(",").forEach(function (band, i) {
      var label = document.createElement("label");
      label.className = "check";
      var box = document.createElement("input");
      box.type = "checkbox"; box.name = "band"; box.value = band; box.checked = i === 0;
      label.appendChild(box); label.appendChild(document.createTextNode(" " + band));
      boxes.appendChild(label);
    });
    if (option.dataset.ra) {
      document.getElementById("f-ra").value = option.dataset.ra;
      document.getElementById("f-dec").value = option.dataset.dec;
    }
  });
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
  form.addEventListener("submit", function (event) { event.preventDefault(); update(); });

  // The first preview through fetch too, so an error shows as text.
  if (preview.getAttribute("src")) { var first = preview.getAttribute("src"); preview.removeAttribute("src"); showPreview(first); }

  // The sky view, when Aladin Lite is installed (soda/web/pages/vendor.py); sky.js loads it.
  var sky = document.getElementById("aladin");
  function startSky() {
    var ra = document.getElementById("f-ra"), dec = document.getElementById("f-dec");
    A.init.then(function () {
      var aladin = A.aladin(sky, {target: ra.value + " " + dec.value, fov: 1.5, showReticle: true,
                                  showCooGridControl: false, showSimbadPointerControl: false});
      aladin.addMOC(A.MOCFromURL(sky.dataset.coverage, {color: "#1f6feb", opacity: 0.25, lineWidth: 1}));
      aladin.on("click", function (e) {
        if (!e || e.ra === undefined) return;
        ra.value = e.ra.toFixed(5); dec.value = e.dec.toFixed(5); soon();
      });
      form.addEventListener("change", function () {
        var r = parseFloat(ra.value), d = parseFloat(dec.value);
        if (isFinite(r) && isFinite(d)) aladin.gotoRaDec(r, d);
      });
    }, function (why) {
      sky.hidden = true;
      document.getElementById("sky-status").textContent = "The sky view cannot start in this browser (" + why + "); type the position instead.";
    });
  }
  if (sky) {
    if (window.A) startSky(); else document.addEventListener("aladinready", startSky);
  }
})();
