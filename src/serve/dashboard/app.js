// The dashboard: signs in (or finds the daemon open), then follows two streams: the
// dashboard's own (the state of the house, the power history) and the watch stream of the
// `action` view (the decisions, live). Everything shown comes from them, from the approval
// requests (`GET /v1/approvals`), and from the action journal when the daemon keeps one.

import { ApiError, call, follow, setToken, token } from "./api.js";
import { clock, drawPower, legend } from "./chart.js";

const $ = (id) => document.getElementById(id);

/// An element with a class and text, or children.
function el(tag, cls, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function badge(text, kind) {
  return el("span", `badge ${kind || ""}`, text);
}

function watts(w) {
  if (w === null || w === undefined) return "–";
  return Math.abs(w) >= 1000 ? `${(w / 1000).toFixed(2)} kW` : `${w} W`;
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${String(Math.round((s % 3600) / 60)).padStart(2, "0")} min`;
}

function hms(seconds) {
  return new Date(seconds * 1000).toISOString().slice(11, 19);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

/// A Datalog string literal.
function quoted(text) {
  return `"${String(text).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

const board = {
  state: null,
  samples: [],
  windowSeconds: 6 * 3600,
  decisions: [],
  /// The logical time from which the `action` watch stream carries the decisions.
  actionsFrom: null,
  approvals: null,
  approvalsKey: "",
  journal: undefined,
  stops: [],
  receivedAt: 0,
};

// ---------------------------------------------------------------------------------------
// Signing in.

function notice(text, kind = "info") {
  const box = $("notice");
  box.hidden = !text;
  box.className = `notice ${kind}`;
  box.textContent = text || "";
}

function showLogin(message) {
  stopStreams();
  $("board").hidden = true;
  $("login").hidden = false;
  $("who").hidden = true;
  setLive("signed out", "off");
  const error = $("login-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("token").focus();
}

async function start() {
  notice("");
  let state;
  try {
    state = await call("GET", "/v1/dashboard/state");
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 401) {
      const had = token();
      setToken("");
      showLogin(had ? "That token was not accepted: check it and try again." : "");
      return;
    }
    if (failure instanceof ApiError && failure.status === 403) {
      setToken("");
      showLogin(`That token cannot view the house (${failure.message}): a read token is needed.`);
      return;
    }
    $("login").hidden = true;
    notice(`The dashboard cannot load: ${failure.message}. Retrying…`, "error");
    setTimeout(start, 3000);
    return;
  }
  $("login").hidden = true;
  $("board").hidden = false;
  $("who").hidden = false;
  if (token()) {
    $("who-text").textContent = "Signed in with a token";
    $("logout").hidden = false;
  } else {
    $("who-text").textContent = "Open daemon";
    $("logout").hidden = true;
    notice(
      "This daemon has no tokens configured: anyone who reaches it can view and decide. " +
        "Configure [[token]] entries to require a sign-in.",
      "warn",
    );
  }
  legend($("power-legend"));
  applyState(state);
  startStreams();
  loadApprovals();
  loadJournal();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  setToken(value);
  $("token").value = "";
  start();
});

$("logout").addEventListener("click", () => {
  setToken("");
  board.approvals = null;
  showLogin("");
});

// ---------------------------------------------------------------------------------------
// The streams.

let stopDashboard = null;
let stopActions = null;

function stopStreams() {
  if (stopDashboard) stopDashboard();
  if (stopActions) stopActions();
  stopDashboard = null;
  stopActions = null;
}

function setLive(text, kind) {
  $("live-text").textContent = text;
  $("live-dot").className = `dot ${kind}`;
}

function denied(failure) {
  stopStreams();
  setToken("");
  showLogin(`Signed out: ${failure.message}`);
}

function startStreams() {
  stopStreams();
  let historyFrom = 0;
  stopDashboard = follow(
    (last) => `/v1/dashboard/watch?from=${last ?? historyFrom}`,
    (name, data) => {
      if (name === "state") applyState(data);
      if (name === "history") applyHistory(data);
      if (name === "gone") historyFrom = 0;
    },
    (what, detail) => {
      if (what === "denied") denied(detail);
      else if (what === "live") setLive("live", "on");
      else setLive("reconnecting", "warn");
    },
  );
}

/// Follows the `action` view from the logical time up to which the dashboard's history
/// brought the decisions.
function startActions(from) {
  if (stopActions) return;
  board.actionsFrom = from;
  stopActions = follow(
    (last) => `/v1/watch/action?from=${last ?? board.actionsFrom}`,
    (name, data) => {
      if (name === "changes") {
        for (const row of data.changes) {
          const [id, kind, target, reason] = row.tuple;
          addDecision({ time: data.time, now: data.now, diff: row.diff, id, kind, target, reason });
        }
        renderDecisions();
        renderShedRecent();
        loadJournalSoon();
      } else if (name === "gone") {
        board.actionsFrom = board.state ? board.state.time : 0;
      }
    },
    (what, detail) => {
      if (what === "denied") denied(detail);
    },
  );
}

function addDecision(decision) {
  board.decisions.push(decision);
  if (board.decisions.length > 400) board.decisions.splice(0, board.decisions.length - 400);
}

function applyHistory(history) {
  board.windowSeconds = history.window_seconds || board.windowSeconds;
  const known = board.samples.length ? board.samples[board.samples.length - 1].time : -1;
  for (const sample of history.samples) {
    if (sample.time > known) board.samples.push(sample);
  }
  const horizon = history.now - board.windowSeconds;
  while (board.samples.length > 1 && board.samples[0].now < horizon) board.samples.shift();
  if (board.actionsFrom === null) {
    // The first history brings the decisions kept so far; the `action` stream the rest.
    for (const decision of history.decisions) addDecision(decision);
    startActions(history.time);
    renderDecisions();
    renderShedRecent();
  }
  renderPower();
}

// ---------------------------------------------------------------------------------------
// The state.

function rows(name) {
  return (board.state && board.state.relations[name]) || [];
}

function has(name) {
  return Boolean(board.state && name in board.state.relations);
}

function applyState(state) {
  board.state = state;
  board.receivedAt = Date.now();
  $("clock").textContent = `${hms(state.now)} UTC`;
  $("clock").title = `the daemon's event time, ${new Date(state.now * 1000).toISOString()}; logical time ${state.time}`;
  renderPower();
  renderShedding();
  renderNodes();
  renderHarvest();
  const awaiting = rows("awaiting_approval").map((r) => r[0]).sort().join("\n");
  if (awaiting !== board.approvalsKey) {
    board.approvalsKey = awaiting;
    loadApprovals();
  } else {
    renderApprovals();
  }
}

function renderPower() {
  if (!board.state) return;
  const last = board.samples[board.samples.length - 1];
  const draw = rows("house_power").reduce((sum, r) => sum + r[1], 0);
  const limit = rows("limit")[0]?.[0];
  const solar = rows("solar")[0]?.[0] ?? rows("house_power").reduce((sum, r) => sum + r[2], 0);
  const ups = rows("ups_source")[0];
  const battery = rows("ups_battery")[0];
  const stats = $("power-stats");
  stats.textContent = "";
  const over = limit !== undefined && draw > limit;
  const share = limit ? Math.min(100, Math.round((draw / limit) * 100)) : 0;
  const meter = el("div", "meter", el("i", over ? "over" : share > 85 ? "near" : ""));
  meter.firstChild.style.width = `${share}%`;
  stats.append(
    el("div", `stat ${over ? "bad" : ""}`, el("b", "", watts(draw)), el("span", "label", "draw"),
      limit !== undefined ? el("span", "sub", `of ${watts(limit)} limit`) : null, meter),
    el("div", "stat", el("b", "", watts(solar)), el("span", "label", "solar")),
  );
  if (ups) {
    const onBattery = ups[1] === "battery";
    const upsStat = el("div", `stat ${onBattery ? "warn" : ""}`,
      el("b", "", onBattery ? "On battery" : "Line power"),
      el("span", "label", ups[0].toLowerCase() === "ups" ? "UPS" : `UPS ${ups[0]}`),
      el("span", "sub", `since ${clock(ups[2])}`));
    stats.append(upsStat);
  }
  if (battery) {
    stats.append(el("div", `stat ${battery[1] < 50 ? "warn" : ""}`,
      el("b", "", `${battery[1]}%`), el("span", "label", "battery"),
      el("span", "sub", `${duration(battery[2])} runtime`)));
  }
  const flags = el("div", "flags");
  if (rows("emergency").length) flags.append(badge("UPS emergency: shutting down", "bad"));
  else if (rows("on_battery").length) flags.append(badge("on battery: limit lowered", "warn"));
  if (rows("power_unstable").length) flags.append(badge("power not yet stable: nothing starts", "warn"));
  if (rows("excess").length) flags.append(badge(`${watts(rows("excess")[0][0])} over the limit`, "bad"));
  if (flags.childNodes.length) stats.append(flags);
  drawPower($("power-chart"), board.samples, last ? Math.max(last.now, board.state.now) : board.state.now,
    board.windowSeconds);
}

function workloadInfo() {
  const info = new Map();
  for (const [name, vram, ram, cores, tier, w] of rows("workload")) {
    info.set(name, { name, vram, ram, cores, tier, watts: w });
  }
  return info;
}

function renderShedding() {
  const info = workloadInfo();
  const shed = new Set(rows("shed").map((r) => r[0]));
  const order = $("shed-order");
  order.textContent = "";
  const sorted = [...rows("shed_order")].sort((a, b) => a[1] - b[1]);
  for (const [name, position] of sorted) {
    const w = info.get(name);
    const item = el("li", shed.has(name) ? "shed" : "",
      el("span", "pos", position),
      el("span", "name", name),
      w ? el("span", "meta", `${w.tier} · ${watts(w.watts)}`) : null,
      shed.has(name) ? badge("shed now", "bad") : null);
    order.append(item);
  }
  if (!sorted.length) order.append(el("li", "empty", "nothing running may be shed"));
  const now = $("shed-now");
  now.textContent = "";
  for (const name of shed) {
    now.append(el("li", "shed", el("span", "name", name), badge("shed", "bad")));
  }
  for (const [name, node] of rows("stop")) {
    now.append(el("li", "shed", el("span", "name", name), el("span", "meta", `on ${node}`),
      badge("UPS stop", "bad")));
  }
  for (const [node] of rows("shutdown")) {
    now.append(el("li", "shed", el("span", "name", node), badge("UPS shutdown", "bad")));
  }
  if (!now.childNodes.length) now.append(el("li", "empty", "nothing: the house is within its limit"));
}

const SHEDDING = new Set(["shed", "emergency_stop", "emergency_shutdown"]);

function renderShedRecent() {
  const list = $("shed-recent");
  list.textContent = "";
  const horizon = (board.state?.now ?? 0) - board.windowSeconds;
  const recent = board.decisions
    .filter((d) => d.diff > 0 && SHEDDING.has(d.kind) && d.now >= horizon)
    .slice(-12)
    .reverse();
  for (const d of recent) {
    list.append(el("li", "", el("span", "time", clock(d.now)), el("span", "name", d.target),
      badge(d.kind.replace("_", " "), d.kind === "shed" ? "warn" : "bad")));
  }
  if (!recent.length) list.append(el("li", "empty", "nothing shed in the last hours"));
}

function renderNodes() {
  const now = board.state.now;
  const roles = new Map(rows("node_role").map((r) => [r[0], r[1]]));
  const boot = new Map(rows("node").map((r) => [r[0], r[r.length - 1]]));
  const states = new Map(rows("power_state").map((r) => [r[0], { state: r[1], since: r[2] }]));
  const wakes = new Map(rows("wake").map((r) => [r[0], r[1]]));
  const lastWake = new Map(rows("last_wake").map((r) => [r[0], r[1]]));
  const sleeping = new Set(rows("sleep").map((r) => r[0]));
  const unloading = new Set(rows("unload").map((r) => r[0]));
  const borrowed = new Set(rows("borrow").map((r) => r[0]));
  const ray = new Set(rows("ray_worker").map((r) => r[0]));
  const games = new Set(rows("game_running").map((r) => r[0]));
  const online = new Set(rows("member_online").map((r) => r[0]));
  const running = new Map();
  for (const [w, n] of rows("running")) running.set(w, n);
  const placed = new Map();
  for (const [w, n] of rows("placement")) placed.set(w, n);
  const info = workloadInfo();

  const quorum = rows("quorum")[0];
  const q = $("quorum");
  if (quorum) {
    q.textContent = `${quorum[0]} · ${quorum[1]}/${quorum[2]} votes`;
    q.className = `badge ${quorum[0] === "quorate" ? "good" : quorum[0] === "lost" ? "bad" : "warn"}`;
  } else {
    q.textContent = "";
  }

  const list = $("node-list");
  list.textContent = "";
  const names = [...new Set([...roles.keys(), ...states.keys()])];
  for (const name of names) {
    const role = roles.get(name) || "";
    if (role === "edge") continue;
    const state = states.get(name);
    let status;
    const waking = wakes.has(name) ||
      (state && state.state !== "up" && lastWake.has(name) && lastWake.get(name) + (boot.get(name) || 0) > now);
    if (waking) {
      const eta = lastWake.has(name) && lastWake.get(name) + (boot.get(name) || 0) > now
        ? lastWake.get(name) + boot.get(name) - now
        : wakes.get(name);
      status = badge(`waking · ready in ${duration(eta)}`, "warn");
    } else if (state && state.state === "up" && (sleeping.has(name) || unloading.has(name))) {
      status = badge("going to sleep", "warn");
    } else if (state && state.state === "up") {
      status = badge("up", "good");
    } else if (state) {
      status = badge(state.state, state.state === "asleep" ? "idle" : "warn");
    } else {
      status = badge("unknown", "idle");
    }
    const head = el("div", "node-head", el("span", "node-name", name), el("span", "role", role), status);
    const since = state ? el("div", "fine", `${state.state} since ${clock(state.since)}`) : null;
    const extra = el("div", "node-extra");
    if (role === "gaming" || games.has(name) || borrowed.has(name) || ray.has(name)) {
      if (games.has(name)) extra.append(badge("a game is running", "warn"));
      else if (ray.has(name)) extra.append(badge("lent to Ray", "info"));
      else if (borrowed.has(name)) extra.append(badge("may be borrowed", "info"));
      else extra.append(badge("not borrowed", "idle"));
    }
    if (online.size && !online.has(name) && rows("quorum").length) {
      extra.append(badge("no quorum vote now", "idle"));
    }
    const chips = el("div", "chips");
    const here = [...new Set([...running.keys(), ...placed.keys()])]
      .filter((w) => running.get(w) === name || placed.get(w) === name)
      .sort();
    for (const w of here) {
      const runsHere = running.get(w) === name;
      const tier = info.get(w)?.tier || "";
      const moving = runsHere && placed.has(w) && placed.get(w) !== name;
      const chip = el("span", `chip ${runsHere ? "running" : "pending"} tier-${tier}`, w);
      chip.title = `${w}: ${runsHere ? "running" : `placed here, not running yet`}` +
        (tier ? ` · ${tier}` : "") + (info.get(w) ? ` · ${watts(info.get(w).watts)}` : "") +
        (moving ? ` · placed on ${placed.get(w)}` : "");
      chips.append(chip);
    }
    if (!here.length) chips.append(el("span", "fine", "no workloads"));
    list.append(el("div", "node", head, since, extra.childNodes.length ? extra : null, chips));
  }
  const unplaced = $("unplaced");
  unplaced.textContent = "";
  const waiting = rows("unplaced").map((r) => r[0]);
  if (waiting.length) {
    unplaced.append(el("span", "fine", "Wanted, no node can take now: "));
    for (const w of waiting) unplaced.append(el("span", "chip pending", w));
  }
}

function renderHarvest() {
  const allowed = $("harvest-allowed");
  if (has("harvest_allowed")) {
    const yes = rows("harvest_allowed").length > 0;
    allowed.textContent = yes ? "harvesting allowed" : "harvesting paused now";
    allowed.className = `badge ${yes ? "good" : "idle"}`;
  }
  const done = new Set(rows("task_done").map((r) => r[0]));
  const sources = new Map(rows("harvest_task").map((r) => [r[0], r[1]]));
  const tasksOf = new Map();
  for (const [task, edge] of rows("task_assigned")) {
    if (done.has(task)) continue;
    if (!tasksOf.has(edge)) tasksOf.set(edge, []);
    tasksOf.get(edge).push(task);
  }
  const paused = new Set(rows("pause").map((r) => r[0]));
  const deciding = new Map(rows("assign").map((r) => [r[1], r[0]]));
  const list = $("edge-list");
  list.textContent = "";
  for (const [edge, state, temp, load] of rows("edge_status")) {
    const good = state === "online";
    const tasks = tasksOf.get(edge) || [];
    const doing = el("div", "task");
    for (const task of tasks) {
      doing.append(el("span", "name", task), el("span", "meta", sources.get(task) ? ` (${sources.get(task)})` : ""),
        paused.has(task) ? badge("paused", "idle") : badge("working", "info"));
    }
    if (deciding.has(edge)) doing.append(badge(`assigning ${deciding.get(edge)}`, "info"));
    if (!doing.childNodes.length) doing.append(el("span", "fine", "idle"));
    list.append(el("div", "edge",
      el("div", "node-head", el("span", "node-name", edge), badge(state, good ? "good" : "bad")),
      el("div", "edge-stats", el("span", "", `${temp} °C`), el("span", "", `${load}% load`)),
      doing));
  }
  const key = (s, v) => `${s}@${v}`;
  const accepted = new Set(rows("accept").map((r) => key(r[0], r[1])));
  const duplicates = new Set(rows("duplicate").map((r) => key(r[0], r[1])));
  const quarantined = new Set(rows("quarantine").map((r) => key(r[0], r[1])));
  const archived = new Set(rows("archived").map((r) => key(r[0], r[1])));
  const artifacts = [...rows("artifact_report")].sort((a, b) => b[2] - a[2] || a[1].localeCompare(b[1]));
  const list2 = $("artifacts");
  list2.textContent = "";
  for (const [edge, source, version, size, hash] of artifacts.slice(0, 12)) {
    const k = key(source, version);
    let verdict;
    if (quarantined.has(k)) verdict = badge("quarantined", "bad");
    else if (duplicates.has(k)) verdict = badge("duplicate", "idle");
    else if (accepted.has(k)) verdict = badge("accepted", "good");
    else if (archived.has(k)) verdict = badge("archived", "good");
    else verdict = badge("arriving", "info");
    const item = el("li", "", el("span", "name", `${source}@${version}`),
      el("span", "meta", `${bytes(size)} · from ${edge}`), verdict);
    item.title = `BLAKE3 reported by ${edge}: ${hash}`;
    list2.append(item);
  }
  if (!artifacts.length) list2.append(el("li", "empty", "no artifacts reported"));
}

// ---------------------------------------------------------------------------------------
// Decisions, the journal and why.

function renderDecisions() {
  const feed = $("feed");
  feed.textContent = "";
  const shown = board.decisions.slice(-80).reverse();
  for (const d of shown) {
    const item = el("li", d.diff > 0 ? "decided" : "settled",
      el("span", "time", hms(d.now)),
      el("span", `verb ${d.diff > 0 ? "" : "muted"}`, d.diff > 0 ? "decide" : "settled"),
      el("span", "what", el("b", "", d.kind), " ", d.target),
      d.diff > 0 ? el("span", "reason", d.reason) : null);
    item.tabIndex = 0;
    item.setAttribute("role", "button");
    item.dataset.id = d.id;
    const open = () => explain(d, `action(${[d.id, d.kind, d.target, d.reason].map(quoted).join(", ")})`);
    item.addEventListener("click", open);
    item.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        open();
      }
    });
    feed.append(item);
  }
  if (!shown.length) feed.append(el("li", "empty", "no decisions yet"));
}

