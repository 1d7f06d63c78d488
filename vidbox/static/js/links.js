// Share links: create (player page), revoke and copy (player page and /links).
// Rows built here match the link_row macro of _share_links.html.
"use strict";

(() => {
  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  function moment(iso, empty) {
    if (!iso) return document.createTextNode(empty);
    return el("time", { dateTime: iso, dataset: { local: "" } }, [iso.slice(0, 16).replace("T", " ") + " UTC"]);
  }

  function row(link, withVideo) {
    const who = [link.visibility === "private" ? "Private" : "Public"];
    if (link.allow_download) who.push(el("span", { className: "muted" }, [" · download"]));
    if (link.emails.length) who.push(el("small", { className: "link-emails" }, [link.emails.join(", ")]));
    // As the link_row macro: the end of the URL, which tells links apart, is never cut.
    const url = el("a", { className: "link-url", href: link.url, target: "_blank", rel: "noopener", title: link.url }, [
      el("span", { className: "url-head" }, [link.url.slice(0, -8)]),
      el("span", { className: "url-tail" }, [link.url.slice(-8)]),
    ]);
    const cells = [
      el("td", { className: "link-main" }, [el("div", { className: "link-cell" }, [
        url,
        el("button", { type: "button", className: "small", dataset: { copy: link.url } }, ["Copy"]),
      ])]),
    ];
    if (withVideo) {
      cells.push(el("td", { className: "link-video", dataset: { label: "Video" } }, [el("a", { href: `/videos/${link.video_id}` }, [link.video_title || ""])]));
    }
    cells.push(
      el("td", { className: "link-who", dataset: { label: "Who" } }, who),
      el("td", { dataset: { label: "Expires" } }, [moment(link.expires_at, "Never")]),
      el("td", { dataset: { label: "Status" } }, [el("span", { className: `badge link-${link.status}`, dataset: { status: "" } }, [link.status])]),
      el("td", { dataset: { label: "Last viewed" } }, [moment(link.last_viewed_at, "Never")]),
      el("td", { dataset: { label: "Views" } }, [String(link.view_count)]),
      el("td", { className: "link-actions" }, link.status === "active"
        ? [el("button", { type: "button", className: "danger small", dataset: { revoke: link.id } }, ["Revoke"])]
        : []),
    );
    return el("tr", { dataset: { linkId: link.id } }, cells);
  }

  function refresh(root) {
    vidbox.copyButtons(root);
    vidbox.localTimes(root);
  }

  // Revoke anywhere on the page.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-revoke]");
    if (!button) return;
    if (!window.confirm("Revoke this link? Whoever has it will no longer be able to watch.")) return;
    button.disabled = true;
    try {
      await vidbox.api("DELETE", `/api/links/${button.dataset.revoke}`);
      const tr = button.closest("tr");
      const badge = tr?.querySelector("[data-status]");
      if (badge) { badge.textContent = "revoked"; badge.className = "badge link-revoked"; }
      button.remove();
    } catch (error) {
      button.disabled = false;
      window.alert(`The link could not be revoked: ${error.message}`);
    }
  });

  // /links: the status filter applies as soon as it changes.
  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    form.addEventListener("change", () => form.submit());
  }

  // The player page's card.
  const card = document.querySelector(".share-links[data-video-id]");
  if (!card) return;
  const videoId = card.dataset.videoId;
  const tbody = card.querySelector("[data-links]");
  const none = card.querySelector("[data-no-links]");
  const form = card.querySelector("form[data-new-link]");
  const emails = form.querySelector(".share-emails");
  const problem = form.querySelector("[data-form-error]");
  const created = card.querySelector("[data-created]");

  function showEmpty() {
    if (none) none.hidden = tbody.children.length > 0;
  }

  const visibility = form.elements.visibility;
  const syncEmails = () => { emails.hidden = visibility.value !== "private"; };
  visibility.addEventListener("change", syncEmails);
  syncEmails();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    problem.hidden = true;
    const body = {
      visibility: visibility.value,
      expires_in: form.elements.expires_in.value,
      allow_download: form.elements.allow_download.checked,
    };
    if (body.visibility === "private") {
      body.emails = form.elements.emails.value.split(/[\s,;]+/).filter(Boolean);
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const link = await vidbox.api("POST", `/api/videos/${videoId}/links`, body);
      tbody.prepend(row(link, false));
      created.querySelector("[data-created-url]").textContent = link.url;
      const copy = created.querySelector("[data-created-copy]");
      copy.dataset.copy = link.url;
      created.hidden = false;
      form.elements.emails.value = "";
      refresh(card);
      showEmpty();
    } catch (error) {
      problem.textContent = error.message;
      problem.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });

  if (card.dataset.rendered !== "true") {
    vidbox.api("GET", `/api/videos/${videoId}/links`).then((data) => {
      tbody.replaceChildren(...data.items.map((link) => row(link, false)));
      refresh(card);
      showEmpty();
    }).catch(() => showEmpty());
  }
})();
