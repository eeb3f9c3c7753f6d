// Small improvements only: every page works the same without this file.
(function () {
  "use strict";
  // The hold's countdown: minutes left, updated each 15 s (the page states the end time).
  var el = document.getElementById("countdown");
  if (el) {
    var ends = parseInt(el.getAttribute("data-expires-ms"), 10);
    var label = el.getAttribute("data-minutes-left") || "%s";
    var base = el.textContent;
    var tick = function () {
      var left = Math.max(0, Math.ceil((ends - Date.now()) / 60000));
      el.textContent = base + label.replace("%s", String(left));
      if (left > 0) { setTimeout(tick, 15000); }
    };
    tick();
  }
  // The era beside the year as it is typed: 1940 -> （昭和15年）.
  var year = document.getElementById("year"), era = document.getElementById("era");
  if (year && era) {
    var eras = [["令和", 2019], ["平成", 1989], ["昭和", 1926], ["大正", 1912], ["明治", 1868]];
    year.addEventListener("input", function () {
      var v = year.value.replace(/[０-９]/g, function (c) { return String.fromCharCode(c.charCodeAt(0) - 0xFEE0); });
      var y = /^\d{4}$/.test(v) ? parseInt(v, 10) : 0;
      var text = "";
      for (var i = 0; y && i < eras.length; i++) {
        if (y >= eras[i][1]) { var n = y - eras[i][1] + 1; text = "（" + eras[i][0] + (n === 1 ? "元" : n) + "年）"; break; }
      }
      era.textContent = text;
    });
  }
  // The error summary takes the focus, so a screen reader reads it first.
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();
