// LibraGen review page: keyboard-driven decisions over the reviewer's queue.
// Every text from the server (captions, ids, scores) goes into the DOM with textContent, never innerHTML.
"use strict";

(() => {
  const mode = document.body.dataset.mode;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const state = { items: [], pos: 0, selected: new Set(), shownAt: performance.now(), busy: false };

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function say(text, isError) {
    const el = $("message");
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
  }

  // POST JSON with the CSRF header; a network failure is retried with the same body (same event_uuid),
  // so the server records the decision once however many times it arrives.
  async function post(url, body) {
    let lastError = null;
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const response = await fetch(url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
          body: JSON.stringify(body),
        });
        const data = await response.json().catch(() => ({}));
        if (!response.ok) throw Object.assign(new Error(data.detail || response.statusText), { fatal: true });
        return data;
      } catch (err) {
        if (err.fatal) throw err;
        lastError = err;
        await new Promise((resolve) => setTimeout(resolve, 300 * (attempt + 1)));
      }
    }
    throw lastError;
  }

  function setVideo(el, url) {
    if (!url) {
      el.removeAttribute("src");
      el.load();
      return;
    }
    if (el.getAttribute("src") !== url) {
      el.setAttribute("src", url);
      el.play().catch(() => {});
    }
  }

  function labelText(label) {
    if (!label) return "undecided";
    const reasons = label.reasons && label.reasons.length ? ` (${label.reasons.join(", ")})` : "";
    const note = label.note ? ` — ${label.note}` : "";
    return `your decision: ${label.decision}${reasons}${note}`;
  }

  function renderScores(item) {
    const body = $("scores").querySelector("tbody");
    body.replaceChildren();
    const near = new Set(item.near_scores || []);
    const names = Object.keys(item.scores).sort();
    if (item.quality_score !== null && item.quality_score !== undefined) names.unshift("quality_score");
    for (const name of names) {
      const value = name === "quality_score" ? item.quality_score : item.scores[name];
      const row = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = name;
      td.textContent = value === null || value === undefined ? "—" : Number(value).toFixed(3);
      if (near.has(name)) row.className = "near";
      row.append(th, td);
      body.append(row);
    }
    $("near").textContent = item.near_reasons.length
      ? `nearly rejected by: ${item.near_reasons.join(", ")}`
      : "no threshold was close";
  }

  function renderRefs(item) {
    const box = $("refs");
    box.replaceChildren();
    for (const url of item.refs || []) {
      const img = document.createElement("img");
      img.src = url;
      img.alt = "reference crop";
      img.width = 128;
      img.height = 128;
      box.append(img);
    }
  }

  function renderReasons() {
    for (const button of document.querySelectorAll(".reason")) {
      button.classList.toggle("on", state.selected.has(button.dataset.code));
    }
  }

  function preloadNext() {
    const next = state.items[state.pos + 1];
    const preload = $("preload");
    if (!next) {
      preload.removeAttribute("src");
      return;
    }
    if (next.videos[0] && preload.getAttribute("src") !== next.videos[0]) preload.setAttribute("src", next.videos[0]);
    for (const url of next.refs || []) new Image().src = url;
  }

  function render() {
    const item = state.items[state.pos];
    $("stage").dataset.itemId = item ? item.item_id : "";
    if (!item) {
      $("progress").textContent = "no items";
      $("item-id").textContent = "";
      $("caption").textContent = "Nothing left to review in this mode. Thank you!";
      $("status").textContent = "";
      setVideo($("video"), null);
      return;
    }
    const decided = state.items.filter((it) => it.label).length;
    $("progress").textContent = `${state.pos + 1} / ${state.items.length} · ${decided} decided`;
    $("item-id").textContent = item.item_id;
    $("caption").textContent = item.caption || "";
    $("status").textContent = labelText(item.label);
    $("stage").classList.toggle("decided", Boolean(item.label));
    setVideo($("video"), item.videos[0]);
    const two = item.videos.length > 1;
    $("second").hidden = !two;
    setVideo($("video2"), two ? item.videos[1] : null);
    $("label-left").textContent = mode === "clip" ? "" : two ? "left" : "left | right";
    $("label-right").textContent = two ? "right" : "";
    state.selected = new Set(item.label && item.label.reasons ? item.label.reasons : []);
    $("note").value = item.label && item.label.note ? item.label.note : "";
    if (mode === "clip") {
      renderScores(item);
      renderRefs(item);
      renderReasons();
    }
    state.shownAt = performance.now();
    preloadNext();
  }

  function merge(pending) {
    const known = new Set(state.items.map((it) => `${it.item_id}\u0000${it.content_hash}`));
    for (const item of pending) {
      if (!known.has(`${item.item_id}\u0000${item.content_hash}`)) state.items.push(item);
    }
  }

  async function load() {
    const response = await fetch(`/api/queue?mode=${encodeURIComponent(mode)}`, { credentials: "same-origin" });
    if (response.status === 401) {
      window.location = "/login";
      return;
    }
    const data = await response.json();
    state.items = data.items;
    state.pos = data.start;
    render();
    document.body.dataset.ready = "1";
  }

  async function decide(decision) {
    const item = state.items[state.pos];
    if (!item || state.busy) return;
    const reasons = mode === "clip" && decision === "reject" ? [...state.selected] : [];
    const note = $("note").value.trim() || null;
    if (mode === "clip" && decision === "reject" && reasons.length === 0) {
      say("Pick at least one reason (1–9, 0 = other) before R.", true);
      return;
    }
    if (reasons.includes("other") && !note) {
      say("Reason 'other' needs a note: type it, press Enter, then R.", true);
      $("note").focus();
      return;
    }
    state.busy = true;
    try {
      const result = await post("/api/decisions", {
        event_uuid: newId(),
        mode,
        item_id: item.item_id,
        content_hash: item.content_hash,
        decision,
        reasons,
        note,
        time_spent_ms: Math.round(performance.now() - state.shownAt),
      });
      item.label = result.label;
      merge(result.pending);
      say(`${decision} recorded for ${item.item_id}`);
      const next = state.items.findIndex((it, k) => k > state.pos && !it.label);
      state.pos = next >= 0 ? next : Math.min(state.pos + 1, state.items.length - 1);
      render();
    } catch (err) {
      say(`Not recorded: ${err.message}`, true);
    } finally {
      state.busy = false;
    }
  }

  async function undo() {
    if (state.busy) return;
    state.busy = true;
    try {
      const result = await post("/api/undo", { event_uuid: newId(), mode });
      let index = state.items.findIndex((it) => it.item_id === result.item_id);
      if (index < 0) {
        await load();
        index = Math.max(0, state.items.findIndex((it) => it.item_id === result.item_id));
      }
      state.items[index].label = result.label;
      state.pos = index;
      render();
      say(`undid your decision on ${result.item_id}`);
    } catch (err) {
      say(`Undo failed: ${err.message}`, true);
    } finally {
      state.busy = false;
    }
  }

  function move(step) {
    const target = state.pos + step;
    if (target < 0 || target >= state.items.length) return;
    state.pos = target;
    render();
    say("");
  }

  function togglePlay() {
    const videos = [$("video"), $("video2")].filter((v) => v.getAttribute("src"));
    const paused = videos.length && videos[0].paused;
    for (const video of videos) {
      if (paused) video.play().catch(() => {});
      else video.pause();
    }
  }

  function toggleReason(code) {
    if (state.selected.has(code)) state.selected.delete(code);
    else state.selected.add(code);
    renderReasons();
    if (code === "other" && state.selected.has("other")) $("note").focus();
  }

  const reasonByKey = {};
  for (const button of document.querySelectorAll(".reason")) {
    reasonByKey[button.dataset.key] = button.dataset.code;
    button.addEventListener("click", () => toggleReason(button.dataset.code));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target === $("note")) {
      if (event.key === "Enter" || event.key === "Escape") $("note").blur();
      return;
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    let handled = true;
    if (key === " ") togglePlay();
    else if (key === "j") move(1);
    else if (key === "k") move(-1);
    else if (key === "u") undo();
    else if (mode === "clip" && key === "a") decide("accept");
    else if (mode === "clip" && key === "r") decide("reject");
    else if (mode === "clip" && key in reasonByKey) toggleReason(reasonByKey[key]);
    else if (mode !== "clip" && (key === "1" || key === "ArrowLeft")) decide("left");
    else if (mode !== "clip" && (key === "2" || key === "ArrowDown" || key === "s")) decide("same");
    else if (mode !== "clip" && (key === "3" || key === "ArrowRight")) decide("right");
    else handled = false;
    if (handled) event.preventDefault();
  });

  const buttons = { accept: "accept", reject: "reject", left: "left", same: "same", right: "right" };
  for (const [id, decision] of Object.entries(buttons)) {
    if ($(id)) $(id).addEventListener("click", () => decide(decision));
  }
  $("logout").addEventListener("click", async () => {
    await post("/api/logout", {}).catch(() => {});
    window.location = "/login";
  });

  load().catch((err) => say(`Could not load the queue: ${err.message}`, true));
})();
