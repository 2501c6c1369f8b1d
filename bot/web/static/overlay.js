// OBS caption overlay: shows the speaker's name and text while the bot plays it.
// Appearance comes from the query string (see docs/web.md); no token is needed.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const root = document.documentElement;
  const stage = document.getElementById("stage");
  const box = document.getElementById("caption");
  const nameEl = document.getElementById("caption-name");
  const textEl = document.getElementById("caption-text");

  function colour(key, cssVar) {
    const value = params.get(key);
    if (value === null) return;
    const v = value === "none" ? "transparent" : value;
    if (CSS.supports("color", v)) root.style.setProperty(cssVar, v);
    else console.warn("ishowtts overlay: ignoring " + key + "=" + value);
  }
  function number(key, lo, hi) {
    const raw = params.get(key);
    if (raw === null || raw.trim() === "") return null;
    const n = Number(raw);
    return Number.isFinite(n) && n >= lo && n <= hi ? n : null;
  }

  const font = params.get("font");
  if (font && /^[\w\s,'"-]{1,200}$/.test(font)) root.style.setProperty("--font", font);
  const size = number("size", 6, 400);
  if (size !== null) root.style.setProperty("--size", size + "px");
  const weight = number("weight", 100, 900);
  if (weight !== null) root.style.setProperty("--weight", String(weight));
  const width = number("width", 5, 100);
  if (width !== null) root.style.setProperty("--width", width + "%");
  const margin = number("margin", 0, 2000);
  if (margin !== null) root.style.setProperty("--margin", margin + "px");
  const radius = number("radius", 0, 200);
  if (radius !== null) root.style.setProperty("--radius", radius + "px");
  const fade = number("fade", 0, 10000);
  if (fade !== null) root.style.setProperty("--fade", fade + "ms");
  const lines = number("lines", 0, 50);
  if (lines) {
    root.style.setProperty("--lines", String(Math.floor(lines)));
    box.classList.add("clamp");
  }
  colour("color", "--color");
  colour("name_color", "--name-color");
  colour("bg", "--bg");
  if (params.get("outline") === "none") box.classList.add("no-outline");
  else colour("outline", "--outline");
  if (["0", "false", "no", "off"].includes((params.get("name") || "").toLowerCase())) {
    box.classList.add("no-name");
  }
  const position = params.get("position");
  if (["top", "middle", "bottom"].includes(position)) stage.className = stage.className.replace(/pos-\w+/, "pos-" + position);
  const align = params.get("align");
  if (["left", "center", "right"].includes(align)) stage.className = stage.className.replace(/align-\w+/, "align-" + align);

  let shownId = null;
  let clearTimer = null;

  function show(caption) {
    if (clearTimer !== null) { clearTimeout(clearTimer); clearTimer = null; }
    shownId = caption.id;
    box.dataset.id = String(caption.id);
    nameEl.textContent = caption.name || "";
    textEl.textContent = caption.text || "";
    box.classList.add("visible");
  }

  function hide() {
    shownId = null;
    delete box.dataset.id;
    box.classList.remove("visible");
    // Empty the box once it has faded out, unless a new caption came meanwhile.
    clearTimer = setTimeout(function () {
      if (shownId === null) { nameEl.textContent = ""; textEl.textContent = ""; }
      clearTimer = null;
    }, 1000);
  }

  if (params.get("demo") === "1") {
    show({ id: 0, name: "SomeViewer", text: "This is how captions will look on stream." });
    return;
  }

  let delay = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws/overlay");
    ws.onopen = function () { delay = 500; document.body.dataset.connected = "1"; };
    ws.onmessage = function (ev) {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type !== "caption") return;
      if (msg.caption) { if (msg.caption.id !== shownId) show(msg.caption); }
      else if (shownId !== null) hide();
    };
    ws.onclose = function () {
      document.body.dataset.connected = "0";
      if (shownId !== null) hide();
      setTimeout(connect, delay);  // the bot may restart while OBS keeps the source open
      delay = Math.min(delay * 2, 5000);
    };
  }
  connect();
})();
