// Drag-and-drop uploads with the tus 1.0 protocol: resumable after network drops, reloads and
// server restarts. Files are queued and sent one after another.
"use strict";

(() => {
  const zone = document.getElementById("dropzone");
  if (!zone) return;
  const input = document.getElementById("file-input");
  const list = document.getElementById("upload-list");
  const template = document.getElementById("upload-template");
  const allowed = zone.dataset.allowed.split(",");
  const maxBytes = Number(zone.dataset.maxBytes);
  // Bytes per PATCH (uploads.part_bytes): few requests, each under any proxy's body limit.
  const CHUNK = Number(zone.dataset.partBytes) || 64 * 1024 * 1024;
  // A reverse proxy with a smaller body limit (nginx's default is 1 MB) answers 413 itself:
  // parts are then halved until they pass, and the size that passed is remembered.
  const MIN_PART = 256 * 1024;
  const partKey = `vidbox-part-bytes:${CHUNK}`;
  let partBytes = Math.min(CHUNK, Number(localStorage.getItem(partKey)) || CHUNK);
  // Every retry waits, twice as long as the one before (1 s, 2 s, 4 s ... 30 s at most): a
  // server that keeps answering badly is not hammered by a loop of instant re-sends.
  const retryDelay = (attempt) => Math.min(1000 * 2 ** attempt, 30000);
  const queue = [];
  let active = null;

  const storeKey = (file) =>
    `vidbox-upload:${zone.dataset.user}:${file.name}:${file.size}:${file.lastModified}`;
  const b64 = (text) => btoa(String.fromCharCode(...new TextEncoder().encode(text)));

  function problem(file) {
    const ext = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
    if (!allowed.includes(ext)) {
      return `Only ${allowed.map((a) => a.toUpperCase()).join(", ")} videos are accepted.`;
    }
    if (file.size === 0) return "This file is empty.";
    if (file.size > maxBytes) return `This file is larger than the ${vidbox.bytes(maxBytes)} limit.`;
    return null;
  }

  // ``holder.current`` is set to the request, for its upload's pause and cancel to abort.
  function request(method, url, headers, body, onProgress, holder) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      xhr.setRequestHeader("Tus-Resumable", "1.0.0");
      xhr.setRequestHeader("X-CSRF-Token", vidbox.csrf());
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      if (onProgress) xhr.upload.onprogress = (e) => onProgress(e.loaded);
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error("network"));
      xhr.onabort = () => reject(new Error("aborted"));
      xhr.send(body ?? null);
      if (holder) holder.current = xhr;
    });
  }

  function detailOf(xhr) {
    try { return JSON.parse(xhr.responseText).detail; } catch (_) { return `Error ${xhr.status}`; }
  }

  // vidbox answers errors with JSON {"detail"}; anything else came from something in between.
  function fromVidbox(xhr) {
    try { return typeof JSON.parse(xhr.responseText).detail === "string"; } catch (_) { return false; }
  }

  // Uploads a reload (or a closed tab) left unfinished, by file fingerprint: shown until the
  // same file is chosen again, or the upload is cancelled.
  const interrupted = new Map();
  const uploads = [];  // every file chosen on this page
  const following = new Map();  // video id -> its sent upload's card
  const latest = new Map();  // video id -> the newest state the event stream told

  class Upload {
    constructor(file) {
      this.file = file;
      uploads.push(this);
      interrupted.get(storeKey(file))?.remove();
      interrupted.delete(storeKey(file));
      this.el = template.content.firstElementChild.cloneNode(true);
      this.el.querySelector(".name").textContent = file.name;
      this.bar = this.el.querySelector("progress");
      this.stats = this.el.querySelector(".stats");
      this.state = this.el.querySelector(".state");
      this.buttons = {
        pause: this.el.querySelector("[data-action=pause]"),
        resume: this.el.querySelector("[data-action=resume]"),
        cancel: this.el.querySelector("[data-action=cancel]"),
        retry: this.el.querySelector("[data-action=retry]"),
      };
      this.buttons.pause.onclick = () => this.pause();
      this.buttons.resume.onclick = () => this.resume();
      this.buttons.cancel.onclick = () => this.cancel();
      this.buttons.retry.onclick = () => this.resume();
      this.offset = 0;
      this.samples = [];
      this.paused = false;
      this.cancelled = false;
      this.videoId = null;
      list.prepend(this.el);
      this.show("Waiting…", ["pause", "cancel"]);
    }

    show(state, buttons = []) {
      this.state.textContent = state;
      for (const [name, button] of Object.entries(this.buttons)) button.hidden = !buttons.includes(name);
    }

    progress(sent) {
      const total = this.file.size;
      const now = performance.now();
      this.samples.push([now, sent]);
      while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
      const [t0, b0] = this.samples[0];
      const speed = now > t0 ? ((sent - b0) * 1000) / (now - t0) : 0;
      const eta = speed > 0 ? (total - sent) / speed : null;
      this.bar.max = total;
      this.bar.value = sent;
      const pct = Math.floor((sent / total) * 100);
      this.stats.textContent =
        `${vidbox.bytes(sent)} of ${vidbox.bytes(total)} · ${pct}%` +
        (speed > 0 ? ` · ${vidbox.bytes(Math.round(speed))}/s` : "") +
        (eta != null && sent < total ? ` · ${vidbox.duration(eta)} left` : "");
      this.el.dataset.percent = String(pct);
    }

    async start() {
      if (this.paused || this.cancelled) return;  // while it waited its turn
      const bad = problem(this.file);
      if (bad) {
        this.show(bad);
        this.el.classList.add("failed");
        return;
      }
      // Not aborted by cancel: a creation the server got makes an upload either way, and
      // cancel removes it once this says where it is.
      this.created = this.create();
      await this.created;
      if (this.paused || this.cancelled) return;
      await this.send();
    }

    async create() {
      this.url = localStorage.getItem(storeKey(this.file));
      if (this.url) {
        const head = await request("HEAD", this.url, {}).catch(() => null);
        if (head && head.status === 200) {
          this.offset = Number(head.getResponseHeader("Upload-Offset"));
          this.videoId = head.getResponseHeader("Vidbox-Video-Id");
          this.progress(this.offset);
          return;
        }
        this.url = null;
      }
      const meta = `filename ${b64(this.file.name)},filetype ${b64(this.file.type || "")}`;
      const created = await request("POST", "/api/uploads", {
        "Upload-Length": String(this.file.size),
        "Upload-Metadata": meta,
      });
      if (created.status !== 201) throw new Error(detailOf(created));
      this.url = created.getResponseHeader("Location");
      if (this.cancelled) return;
      localStorage.setItem(storeKey(this.file), this.url);
      this.videoId = created.getResponseHeader("Vidbox-Video-Id");
      document.dispatchEvent(new CustomEvent("vidbox:video-created", { detail: this.videoId }));
    }

    // The server's offset from an answer's Upload-Offset; null when it has none.
    static offsetOf(xhr) {
      const value = xhr?.getResponseHeader("Upload-Offset");
      return value != null && /^\d+$/.test(value) ? Number(value) : null;
    }

    async send() {
      let attempt = 0;
      let resynced = false;  // the last step was a jump to the server's offset, without a wait
      while (this.offset < this.file.size) {
        if (this.paused || this.cancelled) return;
        this.show("Uploading", ["pause", "cancel"]);
        const end = Math.min(this.offset + partBytes, this.file.size);
        const base = this.offset;
        try {
          const xhr = await request(
            "PATCH",
            this.url,
            { "Content-Type": "application/offset+octet-stream", "Upload-Offset": String(base) },
            this.file.slice(base, end),
            (loaded) => this.progress(base + loaded),
            this,
          );
          if (xhr.status === 204) {
            this.offset = Upload.offsetOf(xhr) ?? base;
            this.progress(this.offset);
            attempt = 0;
            resynced = false;
            continue;
          }
          if (xhr.status === 409 && !resynced) {
            // The server has another offset (or, the answer to the last part having been
            // lost, all of it): go on from there, at once but only once in a row.
            let offset = Upload.offsetOf(xhr);
            if (offset == null) {
              const head = await request("HEAD", this.url, {}, null, null, this);
              offset = head.status === 200 ? Upload.offsetOf(head) : null;
            }
            if (offset != null && offset !== base) {
              this.offset = offset;
              this.progress(offset);
              resynced = true;
              continue;
            }
          }
          if (xhr.status === 413 && !fromVidbox(xhr) && end - base > MIN_PART) {
            partBytes = Math.max(MIN_PART, Math.floor((end - base) / 2));
            localStorage.setItem(partKey, String(partBytes));
            continue;
          }
          if (xhr.status === 507) {
            // The server's disk is full: it kept what arrived; retrying is for the person to
            // decide once space is freed, so the upload stays resumable.
            throw Object.assign(new Error(detailOf(xhr)), { final: true });
          }
          if (xhr.status === 401 || xhr.status === 403) {
            // Signed out meanwhile (or this page's form token went stale): what was sent stays
            // on the server, and this browser remembers the upload for the next sign-in.
            const detail = "Signed out: sign in again, then choose the same file to resume.";
            throw Object.assign(new Error(detail), { final: true });
          }
          if (xhr.status >= 400 && xhr.status < 500 && ![409, 423].includes(xhr.status)) {
            localStorage.removeItem(storeKey(this.file));
            const detail = xhr.status === 413 && !fromVidbox(xhr)
              ? "A proxy in front of vidbox refuses even small parts as too large: raise its " +
                "body size limit (nginx: client_max_body_size)."
              : detailOf(xhr);
            throw Object.assign(new Error(detail), { final: true });
          }
          throw new Error(detailOf(xhr));
        } catch (error) {
          if (this.paused || this.cancelled) return;
          if (error.final) throw error;
          resynced = false;
          const delay = retryDelay(attempt++);
          this.show(`Connection lost, retrying in ${Math.round(delay / 1000)} s…`, ["pause", "cancel"]);
          await new Promise((r) => setTimeout(r, delay));
          if (this.paused || this.cancelled) return;
          const head = await request("HEAD", this.url, {}, null, null, this).catch(() => null);
          const offset = head?.status === 200 ? Upload.offsetOf(head) : null;
          if (offset != null) {
            this.offset = offset;
            this.progress(offset);
          }
        }
      }
      localStorage.removeItem(storeKey(this.file));
      this.progress(this.file.size);
      this.show("Uploaded — processing");
      this.el.classList.add("done");
      this.followVideo();
    }

    // Once sent, the card follows its video through processing, from the page's event stream.
    followVideo() {
      if (!this.videoId) return;
      following.set(this.videoId, this);
      const seen = latest.get(this.videoId);
      if (seen) this.showVideo(seen);
    }

    showVideo(video) {
      if (this.cancelled || !this.el.classList.contains("done")) return;
      if (video.status === "PROCESSING") {
        this.show(`Uploaded — processing ${video.progress}%`);
      } else if (video.status === "READY") {
        this.show(video.progress < 100 ? `Ready · HD ${video.progress}%` : "Ready");
      } else if (video.status === "FAILED") {
        this.show(video.error || "Processing failed.");
        this.el.classList.replace("done", "failed");
      }
    }

    pause() {
      this.paused = true;
      this.current?.abort();
      this.show("Paused", ["resume", "cancel"]);
    }

    async resume() {
      this.paused = false;
      this.el.classList.remove("failed");
      const waiting = queue.indexOf(this);
      if (waiting >= 0) queue.splice(waiting, 1);  // it goes now, not again in its turn
      try {
        await this.created?.catch(() => null);  // paused while being created
        if (!this.url) await this.start();
        else await this.send();
      } catch (error) {
        this.fail(error);
      }
    }

    async cancel() {
      this.cancelled = true;
      this.current?.abort();
      this.show("Cancelled");
      this.el.classList.add("cancelled");
      await this.created?.catch(() => null);
      if (this.url) {
        await request("DELETE", this.url, {}).catch(() => null);
        localStorage.removeItem(storeKey(this.file));
      }
      next();
    }

    fail(error) {
      if (this.cancelled) return;
      this.show(error.message === "network" ? "Could not reach the server." : error.message, ["retry", "cancel"]);
      this.el.classList.add("failed");
    }
  }

  const running = (u) =>
    u && !u.paused && !u.cancelled && !u.el.classList.contains("done") && !u.el.classList.contains("failed");

  async function next() {
    if (running(active)) return;
    do active = queue.shift() || null; while (active?.cancelled);
    if (!active) return;
    try {
      await active.start();
    } catch (error) {
      active.fail(error);
    }
    next();
  }

  function add(files) {
    for (const file of files) queue.push(new Upload(file));
    next();
  }

  // A reload or a closed tab leaves uploads unfinished: the server keeps what arrived (until
  // the upload expires) and this browser remembers where. Show them; choosing the same file
  // again picks up from the server's offset.
  async function showInterrupted() {
    const prefix = `vidbox-upload:${zone.dataset.user}:`;
    const keys = [];
    for (let i = 0; i < localStorage.length; i++) {
      if (localStorage.key(i).startsWith(prefix)) keys.push(localStorage.key(i));
    }
    for (const key of keys) {
      const url = localStorage.getItem(key);
      const head = await request("HEAD", url, {}).catch(() => null);
      if (!head) continue;  // the server is unreachable now: ask again on the next visit
      const offset = Number(head.getResponseHeader("Upload-Offset"));
      const length = Number(head.getResponseHeader("Upload-Length"));
      // Cancelled or expired meanwhile, or complete: the answer to its last part was lost
      // (HEAD keeps answering a completed upload, with every byte there).
      if (head.status !== 200 || offset >= length) {
        localStorage.removeItem(key);
        continue;
      }
      if (interrupted.has(key) || uploads.some((u) => storeKey(u.file) === key)) continue;
      const el = template.content.firstElementChild.cloneNode(true);
      el.dataset.interrupted = "";
      el.querySelector(".name").textContent = key.slice(prefix.length).replace(/:\d+:\d+$/, "");
      el.querySelector("progress").max = length;
      el.querySelector("progress").value = offset;
      const pct = Math.floor((offset / length) * 100);
      el.querySelector(".stats").textContent = `${vidbox.bytes(offset)} of ${vidbox.bytes(length)} · ${pct}%`;
      el.querySelector(".state").textContent = "Interrupted: choose the same file again to resume";
      for (const button of el.querySelectorAll("button")) button.hidden = true;
      const resume = el.querySelector("[data-action=resume]");
      resume.hidden = false;
      resume.onclick = () => input.click();
      const cancel = el.querySelector("[data-action=cancel]");
      cancel.hidden = false;
      cancel.onclick = async () => {
        cancel.disabled = true;
        await request("DELETE", url, {}).catch(() => null);
        localStorage.removeItem(key);
        interrupted.delete(key);
        el.remove();
      };
      interrupted.set(key, el);
      list.append(el);
    }
  }
  showInterrupted();

  vidbox.events().addEventListener("video", (event) => {
    const video = JSON.parse(event.data);
    latest.set(video.id, video);
    following.get(video.id)?.showVideo(video);
  });
  vidbox.events().addEventListener("deleted", (event) => {
    const upload = following.get(JSON.parse(event.data).id);
    if (upload) upload.show("Deleted");
  });

  // Leaving the page stops the upload; it can be resumed, but only by choosing the file again.
  window.addEventListener("beforeunload", (event) => {
    if (uploads.some(running)) event.preventDefault();
  });

  input.addEventListener("change", () => {
    add([...input.files]);
    input.value = "";
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.remove("over"); });
  }
  zone.addEventListener("drop", (e) => add([...e.dataTransfer.files]));
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });

  // Files chosen before the page's scripts have all run would be lost (nobody listens yet):
  // the zone says when it takes them, once every script of the page (the dashboard's too,
  // which draws the new video's row) has run. Tests wait for it; CSS can show it.
  const ready = () => { zone.dataset.ready = "true"; };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();
