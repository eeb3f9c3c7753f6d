// Staff consoles: pages work without this file. Where a page marks a region
// data-refresh="<seconds>", its figures are fetched again every so many seconds and
// replaced in place (a meta refresh would reload the whole page under the reader, and
// could not be paused: WCAG 2.2.1); the button beside it pauses and resumes.
(function () {
  "use strict";
  var region = document.querySelector("[data-refresh]");
  if (!region || !window.fetch || !window.DOMParser) return;
  var every = Math.max(5, parseInt(region.getAttribute("data-refresh"), 10) || 10) * 1000;
  var toggle = document.getElementById("refresh-toggle");
  var paused = false;
  var timer = null;
  function schedule() {
    timer = window.setTimeout(update, every);
  }
  function update() {
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null || paused) return;
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        if (fresh) region.innerHTML = fresh.innerHTML;
      })
      .catch(function () { /* the next try may work; the figures say when they were taken */ })
      .then(function () { if (!paused) schedule(); });
  }
  if (toggle) {
    toggle.hidden = false;
    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      if (paused) { window.clearTimeout(timer); } else { update(); }
    });
  }
  schedule();
})();
