// heartbeat-gateway admin: small progressive enhancements. Every page works without this file.
// - the status table refreshes itself (counts and rows) without reloading the page;
// - SMS toggles in the table switch in place;
// - "Copy" buttons next to snippets.
(function () {
  "use strict";
  var REFRESH_MS = 15000;

  function setupOverview(box) {
    var src = box.getAttribute("data-src");
    var busy = false;

    function swap(html) {
      if (box.innerHTML !== html) { box.innerHTML = html; }
    }

    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(src, { credentials: "same-origin", headers: { "X-Hbgw-Partial": "overview" } })
        .then(function (r) {
          if (r.redirected || r.status === 401 || r.status === 403) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) { swap(html); } })
        .catch(function () { /* offline for a moment: try again at the next tick */ })
        .then(function () { busy = false; });
    }

    box.addEventListener("submit", function (ev) {
      var form = ev.target, button = ev.submitter;
      if (!button || !button.name || !window.fetch) { return; }
      ev.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      body.append(button.name, button.value);
      button.setAttribute("aria-busy", "true");
      busy = true;
      fetch(form.action, { method: "POST", body: body, credentials: "same-origin",
                           headers: { "X-Hbgw-Partial": "overview" } })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) { swap(html); })
        .catch(function () {
          // fall back to the plain form post (and its redirect)
          var field = document.createElement("input");
          field.type = "hidden"; field.name = button.name; field.value = button.value;
          form.appendChild(field);
          form.submit();
        })
        .then(function () { busy = false; });
    });

    setInterval(refresh, REFRESH_MS);
    document.addEventListener("visibilitychange", refresh);
  }

  function setupCopy(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(target.textContent).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("overview");
    if (box && window.fetch) { setupOverview(box); }
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), setupCopy);
  });
})();
