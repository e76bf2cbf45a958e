// My account: create a token (shown once) and revoke one, at /tokens.
"use strict";
(function () {
  var status = document.getElementById("token-status");
  function fail(response) {
    return Site.errorText(response).then(function (t) { status.textContent = t; status.className = "error-text"; });
  }
  document.getElementById("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var body = new URLSearchParams(new FormData(event.target));
    Site.send(Site.base + "/tokens", {method: "POST", body: body, headers: {"Accept": "application/json"}}).then(function (response) {
      if (!response.ok) return fail(response);
      return response.json().then(function (made) {
        document.getElementById("new-token-secret").textContent = made.token;
        document.getElementById("new-token").hidden = false;
        var none = document.getElementById("no-tokens");
        if (none) none.remove();
        var row = document.createElement("tr");
        row.dataset.token = made.id;
        [made.name, (made.created || "").slice(0, 10), (made.expires || "").slice(0, 10), "never"].forEach(function (v) {
          var cell = document.createElement("td"); cell.textContent = v; row.appendChild(cell);
        });
        var cell = document.createElement("td"), revoke = document.createElement("button");
        revoke.type = "button"; revoke.className = "danger"; revoke.textContent = "Revoke";
        revoke.dataset.revoke = made.id; revoke.dataset.name = made.name;
        revoke.setAttribute("aria-label", "Revoke the token " + made.name);
        cell.appendChild(revoke); row.appendChild(cell);
        document.querySelector("#tokens tbody").appendChild(row);
        status.textContent = "Token " + made.name + " created.";
        status.className = "ok-text";
        event.target.reset();
      });
    }, function () { status.textContent = "The service did not answer."; });
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-revoke]");
    if (!button) return;
    if (!confirm("Revoke the token " + button.dataset.name + "? Scripts using it stop working.")) return;
    Site.send(Site.base + "/tokens/" + encodeURIComponent(button.dataset.revoke), {method: "DELETE", headers: {"Accept": "application/json"}}).then(function (response) {
      if (!response.ok) return fail(response);
      button.closest("tr").remove();
      status.textContent = "Token " + button.dataset.name + " revoked."; status.className = "ok-text";
    }, function () { status.textContent = "The service did not answer."; });
  });
})();
