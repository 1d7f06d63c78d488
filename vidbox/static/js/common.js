// Shared helpers for every page: CSRF-aware fetch, local times, sizes, copy buttons.
"use strict";

const vidbox = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf(), Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (!response.ok) {
      let detail = `${response.status} ${response.statusText}`;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new Error(detail);
    }
    return response.status === 204 ? null : response.json();
  }

  function bytes(n) {
    if (n == null) return "—";
    // Powers of 1024 under their IEC names (GiB), as the server's pages and the README say.
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? `${n} bytes` : `${n.toFixed(1).replace(/\.0$/, "")} ${units[i]}`;
  }

  function duration(seconds) {
    if (seconds == null) return "—";
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const pad = (x) => String(x).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(r)}` : `${m}:${pad(r)}`;
  }

  function localTimes(root = document) {
    for (const el of root.querySelectorAll("time[data-local]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) {
        el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
        el.title = when.toISOString();
      }
    }
  }

  function copyButtons(root = document) {
    for (const button of root.querySelectorAll("[data-copy]")) {
      if (button.dataset.bound) continue;
      button.dataset.bound = "1";
      button.addEventListener("click", async (event) => {
        event.preventDefault();
        event.stopPropagation();
        const text = button.dataset.copy;
        try {
          await navigator.clipboard.writeText(text);
        } catch (_) {
          const area = document.createElement("textarea");
          area.value = text;
          document.body.append(area);
          area.select();
          document.execCommand("copy");
          area.remove();
        }
        const label = button.textContent;
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = label; }, 1500);
      });
    }
  }

  function confirmForms(root = document) {
    for (const form of root.querySelectorAll("form[data-confirm]")) {
      form.addEventListener("submit", (event) => {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    }
  }

  // One event stream per page, shared by everything on it (browsers allow few connections).
  let source = null;
  const events = () => (source ??= new EventSource("/api/events"));

  function bell() {
    const count = document.querySelector("[data-unread-count]");
    if (!count) return;
    events().addEventListener("notifications", (event) => {
      const unread = JSON.parse(event.data).unread;
      count.textContent = unread ? String(unread) : "";
      count.hidden = !unread;
      count.closest("a").setAttribute("aria-label", unread ? `Notifications (${unread} unread)` : "Notifications");
    });
  }

  function start() {
    localTimes();
    copyButtons();
    confirmForms();
    bell();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  return { api, bytes, duration, localTimes, copyButtons, csrf, events };
})();
