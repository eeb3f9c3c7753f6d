// The waiting page, improved: it polls its status and updates the live region in place.
// The page is right without this file (a <noscript> refresh reloads it instead). An answer
// other than 200, 429 or 503, or a state it does not update in place, reloads the page.
(function () {
  "use strict";
  var data = document.getElementById("wait-data");
  if (!data) { return; }
  var D = JSON.parse(data.textContent), T = D.texts, k = D.ticket, P = D.event_path, S = D.state;
  var q = "?t=" + encodeURIComponent(k) + "&lang=" + D.lang;
  var statusUrl = P + "status", enterUrl = P + "enter" + q, pageUrl = P + "wait" + q;
  function f(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function M(s) { return Math.max(1, Math.ceil(s / 60)); }
  function d(s) {
    var m = M(s);
    return m < 60 ? T.min.replace("{n}", m)
      : T.hour.replace("{h}", Math.floor(m / 60)).replace("{m}", m % 60);
  }
  function w(x) {
    var a = M(x.estimated_wait_low_s), b = M(x.estimated_wait_high_s);
    if (b - a >= 2 && b > 1.2 * a) {
      return b < 60 ? T.mspan.replace("{a}", a).replace("{b}", b)
        : T.span.replace("{a}", d(x.estimated_wait_low_s)).replace("{b}", d(x.estimated_wait_high_s));
    }
    return d(x.estimated_wait_s);
  }
  function show(x) {
    var l = [], live = document.getElementById("live");
    if (x.state === "admitted") { location.href = enterUrl; return 0; }
    if (x.state !== "waiting" && x.state !== "paused" && x.state !== "sold_out") {
      if (x.state !== S) { location.replace(pageUrl); }
      return x.poll_after_s;
    }
    if (S === "prequeue") { location.replace(pageUrl); return 0; }
    l.push(x.ahead ? T.ahead.replace("{n}", f(x.ahead)) : T.next);
    if (x.state === "waiting" && x.estimated_wait_s != null) { l.push(T.wait.replace("{w}", w(x))); }
    if (x.state === "paused") { l.push(T.paused); }
    if (x.state === "sold_out") { l.push(T.sold_out); }
    if (x.slots_left != null) { l.push(T.slots.replace("{n}", f(x.slots_left))); }
    var c = T.chance.split("\n");
    if (x.more_ahead_than_slots) { l = l.concat(c); } else if (x.state === "sold_out") { l.push(c.pop()); }
    live.innerHTML = "";
    l.forEach(function (t, i) {
      var p = document.createElement("p");
      if (i === 0) { p.className = "big"; }
      p.textContent = t;
      live.appendChild(p);
    });
    return x.poll_after_s;
  }
  function poll() {
    var x = new XMLHttpRequest();
    x.open("GET", statusUrl);
    x.setRequestHeader("Accept", "application/json");
    x.setRequestHeader("X-Machiai-Ticket", k);
    x.onload = function () {
      var n = 5, s = x.status;
      try {
        if (s === 200) { n = show(JSON.parse(x.responseText)); }
        else if (s >= 400 && s < 500 && s !== 429) { location.replace(pageUrl); n = 0; }
        else { n = parseInt(x.getResponseHeader("Retry-After") || "5", 10); }
      } catch (_) { /* keep polling */ }
      if (n) { setTimeout(poll, n * 1000); }
    };
    x.onerror = function () { setTimeout(poll, 5000); };
    x.send();
  }
  setTimeout(poll, D.first_poll_ms);
})();
