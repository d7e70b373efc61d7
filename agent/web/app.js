// sluice dashboard: the runs list ("/") and a run's page ("/runs/<id>"),
// drawn from the agent's JSON API. Every value from the API goes into the
// page as text (textContent, attribute values), never as markup.
"use strict";

(function () {
  const API = "/api/v1";
  const POLL_MS = 1000;
  const IDLE_POLL_MS = 5000;
  const LOG_MAX_LINES = 5000;
  const TOKEN_KEY = "sluice.token";

  const main = document.getElementById("main");
  const conn = document.getElementById("conn");
  const announcer = document.getElementById("announce");

  // --- small helpers -------------------------------------------------------

  // h("a", {href: x, class: "c"}, "text", child...): strings become text nodes.
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function setText(el, text) {
    const t = text === null || text === undefined ? "" : String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  function announce(text) {
    const p = document.createElement("p");
    p.textContent = text;
    announcer.append(p);
    while (announcer.childNodes.length > 5) announcer.firstChild.remove();
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      // Storage refused (private mode): the token lives for this action only.
    }
  }

  function headers(extra, tok) {
    const hd = Object.assign({}, extra);
    const t = tok === undefined ? token() : tok;
    if (t) hd.Authorization = "Bearer " + t;
    return hd;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function errorOf(res) {
    let code = "http_" + res.status;
    let message = res.status + " " + (res.statusText || "error");
    try {
      const body = await res.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
      }
    } catch (e) {
      // Not JSON: keep the status line.
    }
    return new ApiError(res.status, code, message);
  }

  // Any failure to reach the agent or read its answer is an ApiError;
  // anything else thrown while drawing is a bug and surfaces as one.
  async function getJSON(path, signal) {
    let res;
    try {
      res = await fetch(API + path, {
        headers: headers({ Accept: "application/json" }),
        cache: "no-store",
        signal,
      });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "network", "agent unreachable");
    }
    if (!res.ok) throw await errorOf(res);
    try {
      return await res.json();
    } catch (e) {
      throw new ApiError(res.status, "bad_json", "unreadable answer");
    }
  }

  async function post(path, body, tok) {
    const res = await fetch(API + path, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "application/json" }, tok),
      body: JSON.stringify(body || {}),
      cache: "no-store",
    });
    if (!res.ok) throw await errorOf(res);
    return res.json();
  }

  const enc = encodeURIComponent;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // --- statuses ------------------------------------------------------------

  const KINDS = {
    succeeded: ["ok", "\u2713"],
    deployed: ["ok", "\u2713"],
    passed: ["ok", "\u2713"],
    failed: ["bad", "\u2717"],
    timed_out: ["bad", "\u25F7"],
    lost: ["bad", "?"],
    rejected: ["bad", "\u2717"],
    expired: ["bad", "\u25F7"],
    running: ["run", "\u25CF"],
    deploying: ["run", "\u25CF"],
    queued: ["idle", "\u25CB"],
    pending: ["idle", "\u25CB"],
    retrying: ["wait", "\u21BB"],
    waiting: ["wait", "\u2016"],
    waiting_window: ["wait", "\u2016"],
    waiting_approval: ["wait", "\u2016"],
    cancelled: ["idle", "\u2298"],
    skipped: ["idle", "\u21B7"],
    superseded: ["idle", "\u00BB"],
    aborted: ["bad", "\u2717"],
    aborting: ["run", "\u25CF"],
    paused: ["wait", "\u2016"],
    rolling_back: ["run", "\u21BA"],
    rolled_back: ["idle", "\u21BA"],
    rollback_failed: ["bad", "\u2717"],
    rollback_cancelled: ["idle", "\u2298"],
  };
  const TERMINAL_RUN = ["succeeded", "failed", "cancelled", "rejected", "superseded", "aborted"];
  const TERMINAL_STAGE = ["succeeded", "failed", "timed_out", "cancelled", "skipped", "lost",
    "aborted", "rolled_back"];

  function kindOf(status) {
    return (KINDS[status] || ["idle", "\u2022"])[0];
  }

  function statusWord(status) {
    return status ? String(status).replace(/_/g, " ") : "unknown";
  }

  function badge(status) {
    const [kind, glyph] = KINDS[status] || ["idle", "\u2022"];
    return h("span", { class: "status s-" + kind, "data-status": status || "" },
      h("span", { class: "glyph", "aria-hidden": "true" }, glyph),
      h("span", { class: "word" }, statusWord(status)));
  }

  function updateBadge(el, status) {
    if (el.getAttribute("data-status") === (status || "")) return;
    el.replaceWith(badge(status));
  }

  // --- times ---------------------------------------------------------------

  function ms(t) {
    const v = t ? Date.parse(t) : NaN;
    return Number.isNaN(v) ? null : v;
  }

  function duration(from, to) {
    const a = ms(from);
    if (a === null) return "";
    const b = ms(to) === null ? Date.now() : ms(to);
    let s = Math.max(0, Math.round((b - a) / 1000));
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    s %= 60;
    if (m < 60) return m + "m " + String(s).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }

  function ago(t) {
    const v = ms(t);
    if (v === null) return "";
    const s = Math.round((Date.now() - v) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }

  function clock(t) {
    const v = ms(t);
    if (v === null) return "";
    return new Date(v).toLocaleString(undefined, {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
  }

  function timeEl(t, text) {
    if (!t) return h("span", { class: "muted" }, "\u2014");
    return h("time", { datetime: t, title: t }, text === undefined ? clock(t) : text);
  }

  function shortRef(ref) {
    if (!ref) return "";
    return String(ref).replace(/^refs\/heads\//, "").replace(/^refs\/tags\//, "tag ");
  }

  function shortSha(sha) {
    return sha ? String(sha).slice(0, 8) : "";
  }

  // --- connection state ----------------------------------------------------

  let authNeeded = false;

  function connected() {
    conn.classList.remove("lost");
    setText(conn, "live \u00b7 updated " + new Date().toLocaleTimeString());
  }

  function disconnected(err) {
    if (err && err.name === "AbortError") return;
    conn.classList.add("lost");
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      setText(conn, "token needed to read: " + err.message);
      if (!authNeeded) {
        authNeeded = true;
        announce("The agent asks for a token to read. Use the Token button.");
      }
      return;
    }
    setText(conn, "connection lost, retrying \u00b7 " + (err ? err.message : ""));
  }

  // Polls fn every interval(): the next poll starts once the previous one
  // ended, and none runs while the tab is hidden. A poll asked for while one
  // runs (a click on a pager) follows it at once: one loop, never two.
  function poller(fn, interval) {
    let timer = null;
    let running = false;
    let again = false;
    async function tick() {
      timer = null;
      if (document.hidden) return;
      if (running) {
        again = true;
        return;
      }
      running = true;
      do {
        again = false;
        try {
          await fn();
          connected();
        } catch (e) {
          if (!(e instanceof ApiError) && e.name !== "AbortError") {
            setTimeout(() => {
              throw e;
            });
          }
          disconnected(e);
        }
      } while (again && !document.hidden);
      running = false;
      if (!document.hidden) timer = setTimeout(tick, interval());
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && timer === null && !running) tick();
    });
    tick();
    return {
      now() {
        if (timer !== null) clearTimeout(timer);
        tick();
      },
    };
  }

  // --- action dialog -------------------------------------------------------

  const dialog = document.getElementById("action-dialog");
  const form = document.getElementById("action-form");
  const dTitle = document.getElementById("action-title");
  const dDesc = document.getElementById("action-desc");
  const dToken = document.getElementById("action-token");
  const dReasonField = document.getElementById("reason-field");
  const dReason = document.getElementById("action-reason");
  const dError = document.getElementById("action-error");
  const dSubmit = document.getElementById("action-submit");
  let pending = null; // {run(token, reason), needsReason, opener}

  // Opens the dialog for one action: title, description, the button's
  // label, whether a reason is needed, and run(token, reason) that
  // performs it (and throws an ApiError when the agent refuses).
  function ask(opts) {
    pending = Object.assign({ opener: document.activeElement }, opts);
    setText(dTitle, opts.title);
    setText(dDesc, opts.description || "");
    setText(dSubmit, opts.submit);
    dReasonField.hidden = !opts.reasonField;
    setText(document.querySelector("#reason-field .req"), opts.needsReason ? "(required)" : "(optional)");
    dReason.value = "";
    dToken.value = token();
    setText(dError, "");
    dSubmit.disabled = false;
    dialog.showModal();
    (opts.reasonField && dToken.value ? dReason : dToken).focus();
  }

  function closeDialog() {
    dialog.close();
  }

  dialog.addEventListener("close", () => {
    const opener = pending && pending.opener;
    pending = null;
    if (opener && document.contains(opener)) opener.focus();
  });

  document.getElementById("action-cancel").addEventListener("click", closeDialog);
  document.getElementById("action-forget").addEventListener("click", () => {
    setToken("");
    dToken.value = "";
    setText(dError, "");
    announce("Token forgotten.");
    dToken.focus();
  });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!pending) return;
    const reason = dReason.value.trim();
    if (pending.needsReason && !reason) {
      setText(dError, "Give a reason: it is recorded with the decision.");
      dReason.focus();
      return;
    }
    const tok = dToken.value.trim();
    dSubmit.disabled = true;
    setText(dError, "");
    try {
      const done = await pending.run(tok, reason);
      setToken(tok);
      closeDialog();
      if (done) announce(done);
    } catch (e) {
      setText(dError, e instanceof ApiError ? e.message + " (" + e.status + ")" : String(e.message || e));
      dSubmit.disabled = false;
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) dToken.focus();
    }
  });

  document.getElementById("token-button").addEventListener("click", () => {
    ask({
      title: "API token",
      description: "Used for every request this tab makes to the agent.",
      submit: "Save",
      reasonField: false,
      async run(tok) {
        setToken(tok);
        authNeeded = false;
        if (view && view.refresh) view.refresh();
        return tok ? "Token saved." : "No token.";
      },
    });
  });

  // --- runs list -----------------------------------------------------------

  function runsView() {
    document.title = "Runs \u00b7 sluice";
    document.getElementById("nav-runs").setAttribute("aria-current", "page");
    const params = new URLSearchParams(location.search);
    const pipelineSel = h("select", { id: "f-pipeline" }, h("option", { value: "" }, "All"));
    const statusSel = h("select", { id: "f-status" }, h("option", { value: "" }, "All"),
      ["queued", "running", "waiting", "succeeded", "failed", "cancelled", "rejected", "superseded",
        "aborted"].map((s) => h("option", { value: s }, statusWord(s))));
    statusSel.value = params.get("status") || "";
    const tbody = h("tbody");
    const empty = h("p", { class: "empty", hidden: true });
    const count = h("span", { class: "muted", id: "runs-count" });
    const newerBtn = h("button", { type: "button", onclick: showNewer }, "Newer");
    const olderBtn = h("button", { type: "button", onclick: showOlder }, "Older");
    const pager = h("nav", { class: "pager", "aria-label": "Older and newer runs", hidden: true },
      newerBtn, olderBtn);
    main.replaceChildren(
      h("div", { class: "toolbar" },
        h("h1", { id: "runs-title" }, "Runs"),
        count,
        h("span", { class: "spacer" }),
        h("label", { for: "f-pipeline" }, "Pipeline", pipelineSel),
        h("label", { for: "f-status" }, "Status", statusSel)),
      h("div", { class: "panel" },
        h("table", { "aria-labelledby": "runs-title" },
          h("thead", {}, h("tr", {},
            ["Status", "Run", "Pipeline", "Branch or tag", "Commit", "Event", "Created", "Duration"]
              .map((t) => h("th", { scope: "col" }, t)))),
          tbody),
        empty),
      pager);

    const rows = new Map(); // id -> {tr, cells, status}
    let pipelinesKnown = false;
    let want = params.get("pipeline") || "";
    // The page shown is the runs older than the run `before`, or those just
    // newer than the run `after` (neither: the newest), so that its address
    // alone says where it is. `next` is where the page older than it
    // begins, null on the last; `prev` where the newer one does.
    let before = params.get("before") || "";
    let after = before ? "" : params.get("after") || "";
    let next = null;
    let prev = null;

    function listQuery() {
      const q = new URLSearchParams({ limit: "100" });
      if (pipelineSel.value) q.set("pipeline", pipelineSel.value);
      if (statusSel.value) q.set("status", statusSel.value);
      if (before) q.set("before", before);
      if (after) q.set("after", after);
      return String(q);
    }

    function setAddress() {
      const q = new URLSearchParams(listQuery());
      q.delete("limit");
      history.replaceState(null, "", "/" + (q.toString() ? "?" + q : ""));
    }

    function show() {
      setAddress();
      p.now();
    }

    function filtersChanged() {
      want = pipelineSel.value;
      before = "";
      after = "";
      show();
    }

    function showOlder() {
      if (!next) return;
      before = next;
      after = "";
      show();
    }

    // `prev` is null on a page past the oldest run: Newer then leads to the
    // newest.
    function showNewer() {
      before = "";
      after = prev || "";
      show();
    }
    pipelineSel.addEventListener("change", filtersChanged);
    statusSel.addEventListener("change", filtersChanged);

    function row(run) {
      const link = h("a", { href: "/runs/" + enc(run.id), class: "mono" }, run.id);
      const cells = {
        status: badge(run.status),
        pipeline: h("td", {}),
        ref: h("td", { class: "ref" }),
        sha: h("td", { class: "mono" }),
        event: h("td", {}),
        created: h("td", { class: "num" }),
        dur: h("td", { class: "num" }),
      };
      const tr = h("tr", { "data-run": run.id },
        h("td", {}, cells.status), h("td", {}, link), cells.pipeline, cells.ref, cells.sha,
        cells.event, cells.created, cells.dur);
      return { tr, cells, status: run.status };
    }

    function fill(r, run) {
      if (r.status !== run.status) {
        announce("Run " + run.id + " (" + (run.pipeline || "") + "): " + statusWord(run.status));
        r.status = run.status;
      }
      const nb = badge(run.status);
      if (r.cells.status.getAttribute("data-status") !== (run.status || "")) {
        r.cells.status.replaceWith(nb);
        r.cells.status = nb;
      }
      setText(r.cells.pipeline, run.pipeline);
      setText(r.cells.ref, shortRef(run.ref));
      r.cells.ref.title = run.ref || "";
      setText(r.cells.sha, shortSha(run.sha));
      setText(r.cells.event, run.event);
      setText(r.cells.created, ago(run.created));
      r.cells.created.title = run.created || "";
      setText(r.cells.dur, duration(run.started || run.created, run.finished));
    }

    async function loadPipelines() {
      try {
        const body = await getJSON("/pipelines");
        for (const pl of body.pipelines || []) {
          pipelineSel.append(h("option", { value: pl.name }, pl.name));
        }
        pipelinesKnown = true;
      } catch (e) {
        // The list stays usable without the filter's choices.
      }
      if (want) {
        if (![...pipelineSel.options].some((o) => o.value === want)) {
          pipelineSel.append(h("option", { value: want }, want));
        }
        pipelineSel.value = want;
      }
    }

    async function refresh() {
      if (!pipelinesKnown) await loadPipelines();
      let asked = listQuery();
      let body = await getJSON("/runs?" + asked);
      // Nothing is newer than the runs just newer than `after`: the newest
      // page is shown instead, full and taking in the runs still to come.
      if (asked === listQuery() && after && !body.prev) {
        after = "";
        setAddress();
        asked = listQuery();
        body = await getJSON("/runs?" + asked);
      }
      // A page or filter chosen meanwhile has its own answer coming.
      if (asked !== listQuery()) return;
      const runs = body.runs || [];
      next = body.next || null;
      prev = body.prev || null;
      const seen = new Set();
      let above = null;
      for (const run of runs) {
        seen.add(run.id);
        let r = rows.get(run.id);
        if (!r) {
          r = row(run);
          rows.set(run.id, r);
        }
        fill(r, run);
        // Moves a row only when it is out of place, so focus stays put.
        const want = above ? above.nextSibling : tbody.firstChild;
        if (want !== r.tr) tbody.insertBefore(r.tr, want);
        above = r.tr;
      }
      for (const [id, r] of rows) {
        if (!seen.has(id)) {
          r.tr.remove();
          rows.delete(id);
        }
      }
      empty.hidden = runs.length > 0;
      setText(empty, before ? "No older runs." : "No runs yet.");
      setText(count, countText(runs.length));
      // A button that becomes disabled would drop the keyboard's focus.
      const focused = document.activeElement;
      newerBtn.disabled = !before && !after;
      olderBtn.disabled = !next;
      pager.hidden = !before && !after && !next;
      if (focused === olderBtn && olderBtn.disabled && !newerBtn.disabled) newerBtn.focus();
      if (focused === newerBtn && newerBtn.disabled && !olderBtn.disabled) olderBtn.focus();
    }

    // What the page holds, and no more: the API tells no total.
    function countText(n) {
      const runs = n === 1 ? "1 run" : n + " runs";
      if (!before && !after) return next ? "newest " + runs : runs;
      if (!n) return "no older runs";
      return next ? n + " older " + (n === 1 ? "run" : "runs") : "oldest " + runs;
    }

    const p = poller(refresh, () => POLL_MS);
    return { refresh: () => p.now() };
  }

  // --- a run's page --------------------------------------------------------

  // Depth of each stage: 0 without needs, else one more than its deepest need.
  // Maps by stage name have no prototype: a stage may be named "constructor"
  // or "__proto__".
  function depths(stages) {
    const memo = Object.create(null);
    function depth(name, seen) {
      if (memo[name] !== undefined) return memo[name];
      if (seen.has(name)) return 0;
      seen.add(name);
      let d = 0;
      for (const n of (stages[name] && stages[name].needs) || []) {
        if (stages[n]) d = Math.max(d, depth(n, seen) + 1);
      }
      memo[name] = d;
      return d;
    }
    const out = Object.create(null);
    for (const name of Object.keys(stages)) out[name] = depth(name, new Set());
    return out;
  }

  function runView(id) {
    document.title = id + " \u00b7 sluice";
    const params = new URLSearchParams(location.search);
    let selected = params.get("stage");
    let run = null;
    let graphKey = "";
    let envKey = "";
    const stageButtons = new Map();

    const title = h("h1", {}, h("span", { class: "pl" }, "Run"), h("span", { class: "id" }, id));
    let headBadge = badge("");
    const actions = h("div", { class: "actions" });
    const meta = h("dl", { class: "meta panel" });
    const graph = h("ol", { class: "graph", "aria-label": "Stages by dependency depth" });
    const chain = h("ol", { class: "chain", "aria-label": "Environments in promotion order" });
    const envSection = h("section", { class: "block panel", "aria-labelledby": "env-title", hidden: true },
      h("h2", { id: "env-title" }, "Environments"), chain);
    const logTitle = h("h2", { id: "log-title" }, "Log");
    const logState = h("span", { class: "muted", id: "log-state" });
    const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
    const logBox = h("div", { class: "log", id: "log", role: "log", tabindex: "0", "aria-labelledby": "log-title" });
    const notice = h("p", { class: "notice bad", role: "alert", hidden: true });

    main.replaceChildren(
      h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "/" }, "Runs"), " / ",
        h("span", { class: "mono", "aria-current": "page" }, id)),
      notice,
      h("div", { class: "run-head" }, title, headBadge, actions),
      meta,
      h("div", { class: "grid" },
        h("section", { class: "block panel", "aria-labelledby": "stages-title" },
          h("h2", { id: "stages-title" }, "Stages"), graph),
        envSection,
        h("section", { class: "block panel", "aria-labelledby": "log-title" },
          h("div", { class: "log-head" }, logTitle, logState, h("span", { class: "spacer" }),
            h("label", { for: "log-follow" }, follow, " Follow")),
          logBox)));

    // --- header and facts

    function drawHead() {
      setText(title.querySelector(".pl"), run.pipeline || "Run");
      document.title = (run.pipeline || "run") + " " + id + " \u00b7 " + statusWord(run.status) + " \u00b7 sluice";
      if (headBadge.getAttribute("data-status") !== run.status) {
        if (headBadge.getAttribute("data-status")) announce("Run " + statusWord(run.status));
        const nb = badge(run.status);
        headBadge.replaceWith(nb);
        headBadge = nb;
      }
      const facts = [
        ["Repository", run.repository],
        ["Branch or tag", shortRef(run.ref)],
        ["Commit", shortSha(run.sha)],
        ["Event", run.event],
        ["Created", timeEl(run.created)],
        ["Started", timeEl(run.started)],
        ["Finished", timeEl(run.finished)],
        ["Duration", duration(run.started, run.finished) || "\u2014"],
      ];
      meta.replaceChildren(...facts.map(([k, v]) =>
        h("div", {}, h("dt", {}, k), h("dd", { class: k === "Commit" ? "mono" : null, title: k === "Commit" ? run.sha : null }, v || "\u2014"))));

      const verbs = [];
      if (["queued", "running", "waiting"].includes(run.status)) verbs.push(["cancel", "Cancel run", true]);
      if (["failed", "cancelled"].includes(run.status)) verbs.push(["retry", "Retry failed stages", false]);
      const key = verbs.map((v) => v[0]).join();
      if (actions.getAttribute("data-key") !== key) {
        actions.setAttribute("data-key", key);
        actions.replaceChildren(...verbs.map(([verb, label, danger]) =>
          h("button", {
            type: "button", class: danger ? "danger" : null, "data-action": verb,
            onclick: () => ask({
              title: label,
              description: "Run " + id + " of " + (run.pipeline || "?"),
              submit: label,
              danger,
              reasonField: false,
              async run(tok) {
                await post("/runs/" + enc(id) + "/" + verb, {}, tok);
                p.now();
                return label + ": done.";
              },
            }),
          }, label)));
      }
    }

    // --- stage graph

    function drawGraph() {
      const stages = Object.create(null);
      for (const [name, s] of Object.entries(run.stages || {})) {
        if (s && !s.env) stages[name] = s;
      }
      const d = depths(stages);
      const key = Object.keys(stages).map((n) => n + ":" + d[n]).join();
      if (key !== graphKey) {
        graphKey = key;
        stageButtons.clear();
        const cols = [];
        for (const name of Object.keys(stages)) (cols[d[name]] = cols[d[name]] || []).push(name);
        graph.replaceChildren(...cols.map((names, i) =>
          h("li", {}, h("span", { class: "depth" }, i === 0 ? "start" : "step " + (i + 1)),
            h("ul", {}, names.map((name) => {
              const b = h("button", {
                type: "button", class: "stage", "data-stage": name, "aria-pressed": "false",
                onclick: () => select(name),
              },
                h("span", { class: "name" }, h("span", {}, name), h("span", { class: "dur" })),
                h("span", { class: "sub" }, h("span", { class: "st" }), h("span", { class: "kind" })));
              stageButtons.set(name, b);
              return h("li", {}, b);
            })))));
      }
      for (const [name, s] of Object.entries(stages)) {
        const b = stageButtons.get(name);
        b.className = "stage k-" + kindOf(s.status);
        const st = b.querySelector(".st");
        if (!st.firstChild || st.firstChild.getAttribute("data-status") !== s.status) {
          st.replaceChildren(badge(s.status));
        }
        setText(b.querySelector(".dur"), duration(s.started, s.finished));
        let sub = s.kind || "";
        if (s.needs && s.needs.length) sub += (sub ? " \u00b7 " : "") + "after " + s.needs.join(", ");
        if (s.attempt > 1) sub += " \u00b7 attempt " + s.attempt;
        setText(b.querySelector(".kind"), sub);
        const why = s.error || s.skip_reason || "";
        b.title = why;
        b.setAttribute("aria-label", name + ", " + statusWord(s.status) +
          (duration(s.started, s.finished) ? ", " + duration(s.started, s.finished) : "") + (why ? ", " + why : ""));
      }
      for (const [name, b] of stageButtons) b.setAttribute("aria-pressed", String(name === selected));
    }

    // --- environments

    function kv(pairs) {
      const dl = h("dl");
      for (const [k, v] of pairs) {
        if (v === null || v === undefined || v === "") continue;
        dl.append(h("dt", {}, k), h("dd", {}, v));
      }
      return dl;
    }

    function num(v) {
      return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/0+$/, "")) : String(v);
    }

    // The strategy of a promotion, as far as the API gives it: step,
    // weights, analysis measurements beside their thresholds, checklist.
    function strategyBlock(st) {
      if (!st || typeof st !== "object") return null;
      const out = [h("h4", {}, "Strategy")];
      const name = st.name || st.kind || st.type;
      const step = st.step !== undefined ? "step " + num(st.step) + (st.steps !== undefined ? " of " + num(st.steps) : "") : null;
      out.push(kv([["Kind", name], ["Progress", step], ["State", st.status ? statusWord(st.status) : null],
        ["Paused until", st.paused_until ? timeEl(st.paused_until) : null]]));
      const w = st.weights;
      if (w && typeof w === "object") {
        const entries = Object.entries(w).filter(([, v]) => typeof v === "number");
        const total = entries.reduce((a, [, v]) => a + v, 0) || 1;
        const bar = h("div", { class: "weights", role: "img",
          "aria-label": "Traffic weights: " + entries.map(([k, v]) => k + " " + num(v) + "%").join(", ") });
        for (const [k, v] of entries) {
          const seg = h("span", { title: k + " " + num(v) + "%" });
          seg.style.width = (100 * v) / total + "%";
          bar.append(seg);
        }
        out.push(h("h4", {}, "Weights"), bar,
          h("p", { class: "weights-legend", "data-weights": "" },
            entries.map(([k, v]) => k + " " + num(v) + "%").join(" \u00b7 ")));
      }
      const analysis = Array.isArray(st.analysis) ? st.analysis : st.analysis && st.analysis.measurements;
      if (Array.isArray(analysis) && analysis.length) {
        out.push(h("h4", {}, "Analysis"), h("div", { class: "scroll-x" }, h("table", { class: "small" },
          h("thead", {}, h("tr", {}, ["Metric", "Measured", "Threshold", "Result"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", {}, analysis.map((m) => {
            const result = m.status || (m.pass === true ? "passed" : m.pass === false ? "failed" : "");
            const threshold = m.threshold === undefined ? "" :
              (typeof m.threshold === "object" ? Object.entries(m.threshold).map(([k, v]) => k + " " + num(v)).join(", ")
                : (m.op ? m.op + " " : "") + num(m.threshold));
            return h("tr", {}, h("td", {}, m.metric || m.name || ""),
              h("td", { class: "num" }, m.value === undefined || m.value === null ? "\u2014" : num(m.value)),
              h("td", { class: "num" }, threshold),
              h("td", {}, result ? badge(result) : ""));
          })))));
      }
      const checklist = st.checklist || null;
      if (Array.isArray(checklist) && checklist.length) {
        out.push(h("h4", {}, "Checklist"), h("ul", { class: "checklist" }, checklist.map((c) => {
          const item = typeof c === "string" ? { item: c } : c;
          const done = item.done === true || item.checked === true || item.status === "done";
          return h("li", {}, h("span", { "aria-hidden": "true" }, done ? "\u2611" : "\u2610"),
            h("span", {}, (item.item || item.name || item.text || "") + (done ? " (done)" : " (open)")),
            item.by ? h("span", { class: "muted" }, "\u2014 " + item.by) : null);
        })));
      }
      return out;
    }

    function envActions(name, e) {
      // The API may list what it offers; otherwise approvals are offered
      // while a promotion waits for one.
      let verbs = Array.isArray(e.actions) ? e.actions.slice() : [];
      if (!Array.isArray(e.actions) && e.status === "waiting_approval") verbs = ["approve", "reject"];
      const labels = { approve: "Approve", reject: "Reject", promote: "Promote", abort: "Abort", retry: "Retry", rollback: "Roll back" };
      return verbs.filter((v) => /^[a-z_]+$/.test(v)).map((verb) => {
        const label = labels[verb] || verb;
        const decision = verb === "approve" || verb === "reject";
        return h("button", {
          type: "button",
          class: verb === "approve" || verb === "promote" ? "primary" : verb === "reject" || verb === "abort" ? "danger" : null,
          "data-action": verb, "data-env": name,
          onclick: () => ask({
            title: label + " " + name,
            description: "Run " + id + " of " + (run.pipeline || "?") + " at " + shortSha(run.sha) + " (" + shortRef(run.ref) + ")",
            submit: label,
            danger: verb === "reject" || verb === "abort",
            reasonField: true,
            needsReason: decision,
            async run(tok, reason) {
              const body = reason ? { reason } : {};
              const res = await post("/runs/" + enc(id) + "/environments/" + enc(name) + "/" + verb, body, tok);
              p.now();
              const now = res && res.status ? res.status : res && res.promotion;
              return label + " " + name + ": " + (typeof now === "string" ? statusWord(now) : "done") + ".";
            },
          }),
        }, label);
      });
    }

    function envCard(name, e, index) {
      const ap = e.approval || {};
      const win = e.window || {};
      const deploy = (run.stages || {})["deploy@" + name];
      let approval = null;
      if (ap.decision) {
        approval = [ap.decision, ap.by ? " by " + ap.by : "", ap.at ? " " : "", ap.at ? timeEl(ap.at) : "",
          ap.reason ? ": \u201c" + ap.reason + "\u201d" : ""];
      } else if (ap.required) {
        approval = e.status === "waiting_approval" ? "waiting for approval" : "required";
      }
      const children = [
        h("header", {}, h("h3", {}, h("span", { class: "step" }, (index + 1) + ". "), name), badge(e.status)),
        kv([
          ["Offered", e.offered ? timeEl(e.offered) : null],
          ["Deploy", deploy ? [badge(deploy.status), " ", duration(deploy.started, deploy.finished)] : null],
          ["Finished", e.finished ? timeEl(e.finished) : null],
          ["Approval", approval ? h("span", { "data-approval": "" }, approval) : "not required"],
          ["Expires", ap.expires_at && !ap.decision ? timeEl(ap.expires_at) : null],
          ["Deny", win.deny && win.deny.length ? win.deny.map((d) => h("span", { class: "chip" }, d)) : null],
          ["Held until", win.held_until ? timeEl(win.held_until) : null],
        ]),
        strategyBlock(e.strategy),
      ];
      const buttons = envActions(name, e);
      if (deploy) {
        buttons.push(h("button", { type: "button", class: "quiet", onclick: () => select("deploy@" + name) }, "Deploy log"));
      }
      children.push(h("div", { class: "actions" }, buttons));
      return h("li", { class: "env k-" + kindOf(e.status), "data-env": name, "aria-label": name + ", " + statusWord(e.status) }, children);
    }

    function drawEnvironments() {
      const envs = run.environments || null;
      envSection.hidden = !envs || Object.keys(envs).length === 0;
      if (envSection.hidden) return;
      // Redraws only when something shown changed, so focus and a half-read
      // card stay put between polls.
      const deploys = Object.keys(envs).map((n) => (run.stages || {})["deploy@" + n] || null);
      const key = JSON.stringify([envs, deploys.map((s) => s && [s.status, duration(s.started, s.finished)])]);
      if (key === envKey) return;
      const focused = document.activeElement;
      const refocus = focused && chain.contains(focused)
        ? [focused.getAttribute("data-env"), focused.getAttribute("data-action"), focused.textContent] : null;
      envKey = key;
      chain.replaceChildren(...Object.entries(envs).map(([n, e], i) => envCard(n, e || {}, i)));
      if (refocus) {
        const again = [...chain.querySelectorAll("button")].find((b) =>
          b.getAttribute("data-env") === refocus[0] && b.getAttribute("data-action") === refocus[1] && b.textContent === refocus[2]);
        if (again) again.focus();
      }
    }

    // --- log

    let logCtl = null;
    let logCount = 0;

    function stageOf(name) {
      return (run && run.stages && run.stages[name]) || {};
    }

    function select(name) {
      if (!name || selected === name && logCtl) return;
      selected = name;
      const q = new URLSearchParams(location.search);
      q.set("stage", name);
      history.replaceState(null, "", location.pathname + "?" + q);
      for (const [n, b] of stageButtons) b.setAttribute("aria-pressed", String(n === selected));
      startLog(name);
    }

    // A line as a terminal shows it: a carriage return starts the line
    // over (a progress bar shows its last state), SGR escapes colour or
    // embolden the text that follows, and every other escape sequence
    // (cursor moves, erasing, titles, hyperlinks' targets) is left out.
    function terminalText(text) {
      const cr = text.replace(/\r+$/, "").lastIndexOf("\r");
      if (cr >= 0) text = text.slice(cr + 1);
      text = text.replace(/\r+$/, "");
      const out = [];
      let fg = null;
      let bold = false;
      let last = 0;
      const esc = /\x1b(?:\[([0-9;?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-~])/g;
      function push(str) {
        if (!str) return;
        const cls = [fg !== null ? "fg" + fg : "", bold ? "bold" : ""].filter(Boolean).join(" ");
        out.push(cls ? h("span", { class: cls }, str) : str);
      }
      for (let m; (m = esc.exec(text)) !== null; ) {
        push(text.slice(last, m.index));
        last = esc.lastIndex;
        if (m[2] !== "m") continue;
        for (const p of (m[1] || "0").split(";").map(Number)) {
          if (p === 0) { fg = null; bold = false; }
          else if (p === 1) bold = true;
          else if (p === 22) bold = false;
          else if (p >= 30 && p <= 37) fg = p - 30;
          else if (p >= 90 && p <= 97) fg = p - 90 + 8;
          else if (p === 39) fg = null;
        }
      }
      push(text.slice(last));
      return out;
    }

    function addLines(lines) {
      if (!lines.length) return;
      const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 24;
      const none = logBox.querySelector(".none");
      if (none) none.remove();
      const frag = document.createDocumentFragment();
      for (const l of lines) {
        logCount++;
        const err = l.stream === "stderr";
        frag.append(h("div", { class: "line" + (err ? " err" : "") },
          h("span", { class: "ln", "aria-hidden": "true" }, String(logCount)),
          h("span", { class: "ts" }, l.time ? new Date(ms(l.time)).toLocaleTimeString() : ""),
          h("span", { class: "text" }, err ? h("span", { class: "sr-only" }, "stderr: ") : null,
            ...terminalText(String(l.line ?? "")))));
      }
      logBox.append(frag);
      while (logBox.childElementCount > LOG_MAX_LINES) logBox.firstElementChild.remove();
      if (follow.checked && atBottom) logBox.scrollTop = logBox.scrollHeight;
    }

    function startLog(name) {
      if (logCtl) logCtl.abort();
      const ctl = new AbortController();
      logCtl = ctl;
      logCount = 0;
      setText(logTitle, "Log: " + name);
      logBox.replaceChildren(h("div", { class: "none" }, "No output yet."));
      followLog(name, ctl.signal).catch((e) => {
        if (e.name !== "AbortError") setText(logState, "log unavailable: " + e.message);
      });
    }

    // Server-Sent Events when the agent streams them, else polling with
    // ?after=; both resume from the last line id shown, also after the
    // connection dropped or the agent could not answer for a while (it
    // restarted, a proxy cut the stream, Redis was away).
    async function followLog(name, signal) {
      let after = "";
      const path = "/runs/" + enc(id) + "/stages/" + enc(name) + "/log";
      // One request: how many lines it brought, whether the log ended, and
      // whether it came as events.
      async function readLog() {
        const hd = { Accept: "text/event-stream, application/json;q=0.9" };
        if (after) hd["Last-Event-ID"] = after;
        const res = await fetch(API + path + (after ? "?after=" + enc(after) : ""),
          { headers: headers(hd), cache: "no-store", signal });
        if (!res.ok) throw await errorOf(res);
        if (!(res.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
          const body = await res.json();
          const lines = body.lines || [];
          addLines(lines);
          if (body.next) after = body.next;
          return { got: lines.length, ended: false, sse: false };
        }
        const out = { got: 0, ended: false, sse: true };
        await readEvents(res, signal, (ev) => {
          if (ev.id) after = ev.id;
          if (ev.event === "end" || ev.event === "eof" || ev.event === "done") {
            out.ended = true;
            return;
          }
          if (ev.event && ev.event !== "message" && ev.event !== "line") return;
          let line;
          try {
            line = JSON.parse(ev.data);
          } catch (e) {
            line = { line: ev.data };
          }
          if (typeof line !== "object" || line === null) line = { line: String(ev.data) };
          out.got++;
          addLines([line]);
        });
        return out;
      }
      for (;;) {
        if (signal.aborted) return;
        const status = stageOf(name).status;
        const finished = TERMINAL_STAGE.includes(status);
        setText(logState, finished ? statusWord(status) : status === "running" ? "live" : statusWord(status));
        let got, ended, sse;
        try {
          ({ got, ended, sse } = await readLog());
        } catch (e) {
          // An answer that will not change (no such stage, a token needed)
          // ends it; anything else is tried again.
          if (e.name === "AbortError" || (e instanceof ApiError && e.status >= 400 && e.status < 500)) throw e;
          setText(logState, "reconnecting \u00b7 " + (e.message || e));
          await sleep(POLL_MS);
          continue;
        }
        if (ended || (finished && got === 0)) {
          // A retry writes the stage's next attempt to the same log: it is
          // followed on from the last line shown once the run says so.
          // Meanwhile the state shown is the run's latest.
          const attempt = stageOf(name).attempt;
          while (stageOf(name).attempt === attempt) {
            setText(logState, statusWord(stageOf(name).status) + " \u00b7 " + logCount + (logCount === 1 ? " line" : " lines"));
            if (logCount === 0) setText(logBox.querySelector(".none"), TERMINAL_STAGE.includes(stageOf(name).status) ? "No output." : "No output yet.");
            await sleep(POLL_MS);
            if (signal.aborted) return;
          }
          continue;
        }
        if (got === 0 || sse) await sleep(POLL_MS);
      }
    }

    // Reads an event stream until it closes, handing each event to onEvent.
    async function readEvents(res, signal, onEvent) {
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      let ev = { data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
          if (line === "") {
            if (ev.data.length || ev.event) onEvent({ id: ev.id, event: ev.event, data: ev.data.join("\n") });
            ev = { data: [], id: ev.id };
            continue;
          }
          if (line.startsWith(":")) continue;
          const c = line.indexOf(":");
          const field = c < 0 ? line : line.slice(0, c);
          const val = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
          if (field === "data") ev.data.push(val);
          else if (field === "id") ev.id = val;
          else if (field === "event") ev.event = val;
        }
        if (signal.aborted) return;
      }
    }

    // The stage whose log to show when none is chosen: the first running,
    // else the first that failed, else the last that started.
    function defaultStage() {
      const entries = Object.entries(run.stages || {});
      const running = entries.find(([, s]) => s && s.status === "running");
      if (running) return running[0];
      const bad = entries.find(([, s]) => s && kindOf(s.status) === "bad");
      if (bad) return bad[0];
      const started = entries.filter(([, s]) => s && s.started);
      if (started.length) return started[started.length - 1][0];
      return entries.length ? entries[0][0] : null;
    }

    async function refresh() {
      try {
        run = await getJSON("/runs/" + enc(id));
        notice.hidden = true;
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          setText(notice, "No run " + id + " on this agent.");
          notice.hidden = false;
          return;
        }
        throw e;
      }
      drawHead();
      drawGraph();
      drawEnvironments();
      if (!logCtl) {
        if (!selected || !(run.stages || {})[selected]) selected = defaultStage();
        if (selected) select(selected);
      }
    }

    const p = poller(refresh, () => (run && TERMINAL_RUN.includes(run.status) ? IDLE_POLL_MS : POLL_MS));
    return { refresh: () => p.now() };
  }

  // --- routing -------------------------------------------------------------

  let view = null;
  const m = location.pathname.match(/^\/runs\/([^/]+)\/?$/);
  if (m) view = runView(decodeURIComponent(m[1]));
  else view = runsView();
})();
