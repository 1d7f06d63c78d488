// The player: native HLS where the browser has it (Safari, Chromium 142+), hls.js where it is
// bundled, the original file as the last resort. Quality: Auto (the master playlist) or one
// rendition's own playlist.
"use strict";

(() => {
  const video = document.getElementById("player");
  if (!video) return;
  const master = video.dataset.master;
  const original = video.dataset.original;
  const select = document.getElementById("quality");
  const note = document.getElementById("player-note");
  let hls = null;

  function load(url) {
    const at = video.currentTime;
    const wasPlaying = !video.paused;
    if (hls) { hls.destroy(); hls = null; delete video.hls; }
    if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
    } else if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls();
      hls.loadSource(url);
      hls.attachMedia(video);
      video.hls = hls;  // so a console, a script or a test can see and steer the levels
    } else if (original) {
      video.src = original;
      if (note) note.textContent = "This browser cannot stream HLS; playing the original file.";
      if (select) select.disabled = true;
    }
    if (at) video.addEventListener("loadedmetadata", () => { video.currentTime = at; }, { once: true });
    if (wasPlaying) video.play().catch(() => {});
  }

  if (master) {
    load(master);
    select?.addEventListener("change", () => load(select.value));
  } else if (original) {
    video.src = original;
  }

  const status = document.getElementById("live-status");
  if (status && status.dataset.settled !== "true") {
    const stream = new EventSource(`/api/videos/${status.dataset.id}/events`);
    stream.addEventListener("video", (event) => {
      const data = JSON.parse(event.data);
      status.textContent =
        data.status === "PROCESSING" ? `Processing… ${data.progress}%`
        : data.status === "READY" && data.progress < 100 ? `Playable now; more qualities coming (${data.progress}%)`
        : data.status === "FAILED" ? `Processing failed: ${data.error}` : data.status;
      if ((data.status === "READY" && !master) || data.status === "FAILED") {
        stream.close();
        window.location.reload();  // nothing is playing yet: show the player or the reason
      } else if (data.status === "READY" && data.progress === 100 && select) {
        // New qualities landed while someone may be watching: offer them, keep playing.
        const chosen = select.value;
        select.replaceChildren(new Option("Auto", master));
        for (const r of data.renditions.slice().reverse()) {
          select.append(new Option(`${r.name} (${r.width}×${r.height})`, master.replace("master.m3u8", `${r.name}/index.m3u8`)));
        }
        select.value = chosen;
        // Damage found while encoding the ladder: say so where the progress was.
        status.textContent = (data.warnings || []).join(" ");
        stream.close();
      }
    });
    stream.addEventListener("end", () => stream.close());
  }
})();
