// Share page of a video still processing: look for its playlist now and then (HEAD does not
// count as a view) and reload once it is there, so the player appears by itself.
"use strict";

(() => {
  const waiting = document.getElementById("share-waiting");
  if (!waiting || !waiting.dataset.poll) return;
  const url = waiting.dataset.poll;
  let delay = 3000;

  async function look() {
    try {
      const response = await fetch(url, { method: "HEAD", credentials: "same-origin", cache: "no-store" });
      if (response.ok) { window.location.reload(); return; }
      if (response.status === 410 || response.status === 403) { window.location.reload(); return; }
    } catch (_) { /* offline for a moment: try again later */ }
    delay = Math.min(delay * 1.5, 30000);
    setTimeout(look, delay);
  }
  setTimeout(look, delay);
})();
