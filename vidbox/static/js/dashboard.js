// The dashboard: rows update live from the server's event stream; rename and delete in place.
"use strict";

(() => {
  const list = document.getElementById("video-list");
  if (!list) return;
  const template = document.getElementById("row-template");
  const empty = document.getElementById("empty-state");

  function badge(el, video) {
    el.className = `badge ${video.status.toLowerCase()}`;
    el.textContent =
      video.status === "PROCESSING" ? `PROCESSING ${video.progress}%`
      : video.status === "READY" && video.progress < 100 ? `READY · HD ${video.progress}%`
      : video.status;
    el.dataset.status = video.status;
  }

  function fill(row, video) {
    row.dataset.id = video.id;
    row.dataset.status = video.status;
    const href = `/videos/${video.id}`;
    for (const a of row.querySelectorAll("a[data-link]")) a.href = href;
    row.querySelector(".title").textContent = video.title;
    badge(row.querySelector(".badge"), video);
    row.querySelector(".size").textContent = vidbox.bytes(video.size_bytes);
    row.querySelector(".dur").textContent = video.duration_seconds ? vidbox.duration(video.duration_seconds) : "";
    const time = row.querySelector("time");
    time.setAttribute("datetime", video.created_at);
    vidbox.localTimes(row);
    const img = row.querySelector("img");
    if (video.thumbnail_url && img.dataset.src !== video.thumbnail_url) {
      img.dataset.src = video.thumbnail_url;
      img.src = `${video.thumbnail_url}?v=${encodeURIComponent(video.ready_at || video.progress)}`;
      img.hidden = false;
    }
    const error = row.querySelector(".error");
    error.textContent = video.error || "";
    error.hidden = !video.error;
    const download = row.querySelector("[data-action=download]");
    download.hidden = !video.download_url;
    if (video.download_url) download.href = video.download_url;
  }

  const count = document.getElementById("video-count");
  function recount(delta) {
    const total = Math.max(0, Number(count.dataset.total) + delta);
    count.dataset.total = String(total);
    count.textContent = `${total} video${total === 1 ? "" : "s"}`;
    if (empty) empty.hidden = total > 0;
  }

  function rowFor(video) {
    let row = list.querySelector(`[data-id="${video.id}"]`);
    if (!row) {
      row = template.content.firstElementChild.cloneNode(true);
      list.prepend(row);
      recount(1);
    }
    fill(row, video);
    return row;
  }

  list.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("[data-id]");
    const id = row.dataset.id;
    if (button.dataset.action === "delete") {
      const title = row.querySelector(".title").textContent;
      if (!window.confirm(`Delete “${title}”? Its files and share links are removed for good.`)) return;
      try {
        await vidbox.api("DELETE", `/api/videos/${id}`);
        row.remove();
        recount(-1);
      } catch (error) {
        window.alert(error.message);
      }
    } else if (button.dataset.action === "rename") {
      const current = row.querySelector(".title").textContent;
      const title = window.prompt("New title", current);
      if (title == null || title.trim() === "" || title === current) return;
      try {
        fill(row, await vidbox.api("PATCH", `/api/videos/${id}`, { title }));
      } catch (error) {
        window.alert(error.message);
      }
    }
  });

  document.addEventListener("vidbox:video-created", async (event) => {
    const exists = () => list.querySelector(`[data-id="${event.detail}"]`);
    if (exists()) return;
    try {
      const video = await vidbox.api("GET", `/api/videos/${event.detail}`);
      // The event stream may have drawn it meanwhile, with newer data than this answer.
      if (!exists()) rowFor(video);
    } catch (_) { /* the event stream brings it too */ }
  });

  const stream = vidbox.events();
  stream.addEventListener("video", (event) => {
    const video = JSON.parse(event.data);
    const onFirstPage = list.dataset.page === "1";
    if (list.querySelector(`[data-id="${video.id}"]`) || onFirstPage) rowFor(video);
  });
  stream.addEventListener("deleted", (event) => {
    const row = list.querySelector(`[data-id="${JSON.parse(event.data).id}"]`);
    if (row) { row.remove(); recount(-1); }
  });
})();
