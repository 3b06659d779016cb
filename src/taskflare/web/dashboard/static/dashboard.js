// taskflare dashboard: live refresh, selections, bulk actions with progress, keyboard keys.
// No inline script anywhere: the pages' Content-Security-Policy allows only this file.
"use strict";
(function () {
  const REFRESH_MS = 1500;

  // -- live parts: every [data-live-part] is replaced with the same part of a fresh copy
  // of the page, fetched every 1.5 s while the tab is visible.
  function startLive() {
    if (!document.body.dataset.live) return;
    let busy = false;
    async function refresh() {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const response = await fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" });
        if (!response.ok) return;
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        document.querySelectorAll("[data-live-part]").forEach(function (part) {
          const next = part.id && fresh.getElementById(part.id);
          if (next && !part.contains(document.activeElement)) part.replaceWith(document.importNode(next, true));
        });
        document.body.dataset.refreshedAt = String(Date.now());
      } catch (e) {
        // offline for a moment: the next tick tries again
      } finally {
        busy = false;
      }
    }
    setInterval(refresh, REFRESH_MS);
  }

  // -- selections
  function startSelections() {
    document.querySelectorAll("[data-select-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        const form = box.closest("form");
        form.querySelectorAll('input[type=checkbox][name=id]').forEach(function (b) { b.checked = box.checked; });
      });
    });
    document.querySelectorAll("[data-confirm-text]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!confirm(button.dataset.confirmText)) event.preventDefault();
      });
    });
    document.querySelectorAll("input[data-confirm]").forEach(function (input) {
      const button = input.form.querySelector("button[type=submit]");
      const check = function () { button.disabled = input.value !== input.dataset.confirm; };
      input.addEventListener("input", check);
      check();
    });
  }

  // -- bulk actions on every job that matches the filter: count, confirm, then chunks
  function startBulk() {
    const form = document.getElementById("bulk");
    const button = form && form.querySelector("[data-bulk-all]");
    if (!button) return;
    const status = form.querySelector("[data-bulk-status]");
    const bar = form.querySelector("[data-bulk-progress]");
    button.addEventListener("click", async function () {
      const filters = new URLSearchParams();
      form.querySelectorAll("[data-filter]").forEach(function (f) { filters.set(f.name, f.value); });
      const action = form.elements.action.value;
      status.textContent = "Counting…";
      const counted = await fetch(form.dataset.countUrl + "?" + filters, { credentials: "same-origin" });
      const answer = await counted.json();
      if (!counted.ok) { status.textContent = answer.error || "could not count"; return; }
      const total = answer.count;
      if (!confirm(action + " all " + answer.shown + " matching jobs?")) { status.textContent = ""; return; }
      button.disabled = true;
      bar.hidden = false;
      bar.max = Math.max(total, 1);
      let cursor = "", done = 0, skipped = 0, examined = 0;
      for (;;) {
        const body = new URLSearchParams(filters);
        body.set("csrf", form.elements.csrf.value);
        body.set("action", action);
        body.set("scope", "filter");
        if (cursor) body.set("cursor", cursor);
        const response = await fetch(form.getAttribute("action"), {
          method: "POST", body: body, credentials: "same-origin",
          headers: { "Accept": "application/json" },
        });
        const chunk = await response.json().catch(function () { return { error: "HTTP " + response.status }; });
        if (!response.ok || chunk.error) { status.textContent = "Stopped: " + (chunk.error || response.status); break; }
        done += chunk.done; skipped += chunk.skipped; examined += chunk.examined;
        bar.value = Math.min(examined, bar.max);
        status.textContent = action + ": " + done + " done, " + skipped + " skipped of " + answer.shown;
        if (chunk.finished) { status.textContent += " — finished"; break; }
        cursor = chunk.nextCursor;
      }
      button.disabled = false;
    });
  }

  // -- keyboard: g then a section key; / focuses search; j/k move through rows; Enter opens
  function startKeys() {
    let pendingG = false, row = -1;
    const sections = {};
    document.querySelectorAll("header nav a[data-key]").forEach(function (a) { sections[a.dataset.key] = a; });
    function rows() { return Array.from(document.querySelectorAll("table.rows tbody tr")).filter(function (r) { return r.querySelector("a"); }); }
    document.addEventListener("keydown", function (event) {
      const t = event.target;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) {
        if (event.key === "Escape") t.blur();
        return;
      }
      if (pendingG) {
        pendingG = false;
        if (sections[event.key]) { location.href = sections[event.key].href; event.preventDefault(); }
        return;
      }
      if (event.key === "g") { pendingG = true; setTimeout(function () { pendingG = false; }, 1200); return; }
      if (event.key === "/") {
        const search = document.querySelector("[data-search]");
        if (search) { search.focus(); event.preventDefault(); }
        return;
      }
      if (event.key === "?") { document.body.classList.toggle("show-help"); return; }
      if (event.key === "j" || event.key === "k") {
        const all = rows();
        if (!all.length) return;
        if (row >= 0 && all[row]) all[row].classList.remove("selected");
        row = Math.max(0, Math.min(all.length - 1, row + (event.key === "j" ? 1 : -1)));
        all[row].classList.add("selected");
        all[row].querySelector("a").focus();
        event.preventDefault();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    startLive();
    startSelections();
    startBulk();
    startKeys();
  });
})();