async function explain(decision, atom) {
  const dialog = $("why");
  $("why-title").textContent = `Why ${decision.kind} ${decision.target}`;
  $("why-text").textContent = "asking the daemon…";
  if (!dialog.open) dialog.showModal();
  try {
    const answer = await call("POST", "/v1/why", { atom });
    $("why-text").textContent = answer.text;
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 422 && decision.diff <= 0) {
      $("why-text").textContent = `${atom}\n\nThis row has left the view: it holds no longer, so it has no derivation now.\n(${failure.message})`;
    } else {
      $("why-text").textContent = `${atom}\n\n${failure.message}`;
    }
  }
}

let journalTimer = null;

function loadJournalSoon() {
  if (board.journal === null || journalTimer) return;
  journalTimer = setTimeout(() => {
    journalTimer = null;
    loadJournal();
  }, 2000);
}

/// The action journal, where the daemon keeps one (a 404 means it does not): what was sent
/// for each action, with its outcome and the explanation it was journaled with.
async function loadJournal() {
  let answer;
  try {
    answer = await call("GET", "/v1/actions?limit=40");
  } catch (failure) {
    if (failure instanceof ApiError && failure.status === 404) {
      board.journal = null;
      $("journal").hidden = true;
    }
    return;
  }
  const entries = Array.isArray(answer) ? answer : answer?.actions || [];
  board.journal = entries;
  $("journal").hidden = false;
  const list = $("journal-list");
  list.textContent = "";
  for (const entry of entries.slice(-40).reverse()) {
    const at = entry.time;
    const outcome = String(entry.outcome ?? "");
    const tone = /fail|gave/i.test(outcome) ? "bad" : /started/i.test(outcome) ? "info" : "good";
    const item = el("li", "decided",
      el("span", "time", typeof at === "number" ? hms(at) : ""),
      el("span", "verb", outcome ? badge(outcome, tone) : ""),
      el("span", "what", el("b", "", entry.kind ?? ""), " ", entry.target ?? ""),
      entry.command || entry.reason
        ? el("span", "reason", [entry.command, entry.reason].filter(Boolean).join(" · "))
        : null);
    if (entry.why) {
      item.tabIndex = 0;
      item.setAttribute("role", "button");
      const open = () => {
        $("why-title").textContent = `Why ${entry.kind} ${entry.target}`;
        $("why-text").textContent = typeof entry.why === "string"
          ? entry.why
          : JSON.stringify(entry.why, null, 2);
        if (!$("why").open) $("why").showModal();
      };
      item.addEventListener("click", open);
      item.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          open();
        }
      });
    }
    list.append(item);
  }
  if (!entries.length) list.append(el("li", "empty", "nothing journaled yet"));
}

