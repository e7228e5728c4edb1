// Injected first into the page's <head>: records every JavaScript error and
// console error the page raises, for check.js to report.
window.__renderCheckErrors = [];
window.addEventListener("error", function (e) {
  window.__renderCheckErrors.push("error: " + (e.message || String(e.error || e)));
});
window.addEventListener("unhandledrejection", function (e) {
  window.__renderCheckErrors.push("unhandled rejection: " + String(e.reason));
});
(function () {
  var original = console.error;
  console.error = function () {
    window.__renderCheckErrors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
