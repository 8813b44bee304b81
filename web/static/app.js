// heartbeat-gateway admin: small progressive enhancements. Every page works without this file.
// - live pages: the page polls its partial (<body data-live>) and swaps the parts that changed
//   (<... data-part>): the banner on every page, the status table, a check's status, chart, pings
//   and events, the modem's status, the demo phone, the outbox and inbox; the tab title follows
//   the down count;
// - SMS toggles in the table switch in place;
// - "Copy" buttons next to snippets.
(function () {
  "use strict";

  function downTitle(down) {
    var bare = document.title.replace(/^\(\d+\) /, "");
    document.title = (down && down !== "0" ? "(" + down + ") " : "") + bare;
  }

  function typing() {
    var el = document.activeElement;
    return el && /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName) ? el : null;
  }

  function stickToBottom(part) {
    Array.prototype.forEach.call(part.querySelectorAll(".screen"), function (s) { s.scrollTop = s.scrollHeight; });
  }

  // Swap every part of ``html`` into the page where it changed; a part holding the control the
  // visitor is typing in (or has open) waits for the next round, unless ``force``.
  function apply(html, force) {
    var tpl = document.createElement("template");
    tpl.innerHTML = html;
    Array.prototype.forEach.call(tpl.content.querySelectorAll("[data-part]"), function (fresh) {
      var name = fresh.getAttribute("data-part");
      var old = document.querySelector('[data-part="' + name + '"]');
      if (!old) { return; }
      if (name === "banner") { downTitle(fresh.getAttribute("data-down")); }
      var busy = typing();
      if (!force && busy && old.contains(busy)) { return; }
      if (old.innerHTML !== fresh.innerHTML) {
        old.innerHTML = fresh.innerHTML;
        stickToBottom(old);
      }
    });
  }

  function setupLive(src, every) {
    var busy = false;

    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(src, { credentials: "same-origin", headers: { "X-Hbgw-Partial": "overview" } })
        .then(function (r) {
          if (r.redirected || r.status === 401 || r.status === 403) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) { apply(html, false); } })
        .catch(function () { /* offline for a moment: try again at the next tick */ })
        .then(function () { busy = false; });
    }

    setInterval(refresh, every);
    document.addEventListener("visibilitychange", refresh);
    return function (html) { apply(html, true); };
  }

  function setupToggles(box, swap) {
    box.addEventListener("submit", function (ev) {
      var form = ev.target, button = ev.submitter;
      if (!button || !button.name || !window.fetch || form.getAttribute("action") !== "/sms") { return; }
      if (button.getAttribute("formaction")) { return; }  // Acknowledge: a plain post
      ev.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      body.append(button.name, button.value);
      button.setAttribute("aria-busy", "true");
      fetch(form.action + location.search, { method: "POST", body: body, credentials: "same-origin",
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
        });
    });
  }

  // A form marked data-inplace (the demo phone's reply, answering its call) posts without
  // leaving the page: the redirect's page comes back through fetch and its parts are swapped in.
  // Delegated, so forms inside live parts keep working after a swap.
  function setupInplace(swap) {
    document.addEventListener("submit", function (ev) {
      var form = ev.target, button = ev.submitter;
      if (!form.hasAttribute("data-inplace")) { return; }
      ev.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      if (button && button.name) { body.append(button.name, button.value); }
      fetch(form.action, { method: "POST", body: body, credentials: "same-origin" })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.text();
        })
        .then(function (html) {
          Array.prototype.forEach.call(form.querySelectorAll("input:not([type=hidden])"), function (i) { i.value = ""; });
          swap(html);
        })
        .catch(function () {
          if (button && button.name) {
            var field = document.createElement("input");
            field.type = "hidden"; field.name = button.name; field.value = button.value;
            form.appendChild(field);
          }
          form.submit();
        });
    });
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
    var src = document.body.getAttribute("data-live");
    Array.prototype.forEach.call(document.querySelectorAll("[data-part]"), stickToBottom);
    if (src && window.fetch) {
      var swap = setupLive(src, parseInt(document.body.getAttribute("data-every"), 10) || 10000);
      var box = document.getElementById("overview");
      if (box) { setupToggles(box, swap); }
      setupInplace(swap);
    }
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), setupCopy);
  });
})();