// ---------------------------------------------------------------------------------------
// Approvals.

async function loadApprovals() {
  try {
    board.approvals = await call("GET", "/v1/approvals");
    board.approvalsError = null;
  } catch (failure) {
    board.approvals = null;
    board.approvalsError = failure;
  }
  renderApprovals();
}

/// The event time now, moving on between states when the daemon follows the wall clock.
function eventNow() {
  const now = board.state ? board.state.now : 0;
  const wallish = Math.abs(now - Date.now() / 1000) < 120;
  return wallish ? now + Math.floor((Date.now() - board.receivedAt) / 1000) : now;
}

function linkToken(link) {
  try {
    return new URL(link, location.href).searchParams.get("token");
  } catch {
    return null;
  }
}

async function decide(request, which, buttons, status) {
  const link = request[which];
  const secret = linkToken(link);
  if (!secret) {
    status.textContent = "this request carries no decision link";
    return;
  }
  for (const button of buttons) button.disabled = true;
  status.textContent = which === "approve" ? "approving…" : "denying…";
  try {
    await call("POST", `/v1/approvals/decide?token=${encodeURIComponent(secret)}`);
    status.textContent = which === "approve" ? "approved" : "denied";
    status.className = `decision-status ${which === "approve" ? "good" : "bad"}`;
  } catch (failure) {
    status.textContent = failure.message;
    status.className = "decision-status bad";
    for (const button of buttons) button.disabled = false;
  }
  setTimeout(loadApprovals, 600);
}

