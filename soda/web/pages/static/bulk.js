// The bulk page: the table goes to the bulk job list as UPLOAD, then the job is polled
// (its phase, and the progress element of its jobInfo) until it ends.
"use strict";
(function () {
  var form = document.getElementById("bulk-form");
  var problem = document.getElementById("b-error");
  var PROGRESS = "urn:x-uws:progress:v1";

  function text(doc, name) {
    var el = doc.getElementsByTagNameNS("*", name)[0];
    return el ? el.textContent.trim() : "";
  }
  function follow(job) {
    document.getElementById("job-panel").hidden = false;
    var link = document.getElementById("job-link");
    link.href = job; link.textContent = job.split("/").pop();
    var bar = document.getElementById("job-progress");
    function poll() {
      fetch(job, {credentials: "same-origin"}).then(function (response) {
        if (!response.ok) return Site.errorText(response).then(function (t) { document.getElementById("job-error").textContent = t; });
        return response.text().then(function (body) {
          var doc = new DOMParser().parseFromString(body, "application/xml");
          var phase = text(doc, "phase");
          var shown = document.getElementById("job-phase");
          shown.textContent = phase; shown.className = "phase phase-" + phase;
          var progress = doc.getElementsByTagNameNS(PROGRESS, "progress")[0];
          if (progress) {
            var total = +progress.getAttribute("total"), done = +progress.getAttribute("done"), failed = +progress.getAttribute("failed");
            bar.max = Math.max(total, 1); bar.value = done + failed;
            bar.textContent = Math.round(100 * (done + failed) / Math.max(total, 1)) + "%";
            document.getElementById("job-count").textContent = (done + failed) + " of " + total + " rows cut" + (failed ? " (" + failed + " failed)" : "");
          }
          if (phase === "COMPLETED") {
            bar.max = 1; bar.value = 1;
            document.getElementById("job-zip").href = job + "/results.zip";
            document.getElementById("job-manifest").href = job + "/results/manifest.csv";
            document.getElementById("job-downloads").hidden = false;
          } else if (phase === "ERROR" || phase === "ABORTED") {
            document.getElementById("job-error").textContent = text(doc, "message") || ("The job ended in " + phase + ".");
          } else {
            setTimeout(poll, 700);
          }
        });
      }, function () { setTimeout(poll, 2000); });
    }
    poll();
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    problem.textContent = "";
    var file = document.getElementById("b-file").files[0];
    if (!file) { problem.textContent = "UsageError: choose a position table first"; document.getElementById("b-file").focus(); return; }
    var radius = parseFloat(document.getElementById("b-radius").value);
    if (!(radius > 0)) { problem.textContent = "UsageError: the radius must be a positive number of arcseconds"; return; }
    var data = new FormData();
    data.append("UPLOAD", "positions,param:positions");
    data.append("positions", file, file.name);
    data.append("RADIUS", String(radius / 3600));
    form.querySelectorAll('input[name="band"]:checked').forEach(function (box) { data.append("FILTER", box.value); });
    data.append("LAYOUT", document.getElementById("b-layout").value);
    data.append("PHASE", "RUN");
    var button = document.getElementById("b-submit");
    button.disabled = true;
    Site.send(form.dataset.action, {method: "POST", body: data}).then(function (response) {
      button.disabled = false;
      if (!response.ok) return Site.errorText(response).then(function (t) { problem.textContent = t; });
      follow(response.url);  // the 303 to the new job, followed
    }, function () { button.disabled = false; problem.textContent = "The service did not answer."; });
  });
})();
