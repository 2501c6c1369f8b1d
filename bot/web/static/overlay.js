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
  const platformEl = document.getElementById("caption-platform");

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

  // The platform label: ?platform=1 always, ?platform=0 never; by default from the moment
  // captions of a second platform arrive (a stream read from Twitch and YouTube at once), so
  // a single-platform stream looks as it always did. The box carries data-platform for CSS.
  const PLATFORMS = { twitch: "Twitch", youtube: "YouTube", terminal: "", http: "", panel: "" };
  const platformParam = (params.get("platform") || "").toLowerCase();
  const platformsSeen = new Set();
  function platformLabel(platform) {
    if (!platform) return "";
    platformsSeen.add(platform);
    if (["0", "false", "no", "off"].includes(platformParam)) return "";
    const always = ["1", "true", "yes", "on"].includes(platformParam);
    if (!always && platformsSeen.size < 2) return "";
    return PLATFORMS[platform] === undefined ? platform : PLATFORMS[platform];
  }

  function show(caption) {
    if (clearTimer !== null) { clearTimeout(clearTimer); clearTimer = null; }
    shownId = caption.id;
    box.dataset.id = String(caption.id);
    if (caption.platform) box.dataset.platform = caption.platform;
    else delete box.dataset.platform;
    platformEl.textContent = platformLabel(caption.platform);
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
      if (shownId === null) { nameEl.textContent = ""; textEl.textContent = ""; platformEl.textContent = ""; }
      clearTimer = null;
    }, 1000);
  }

  if (params.get("demo") === "1") {
    show({ id: 0, name: "SomeViewer", text: "This is how captions will look on stream." });
    return;
  }

  // Speech in the browser source (web.browser_audio: only | also). The bot streams each
  // message's audio as it is synthesised over /ws/audio: JSON control messages and binary
  // frames of [uint32 clip id, little-endian][int16 PCM, mono]. A stop (skip, deleted message,
  // ban) silences what is already scheduled at once; the volume applies to it at once too.
  // ?audio=0 keeps this page silent (when a second overlay source shows the same captions).
  const audioWanted = !["0", "false", "no", "off"].includes((params.get("audio") || "").toLowerCase());
  const LEAD_S = 0.06;  // scheduling headroom for the first chunk of a clip
  const FADE_S = 0.008; // a cut fades this fast, so it never clicks
  let audioStarted = false;
  let actx = null;
  let master = null;
  let volume = 1;
  const clips = new Map();

  function audioContext() {
    if (actx === null) {
      actx = new AudioContext();
      master = actx.createGain();
      master.gain.value = volume;
      master.connect(actx.destination);
    }
    if (actx.state === "suspended") actx.resume().catch(function () {});
    return actx;
  }
  document.addEventListener("click", function () { if (actx) actx.resume().catch(function () {}); });

  function dropClip(id, fade) {
    const clip = clips.get(id);
    if (!clip) return;
    clips.delete(id);
    const now = actx.currentTime;
    clip.gain.gain.cancelScheduledValues(now);
    clip.gain.gain.setValueAtTime(clip.gain.gain.value, now);
    clip.gain.gain.linearRampToValueAtTime(0, now + (fade ? FADE_S : 0));
    clip.sources.forEach(function (src) {
      try { src.stop(now + (fade ? FADE_S : 0)); } catch (e) { /* not started */ }
    });
    setTimeout(function () { clip.gain.disconnect(); }, 200);
  }

  function onAudioControl(msg) {
    if (msg.type === "volume" || msg.type === "hello") {
      volume = Math.max(0, Math.min(1, Number(msg.volume)));
      if (master) master.gain.setTargetAtTime(volume, actx.currentTime, 0.005);
    } else if (msg.type === "start") {
      const ctx = audioContext();
      const gain = ctx.createGain();
      gain.connect(master);
      clips.set(msg.clip, { rate: msg.rate, next: 0, gain: gain, sources: new Set(), ended: false });
    } else if (msg.type === "stop") {
      dropClip(msg.clip, true);
    } else if (msg.type === "end") {
      const clip = clips.get(msg.clip);
      if (clip) { clip.ended = true; if (!clip.sources.size) dropClip(msg.clip, false); }
    }
  }

  function onAudioFrame(data) {
    // A context the browser keeps suspended (a plain tab before any click) would pile the
    // audio up and play it all at once later: speech that cannot play now is dropped.
    if (data.byteLength < 6 || actx === null || actx.state !== "running") return;
    const id = new DataView(data).getUint32(0, true);
    const clip = clips.get(id);
    if (!clip) return;  // cut already, or joined mid-clip
    const pcm = new Int16Array(data, 4, (data.byteLength - 4) >> 1);
    const buffer = actx.createBuffer(1, pcm.length, clip.rate);
    const out = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
    const src = actx.createBufferSource();
    src.buffer = buffer;
    src.connect(clip.gain);
    const at = Math.max(clip.next, actx.currentTime + LEAD_S);
    src.start(at);
    clip.next = at + buffer.duration;
    clip.sources.add(src);
    src.onended = function () {
      clip.sources.delete(src);
      if (clip.ended && !clip.sources.size && clips.get(id) === clip) dropClip(id, false);
    };
  }

  let audioDelay = 500;
  function connectAudio() {
    audioStarted = true;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const ws = new WebSocket(scheme + location.host + "/ws/audio");
    ws.binaryType = "arraybuffer";
    ws.onopen = function () {
      audioDelay = 500;
      audioContext();  // started now, so it is running when the first speech comes
      document.body.dataset.audio = "1";
    };
    ws.onmessage = function (ev) {
      if (typeof ev.data !== "string") { onAudioFrame(ev.data); return; }
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      onAudioControl(msg);
    };
    ws.onclose = function () {
      document.body.dataset.audio = "0";
      Array.from(clips.keys()).forEach(function (id) { dropClip(id, true); });
      setTimeout(connectAudio, audioDelay);
      audioDelay = Math.min(audioDelay * 2, 5000);
    };
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
      if (msg.audio && audioWanted && !audioStarted) connectAudio();
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