function renderApprovals() {
  const list = $("approval-list");
  const note = $("approvals-note");
  const count = $("approvals-count");
  list.textContent = "";
  note.hidden = true;
  const awaiting = rows("awaiting_approval");
  const error = board.approvalsError;
  if (!board.approvals) {
    if (error && error.status === 403) {
      note.textContent = "This token can view but not approve: the waiting requests are listed without their decision links.";
    } else if (error && error.status === 404) {
      note.textContent = "Approvals are off on this daemon; the requests below wait for an approval fact.";
    } else if (error) {
      note.textContent = `The approval requests cannot be read: ${error.message}`;
    }
    note.hidden = !error;
    count.textContent = awaiting.length ? String(awaiting.length) : "";
    for (const [id, kind, target, reason] of awaiting) {
      list.append(el("li", "approval", el("div", "approval-head", el("b", "", `${kind} ${target}`)),
        el("div", "reason", reason), el("div", "fine", id)));
    }
    if (!awaiting.length) list.append(el("li", "empty", "nothing waits for a person"));
    return;
  }
  const now = eventNow();
  // The live requests first; the expired ones stay listed (their links no longer work).
  const pending = [...board.approvals].sort(
    (a, b) => (a.expires <= now) - (b.expires <= now) || a.expires - b.expires,
  );
  const live = pending.filter((r) => r.expires > now).length;
  count.textContent = live ? String(live) : "";
  count.className = `badge ${live ? "warn" : ""}`;
  for (const request of pending) {
    const left = request.expires - now;
    const expiry = el("span", `expiry ${left <= 0 ? "bad" : left < 600 ? "warn" : ""}`,
      left > 0 ? `expires in ${duration(left)}` : "expired");
    expiry.dataset.expires = request.expires;
    const approve = el("button", "primary", "Approve");
    const deny = el("button", "danger", "Deny");
    approve.type = "button";
    deny.type = "button";
    const status = el("span", "decision-status", "");
    approve.disabled = deny.disabled = left <= 0;
    approve.hidden = deny.hidden = left <= 0;
    if (left <= 0) status.textContent = "the decision links have expired";
    approve.addEventListener("click", () => decide(request, "approve", [approve, deny], status));
    deny.addEventListener("click", () => decide(request, "deny", [approve, deny], status));
    const item = el("li", `approval ${left <= 0 ? "expired" : ""}`,
      el("div", "approval-head", el("b", "", `${request.kind} ${request.target}`), expiry),
      el("pre", "explanation", request.explanation || ""),
      el("div", "buttons", approve, deny, status));
    item.dataset.action = request.action;
    list.append(item);
  }
  if (!pending.length) list.append(el("li", "empty", "nothing waits for a person"));
}

let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(renderPower, 150);
});

setInterval(() => {
  const now = eventNow();
  for (const node of document.querySelectorAll(".expiry[data-expires]")) {
    const left = Number(node.dataset.expires) - now;
    node.textContent = left > 0 ? `expires in ${duration(left)}` : "expired";
  }
}, 1000);

start();
