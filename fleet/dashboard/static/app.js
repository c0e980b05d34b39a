// wasmfleet dashboard: live updates over Server-Sent Events.
//
// A page's live part is #live: data-live is its URL with partial=1, data-topics the event
// topics it follows. When the server says one of them changed, the live part is fetched
// again and swapped in (one fetch at a time; changes during a fetch cause one more). The
// server renders everything; this file only moves HTML it rendered. Without it, or
// without EventSource, the pages still work: reload them.
"use strict";
(function () {
  var live = document.getElementById("live");
  var conn = document.getElementById("conn");
  if (!live || !window.EventSource || !window.fetch) return;
  var topics = (live.getAttribute("data-topics") || "").split(" ").filter(Boolean);
  var url = live.getAttribute("data-live");
  if (!topics.length || !url) return;

  var busy = false, again = false, updates = 0;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        updates++;
        live.setAttribute("data-updates", String(updates));
        syncButtons();
      })
      .catch(function (e) { if (conn) conn.textContent = "update failed: " + e.message; })
      .finally(function () {
        busy = false;
        if (again) { again = false; setTimeout(refresh, 200); }
      });
  }

  // The action buttons sit outside the live part (so a refresh never eats a half-typed
  // reason); the live part says which of them the rollout's state allows.
  function syncButtons() {
    var s = live.querySelector("[data-actions]");
    if (!s) return;
    var can = s.getAttribute("data-actions").split(" ");
    var buttons = document.querySelectorAll("button[data-action]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].disabled = can.indexOf(buttons[i].getAttribute("data-action")) < 0;
    }
  }

  var opened = false;
  var es = new EventSource("/events");
  topics.forEach(function (t) { es.addEventListener(t, refresh); });
  es.onopen = function () {
    if (conn) conn.textContent = "live";
    if (opened) refresh(); // back after a cut: catch up
    opened = true;
  };
  es.onerror = function () { if (conn) conn.textContent = "reconnecting…"; };
})();
