// The web UI's one script (served from /static, so the Content-Security-Policy's script-src 'self'
// allows it; no page has inline script). It adds a "Copy" button beside each readonly input
// marked data-copy; without it (script off) the input's text can still be selected and copied.
// It also opens the <details> the address's #fragment names (a webhook's delivery log after a ping).
"use strict";
function openTargetedDetails() {
  var target = location.hash.length > 1 ? document.getElementById(location.hash.slice(1)) : null;
  if (target && target.tagName === "DETAILS") {
    target.open = true;
  }
}
window.addEventListener("hashchange", openTargetedDetails);
document.addEventListener("DOMContentLoaded", function () {
  openTargetedDetails();
  document.querySelectorAll("input[data-copy]").forEach(function (input) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", input.getAttribute("data-copy"));
    var status = document.createElement("span");
    status.className = "copied";
    status.setAttribute("role", "status");
    function done(text) {
      status.textContent = text;
      setTimeout(function () { status.textContent = ""; }, 2000);
    }
    button.addEventListener("click", function () {
      input.select();
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(function () { done("Copied"); },
          function () { done("Press Ctrl+C to copy"); });
      } else {
        done(document.execCommand("copy") ? "Copied" : "Press Ctrl+C to copy");
      }
    });
    input.addEventListener("focus", function () { input.select(); });
    input.insertAdjacentElement("afterend", status);
    input.insertAdjacentElement("afterend", button);
  });
});
