// Progressive enhancement of the account's order page: its status (and tracking number,
// refunds) change in place when the order changes, without a reload. The page works
// without it: it shows the state as of its rendering.
// A WebSocket to /api/v1/live carries hints (docs/LIVE.md), authenticated by the session
// cookie; on a message about this order (or a resync) the script re-reads the page and
// puts its order panel in place of the old one. Re-reading the page also renews an
// expired session cookie, so after the server closes the socket (its token expired, the
// node restarted) the script re-reads, then reconnects where it left off.
(function () {
  "use strict";

  var page = document.querySelector("[data-live-order]");
  var number = page && page.getAttribute("data-live-order");
  if (!number || !window.WebSocket || !window.fetch || !window.DOMParser) return;

  // The log position the page was rendered at: what changed since is heard of first.
  var last = parseInt(page.getAttribute("data-live-position"), 10);
  if (isNaN(last)) last = null;
  var delay = 1000;
  var reading = null;

  var reread = function () {
    if (reading) return reading;
    reading = fetch(window.location.pathname, {
      credentials: "same-origin",
      headers: { Accept: "text/html" }
    })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("section.order");
        var old = document.querySelector("section.order");
        if (fresh && old) old.parentNode.replaceChild(document.importNode(fresh, true), old);
      })
      .catch(function () {})
      .then(function () { reading = null; });
    return reading;
  };

  var connect = function () {
    var url = (window.location.protocol === "https:" ? "wss://" : "ws://") +
      window.location.host + "/api/v1/live" + (last !== null ? "?last_position=" + last : "");
    var socket = new WebSocket(url);
    socket.onopen = function () { delay = 1000; };
    socket.onmessage = function (e) {
      var m;
      try { m = JSON.parse(e.data); } catch (_) { return; }
      if (typeof m.position === "number" && (last === null || m.position > last)) last = m.position;
      if (m.type === "resync" || (m.order === number && m.type)) reread();
    };
    socket.onclose = function () {
      // Re-read first: it renews the session cookie and catches up what a refused
      // reconnect would miss; then try again, waiting longer each time (up to a minute).
      window.setTimeout(function () { reread().then(connect); }, delay);
      delay = Math.min(delay * 2, 60000);
    };
  };

  connect();
})();
