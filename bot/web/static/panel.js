// ishowtts control panel: live state over a WebSocket, actions over authenticated POSTs.
// Everything from chat is inserted with textContent, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "ishowtts-token";
  const $ = (id) => document.getElementById(id);

  // -- the token: taken from ?token= once, then kept in this browser and hidden from the URL --
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    try { localStorage.setItem(TOKEN_KEY, fromUrl); } catch (e) { /* private mode */ }
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  let token = fromUrl || (function () {
    try { return localStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  })();

  let state = null;
  let ws = null;
  let delay = 500;
  let noticeTimer = null;
  let volumeDragging = false;

  function notice(text, isError) {
    const el = $("notice");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
    el.classList.add("show");
    if (noticeTimer) clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => el.classList.remove("show"), 4000);
  }

  function showLogin(error) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = error || "";
    $("connection").dataset.state = "lost";
    $("connection").textContent = "not connected";
  }

  async function api(path, body) {
    const res = await fetch(path, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    let data = {};
    try { data = await res.json(); } catch (e) { /* empty */ }
    if (res.status === 401 || res.status === 403) {
      showLogin(data.error || "the token was refused");
      throw new Error(data.error || "refused");
    }
    if (!res.ok) {
      notice(data.error || ("request failed (" + res.status + ")"), true);
      throw new Error(data.error || String(res.status));
    }
    if (data.message) notice(data.message);
    else if (data.status) notice(data.status + (data.reason ? ": " + data.reason : ""));
    return data;
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // Where each message came from, always shown: with Twitch and YouTube read at once, a
  // moderator must see whose line it is (identities of two platforms never mix).
  const PLATFORMS = { twitch: "Twitch", youtube: "YouTube", terminal: "console", http: "HTTP", panel: "panel" };

  function itemBody(item) {
    const body = el("div", "body");
    const head = el("div");
    head.appendChild(el("span", "who", item.name || item.user));
    const extra = [item.voice];
    if (item.paid) extra.push("paid");
    if (item.platform) extra.push(PLATFORMS[item.platform] || item.platform);
    head.appendChild(el("span", "meta", " · " + extra.join(" · ")));
    body.appendChild(head);
    body.appendChild(el("div", "text", item.caption || item.text));
    return body;
  }

  function fill(list, items, render, emptyText) {
    // Rebuild a list only when its content changed, so buttons under the pointer stay put.
    const key = JSON.stringify(items);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren();
    if (!items.length) {
      list.appendChild(el("li", "empty", emptyText));
      return;
    }
    for (const item of items) list.appendChild(render(item));
  }

  function clock(epoch) {
    return new Date(epoch * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // The last heard message's first-chunk latency and real-time factor (bot/web/metrics.py),
  // in a header badge made here so the page's markup stays as it is.
  function renderSynthesis(syn) {
    let badge = $("synthesis");
    if (!badge) {
      badge = el("span", "badge", "");
      badge.id = "synthesis";
      badge.title = "the last message: engine start to first audio, and synthesis time / audio length";
      $("playback").after(badge);
    }
    const parts = [];
    if (syn && syn.first_chunk_s !== null && syn.first_chunk_s !== undefined) {
      parts.push("first audio " + Math.round(syn.first_chunk_s * 1000) + " ms");
    }
    if (syn && syn.rtf !== null && syn.rtf !== undefined) parts.push("RTF " + syn.rtf.toFixed(3));
    if (syn && syn.batch_size > 1) parts.push("batch of " + syn.batch_size);
    badge.textContent = parts.join(" · ");
  }

  function render(s) {
    state = s;
    $("login").hidden = true;
    $("main").hidden = false;

    const engine = $("engine");
    engine.dataset.state = s.engine.state;
    engine.title = s.engine.detail;
    $("engine-state").textContent = s.engine.state;
    $("engine-detail").textContent = s.engine.detail;

    const playback = [];
    if (!s.enabled) playback.push("TTS off");
    if (s.paused) playback.push("paused");
    $("playback").textContent = playback.join(" · ");
    renderSynthesis(s.synthesis);

    const now = $("now-playing");
    now.replaceChildren();
    if (s.current) {
      now.className = "item";
      now.dataset.id = String(s.current.id);
      now.appendChild(itemBody(s.current));
    } else {
      now.className = "item empty";
      delete now.dataset.id;
      now.textContent = "nothing is playing";
    }
    $("skip").disabled = !s.current;
    $("pause").hidden = s.paused;
    $("resume").hidden = !s.paused;
    $("tts-off").hidden = !s.enabled;
    $("tts-on").hidden = s.enabled;
    $("clear").disabled = s.queue.length === 0;
    if (!volumeDragging) {
      $("volume").value = String(s.volume);
      $("volume-value").textContent = s.volume + "%";
    }

    $("queue-count").textContent = String(s.queue.length);
    fill($("queue"), s.queue, function (item) {
      const li = el("li");
      li.dataset.id = String(item.id);
      li.appendChild(itemBody(item));
      const remove = el("button", "remove danger", "Remove");
      remove.type = "button";
      remove.addEventListener("click", () => api("/api/remove", { id: item.id }).catch(() => {}));
      li.appendChild(remove);
      return li;
    }, "the queue is empty");

    fill($("mutes"), s.mutes, function (m) {
      const li = el("li");
      li.dataset.user = m.user;
      const body = el("div", "body");
      body.appendChild(el("span", "who", m.user));
      const until = m.until === null ? "until unmuted" : "until " + clock(m.until);
      body.appendChild(el("span", "meta", " · " + until + (m.by ? " · by " + m.by : "")));
      li.appendChild(body);
      const unmute = el("button", "unmute", "Unmute");
      unmute.type = "button";
      unmute.addEventListener("click", () => api("/api/unmute", { user: m.user, platform: m.platform }).catch(() => {}));
      li.appendChild(unmute);
      return li;
    }, "nobody is muted");

    fill($("history"), s.history, function (h) {
      const li = el("li");
      if (h.id !== null && h.id !== undefined) li.dataset.id = String(h.id);
      li.appendChild(itemBody(h));
      const outcome = el("span", "meta outcome-" + h.outcome, h.outcome + (h.detail ? ": " + h.detail : ""));
      outcome.title = clock(h.at);
      li.appendChild(outcome);
      return li;
    }, "nothing yet");

    const select = $("say-voice");
    const voices = s.voices.length ? s.voices : [s.default_voice];
    const chosen = select.value || s.default_voice;
    const current = Array.from(select.options).map((o) => o.value).join("\n");
    if (current !== voices.join("\n")) {
      select.replaceChildren();
      for (const v of voices) {
        const opt = el("option", null, v === s.default_voice ? v + " (default)" : v);
        opt.value = v;
        select.appendChild(opt);
      }
    }
    select.value = voices.includes(chosen) ? chosen : s.default_voice;
  }

  function connect() {
    if (!token) { showLogin(""); return; }
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/panel?token=" + encodeURIComponent(token));
    ws = socket;
    let opened = false;
    socket.onopen = function () {
      opened = true;
      delay = 500;
      $("connection").dataset.state = "live";
      $("connection").textContent = "live";
    };
    socket.onmessage = function (ev) {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "state") render(msg);
    };
    socket.onclose = async function () {
      if (ws !== socket) return;
      $("connection").dataset.state = "lost";
      $("connection").textContent = "reconnecting…";
      if (!opened) {
        // A refused handshake looks like any other failure: ask the API why.
        try {
          const res = await fetch("/api/state", { headers: { "Authorization": "Bearer " + token } });
          if (res.status === 401 || res.status === 403) {
            const data = await res.json().catch(() => ({}));
            showLogin(data.error || "the token was refused");
            return;
          }
        } catch (e) { /* the bot is down: keep retrying */ }
      }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 5000);
    };
  }

  // -- controls ---------------------------------------------------------------------------
  const post = (path, body) => () => api(path, body).catch(() => {});
  $("skip").addEventListener("click", post("/api/skip"));
  $("pause").addEventListener("click", post("/api/pause"));
  $("resume").addEventListener("click", post("/api/resume"));
  $("clear").addEventListener("click", post("/api/clear"));
  $("tts-off").addEventListener("click", post("/api/tts", { enabled: false }));
  $("tts-on").addEventListener("click", post("/api/tts", { enabled: true }));

  const volume = $("volume");
  volume.addEventListener("input", function () {
    volumeDragging = true;
    $("volume-value").textContent = volume.value + "%";
  });
  volume.addEventListener("change", function () {
    volumeDragging = false;
    api("/api/volume", { volume: Number(volume.value) }).catch(() => {});
  });

  $("say-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    const text = $("say-text").value;
    if (!text.trim()) return;
    api("/api/say", { text: text, voice: $("say-voice").value })
      .then((data) => { if (data.status === "queued") $("say-text").value = ""; })
      .catch(() => {});
  });

  $("mute-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    const user = $("mute-user").value.trim();
    if (!user) return;
    api("/api/mute", { user: user, duration: $("mute-duration").value.trim() })
      .then(() => { $("mute-user").value = ""; $("mute-duration").value = ""; })
      .catch(() => {});
  });
  $("unmute").addEventListener("click", function () {
    const user = $("mute-user").value.trim();
    if (user) api("/api/unmute", { user: user }).catch(() => {});
  });

  $("login-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    token = value;
    try { localStorage.setItem(TOKEN_KEY, value); } catch (e) { /* private mode */ }
    $("login-error").textContent = "";
    connect();
  });

  connect();
})();
