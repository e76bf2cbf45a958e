// My jobs: cancel (PHASE=ABORT) and delete (DELETE), each after a confirmation.
"use strict";
(function () {
  var status = document.getElementById("jobs-status");
  function act(url, options, what) {
    Site.send(url, options).then(function (response) {
      // The UWS answer is a 303 to the job list or the job, followed: any 2xx is done.
      if (!response.ok) return Site.errorText(response).then(function (t) { status.textContent = t; status.className = "error-text"; });
      status.textContent = what; status.className = "ok-text";
      location.reload();
    }, function () { status.textContent = "The service did not answer."; });
  }
  document.addEventListener("click", function (event) {
    var abort = event.target.closest("[data-abort]");
    var remove = event.target.closest("[data-delete]");
    if (abort) {
      var id = abort.closest("tr").dataset.id;
      if (!confirm("Cancel job " + id + "? Its work stops; results written so far are kept.")) return;
      var body = new URLSearchParams({PHASE: "ABORT"});
      act(abort.dataset.abort + "/phase", {method: "POST", body: body}, "Job " + id + " cancelled.");
    } else if (remove) {
      var rid = remove.closest("tr").dataset.id;
      if (!confirm("Delete job " + rid + " and its results? This cannot be undone.")) return;
      act(remove.dataset.delete, {method: "DELETE"}, "Job " + rid + " deleted.");
    }
  });
})();
