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
  // Drawn on it: the survey's coverage map, filled (from /coverage/<survey>.json, MOC 2.0
  // §4.2.2 JSON; A.MOCFromURL would read any URL as a FITS MOC and fail on it), and the
  // outlines of the images near the view from the SIA query (their s_region polygons).
  var sky = document.getElementById("aladin");
  var FOOTPRINTS_MAX = 500;  // images outlined at once
  function polygons(votable) {
    // The s_region (DALI polygon) of each row of an SIA answer, each outline once (the
    // bands of a field share one).
    var doc = new DOMParser().parseFromString(votable, "application/xml");
    var names = Array.prototype.map.call(doc.getElementsByTagName("FIELD"), function (f) { return f.getAttribute("name"); });
    var at = names.indexOf("s_region"), seen = {}, out = [];
    if (at < 0) return out;
    Array.prototype.forEach.call(doc.getElementsByTagName("TR"), function (row) {
      var cell = row.getElementsByTagName("TD")[at];
      var text = cell ? cell.textContent.trim() : "";
      if (!text || seen[text]) return;
      seen[text] = true;
      var numbers = text.split(/\s+/).map(Number), vertices = [];
      for (var i = 0; i + 1 < numbers.length; i += 2) vertices.push([numbers[i], numbers[i + 1]]);
      if (vertices.length >= 3 && vertices.every(function (v) { return isFinite(v[0]) && isFinite(v[1]); })) out.push(vertices);
    });
    return out;
  }
  function startSky() {
    var ra = document.getElementById("f-ra"), dec = document.getElementById("f-dec");
    var note = document.getElementById("sky-status");
    A.init.then(function () {
      var aladin = A.aladin(sky, {target: ra.value + " " + dec.value, fov: 0.5, showReticle: true,
                                  showCooGridControl: false, showSimbadPointerControl: false});
      var coverage = null;
      function cover() {
        // The chosen survey's coverage map, in place of the last one.
        var name = survey.value;
        delete sky.dataset.coverageReady;
        var url = sky.dataset.coverage.replace(/[^\/]*\.json$/, encodeURIComponent(name) + ".json");
        fetch(url, {credentials: "same-origin"}).then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        }).then(function (moc) {
          if (name !== survey.value) return;
          if (coverage) aladin.removeOverlay(coverage);
          coverage = A.MOCFromJSON(moc, {name: name + " coverage", color: "#1f6feb", fillColor: "#1f6feb",
                                         fill: true, edge: true, opacity: 0.35, lineWidth: 1},
                                   function () { sky.dataset.coverageReady = name; });
          aladin.addMOC(coverage);
        }).catch(function (why) { note.textContent = "The survey's coverage map did not load (" + why + ")."; });
      }
      cover();

      var outlines = A.graphicOverlay({name: "images", color: "#f0883e", lineWidth: 2});
      aladin.addOverlay(outlines);
      var loaded = null;
      function outline() {
        // The images within a degree of the view's centre (the survey's own ones).
        var centre = aladin.getRaDec(), key = centre[0].toFixed(3) + " " + centre[1].toFixed(3);
        if (key === loaded) return;
        loaded = key;
        var params = new URLSearchParams({POS: "CIRCLE " + centre[0].toFixed(5) + " " + centre[1].toFixed(5) + " 1",
                                          COLLECTION: survey.value, MAXREC: String(FOOTPRINTS_MAX)});
        fetch(Site.base + "/query?" + params, {credentials: "same-origin"}).then(function (response) {
          return response.ok ? response.text() : Promise.reject(new Error("HTTP " + response.status));
        }).then(function (text) {
          if (key !== loaded) return;
          var found = polygons(text);
          outlines.removeAll();
          outlines.addFootprints(found.map(function (vertices) { return A.polygon(vertices); }));
          sky.dataset.footprints = String(found.length);
          sky.dataset.footprintsAt = key;  // for the browser test: the outlines round this centre
        }).catch(function (why) { loaded = null; note.textContent = "The images' outlines did not load (" + why + ")."; });
      }
      outline();
      aladin.on("positionChanged", function () { clearTimeout(outline.timer); outline.timer = setTimeout(outline, 400); });
      aladin.on("click", function (e) {
        if (!e || e.ra === undefined) return;
        ra.value = e.ra.toFixed(5); dec.value = e.dec.toFixed(5); soon();
        aladin.gotoRaDec(e.ra, e.dec);  // the reticle on the new position
      });
      survey.addEventListener("change", function () { loaded = null; cover(); });
      form.addEventListener("change", function () {
        var r = parseFloat(ra.value), d = parseFloat(dec.value);
        if (isFinite(r) && isFinite(d)) aladin.gotoRaDec(r, d);
      });
    }, function (why) {
      sky.hidden = true;
      note.textContent = "The sky view cannot start in this browser (" + why + "); type the position instead.";
    });
  }
  if (sky) {
    if (window.A) startSky(); else document.addEventListener("aladinready", startSky);
  }
})();
