// Injected at the end of the report's <body>: checks the page as the
// browser laid it out and writes a JSON verdict into <pre id="verdict">.
//
// - no JavaScript error or console error;
// - every chart is an inline <svg> inside a <figure class="chart"> whose
//   data-title, data-x-label and data-y-label are drawn in it as visible
//   SVG text, inside the chart;
// - no two text labels of a chart overlap (bounding boxes of the rendered
//   <text> elements), in particular in the quality chart;
// - no empty section: every <h2> and <h3> is followed by content before the
//   next heading, every table has a body row, every chart group a chart,
//   every chart something drawn;
// - the sections and chart kinds the caller expects (window.__renderCheckExpect).
(function () {
  var problems = [];
  var stats = { charts: 0, texts: 0, kinds: {} };
  var expect = window.__renderCheckExpect || {};
  // Tolerance in pixels: glyph boxes of neighbouring labels may touch.
  var SLACK = 1;

  function label(el) {
    var fig = el.closest("figure");
    return fig ? fig.id : el.tagName.toLowerCase();
  }
  function overlap(a, b) {
    var w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
    var h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    return w > SLACK && h > SLACK;
  }
  function texts(svg) {
    return Array.prototype.filter.call(svg.querySelectorAll("text"), function (t) {
      return t.textContent.trim() !== "";
    });
  }

  (window.__renderCheckErrors || []).forEach(function (e) {
    problems.push("javascript: " + e);
  });

  // Every svg is a chart in a figure.
  document.querySelectorAll("svg").forEach(function (svg) {
    if (!svg.closest("figure.chart")) problems.push("an svg outside a chart figure");
  });

  document.querySelectorAll("figure.chart").forEach(function (fig) {
    stats.charts++;
    var kind = fig.getAttribute("data-chart") || "?";
    stats.kinds[kind] = (stats.kinds[kind] || 0) + 1;
    var svg = fig.querySelector("svg");
    if (!svg) {
      problems.push(fig.id + ": no svg (" + fig.textContent.trim().slice(0, 80) + ")");
      return;
    }
    var box = svg.getBoundingClientRect();
    if (box.width < 50 || box.height < 50) problems.push(fig.id + ": svg drawn " + box.width + "x" + box.height);
    var shapes = svg.querySelectorAll("polyline, line, rect, circle, path, polygon").length;
    if (shapes < 3) problems.push(fig.id + ": nothing drawn (" + shapes + " shapes)");
    var all = texts(svg);
    stats.texts += all.length;
    ["data-title", "data-x-label", "data-y-label"].forEach(function (attr) {
      var want = (fig.getAttribute(attr) || "").trim();
      if (!want) {
        problems.push(fig.id + ": no " + attr);
        return;
      }
      var found = all.filter(function (t) { return t.textContent.trim() === want; });
      if (!found.length) {
        problems.push(fig.id + ": " + attr + " \"" + want + "\" not drawn");
        return;
      }
      var r = found[0].getBoundingClientRect();
      if (r.width < 1 || r.height < 1) problems.push(fig.id + ": " + attr + " \"" + want + "\" invisible");
    });
    var rects = all.map(function (t) { return t.getBoundingClientRect(); });
    rects.forEach(function (r, i) {
      var out = r.left < box.left - 2 || r.right > box.right + 2 || r.top < box.top - 2 || r.bottom > box.bottom + 2;
      if (out) problems.push(fig.id + ": label \"" + all[i].textContent.trim() + "\" drawn outside the chart");
      for (var j = i + 1; j < rects.length; j++) {
        if (overlap(r, rects[j])) {
          problems.push(fig.id + ": labels overlap: \"" + all[i].textContent.trim() + "\" and \"" + all[j].textContent.trim() + "\"");
        }
      }
    });
  });

  // Headings followed by content before the next heading of the same or a higher level.
  document.querySelectorAll("h2, h3").forEach(function (h) {
    var level = Number(h.tagName[1]);
    var content = false;
    for (var el = h.nextElementSibling; el; el = el.nextElementSibling) {
      var m = /^H([1-6])$/.exec(el.tagName);
      if (m && Number(m[1]) <= level) break;
      if (el.textContent.trim() !== "" || el.querySelector("svg")) {
        content = true;
        break;
      }
    }
    // A heading inside a section (a case) may be its first child: the
    // section's other children are its content.
    if (!content && h.parentElement && h.parentElement.tagName === "SECTION") {
      content = h.parentElement.textContent.trim() !== h.textContent.trim();
    }
    if (!content) problems.push("empty section: \"" + h.textContent.trim() + "\"");
  });
  document.querySelectorAll("table").forEach(function (t) {
    var rows = t.querySelectorAll("tbody tr");
    if (!rows.length) problems.push("empty table after \"" + (t.previousElementSibling || {}).textContent + "\"");
  });
  document.querySelectorAll(".charts").forEach(function (d) {
    if (!d.querySelector("figure")) problems.push("a chart group without charts");
  });

  (expect.kinds || []).forEach(function (k) {
    if (!stats.kinds[k]) problems.push("expected a chart of kind " + k + ", found none");
  });
  (expect.no_kinds || []).forEach(function (k) {
    if (stats.kinds[k]) problems.push("expected no chart of kind " + k + ", found " + stats.kinds[k]);
  });
  (expect.ids || []).forEach(function (id) {
    if (!document.getElementById(id)) problems.push("expected an element #" + id);
  });
  (expect.texts || []).forEach(function (s) {
    if (document.body.textContent.indexOf(s) < 0) problems.push("expected the text \"" + s + "\"");
  });

  var out = document.getElementById("verdict") || document.body.appendChild(document.createElement("pre"));
  out.id = "verdict";
  out.textContent = JSON.stringify({ ok: problems.length === 0, problems: problems, stats: stats });
})();
