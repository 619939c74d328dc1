// Live pages: a lab run's progress (testtime view: /live, /live/run?id=) and a server's
// requests in flight (testtime serve: /testtime/live). Each page polls its JSON every
// data-poll ms and redraws in place, without a reload, until what it follows has ended;
// then it shows the final state. The numbers are shaped in Python (view/live_data.py,
// server/inflight.py); this file only lays them out. A search's tree is drawn with d3.
"use strict";

const live = (() => {
  const { el, table, human, seconds, showError } = tt;
  const $ = (s) => document.querySelector(s);
  let key = sessionStorage.getItem("testtime-key"); // a server with API keys

  /** GET JSON, with the server's API key when one was given (asked for after a 401). */
  async function get(url) {
    let r;
    try {
      r = await fetch(url, key ? { headers: { Authorization: `Bearer ${key}` } } : {});
    } catch (e) {
      throw new Error(`nothing answered at ${url}: has the server stopped?`);
    }
    const body = await r.json().catch(() => null);
    if (!r.ok || !body || body.error) {
      const e = body && body.error;
      throw new Error(e ? (e.message || e) : `${url} answered ${r.status}`);
    }
    return body;
  }

  /** Call `step` now and every `ms` until it returns true (ended); errors go to the box
   * and polling goes on (a server busy for a moment is not the end). */
  function every(ms, step) {
    let first = true;
    const tick = async () => {
      let ended = false;
      try {
        ended = await step();
        const box = $("#error");
        if (box && !first) box.hidden = true;
      } catch (e) {
        showError(e.message || String(e));
        if (/API key/.test(e.message || "") && !key) askKey();
      }
      if (first) { first = false; document.body.dataset.ready = "1"; }
      if (!ended) setTimeout(tick, ms);
    };
    tick();
  }

  function askKey() {
    if ($("#key-form")) return;
    const input = el("input", { type: "password", id: "key", placeholder: "API key" });
    const form = el("form", { id: "key-form", class: "controls" }, "this server needs an API key: ",
      input, el("button", { type: "submit" }, "use it"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      key = input.value.trim();
      sessionStorage.setItem("testtime-key", key);
      location.reload();
    });
    $("main").append(form);
  }

  function stat(name, value, id) {
    return el("div", { class: "stat" }, el("span", { class: "muted" }, name + " "),
      el("b", { id }, value));
  }

  /** Replace `node`'s children; absent ones (null: e.g. no error) are left out, not
   * written as the text "null". */
  function fill(node, ...children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  }

  // -- testtime view: a lab run -----------------------------------------------------------
  function runsPage() {
    const where = $("#live-runs");
    every(2000, async () => {
      const data = await get("/api/live/runs");
      fill(where, table(["run", "status", "samples", "results", "FLOPs", "seconds"],
        data.runs.map((r) => [el("a", { href: `/live/run?id=${encodeURIComponent(r.id)}` }, r.id),
          r.status, r.samples, r.results, human(r.flops), seconds(r.seconds)]), { id: "runs" }));
      return false;
    });
  }

  function runPage() {
    const where = $("#live");
    const run = where.dataset.run;
    every(Number(where.dataset.poll), async () => {
      const p = await get(`/api/live/run?id=${encodeURIComponent(run)}`);
      const share = p.units_total ? p.units_done / p.units_total : 0;
      fill(where,
        el("div", { class: "stats" },
          stat("status", p.status, "status"),
          stat("units done", `${p.units_done} / ${p.units_total}`, "units"),
          stat("samples", p.samples, "samples"), stat("results", p.results, "results"),
          stat("FLOPs", human(p.flops), "flops"), stat("seconds", seconds(p.seconds), "seconds")),
        el("progress", { id: "bar", max: 1, value: share }),
        p.error ? el("div", { class: "error" }, p.error) : null,
        el("h2", {}, p.finished ? "Leaders (final)" : "Leaders so far"),
        table(["task", "problem", "from", "model", "seed", "leader", "votes", "correct"],
          p.leaders.map((l) => [l.task, l.problem, l.source, l.model, l.seed,
            l.answer ?? "–", l.votes === null ? "–" : `${l.votes} of ${l.of}`, mark(l.correct)]),
          { id: "leaders" }));
      document.body.dataset.finished = p.finished ? "1" : "";
      return p.finished;
    });
  }

  function mark(ok) {
    if (ok === null || ok === undefined) return "–";
    return el("span", { class: ok ? "ok" : "no" }, ok ? "yes" : "no");
  }

  // -- testtime serve: requests in flight ---------------------------------------------------
  function leaderText(p) {
    const l = p.progress.leader;
    return l ? `${l.answer} (${l.votes} of ${l.answered})` : "–";
  }

  function strategyText(r) {
    return r.strategy ? `${r.strategy.name}` + (r.budget ? ` · ${r.budget}` : "") : "plain";
  }

  function requestsPage() {
    const where = $("#live-requests");
    every(Number(where.dataset.poll), async () => {
      const data = await get("/testtime/requests");
      fill(where, data.requests.length === 0
        ? el("p", { class: "muted", id: "none" }, "no request yet: send one to /v1/chat/completions")
        : table(["request", "state", "model", "strategy", "samples", "leader", "cost (FLOPs)",
          "seconds", "prompt"], data.requests.map((r) => [
          el("a", { href: `/testtime/live?id=${encodeURIComponent(r.id)}` }, r.id),
          el("span", { class: "state" }, r.state), r.model, strategyText(r),
          el("span", { class: "samples" }, String(r.progress.samples)), leaderText(r),
          human(r.progress.cost.flops), seconds(r.progress.elapsed_s), r.prompt]),
        { id: "requests" }));
      return false;
    });
  }

  function requestPage() {
    const where = $("#live");
    const id = where.dataset.request;
    every(Number(where.dataset.poll), async () => {
      const r = await get(`/testtime/requests/${encodeURIComponent(id)}`);
      const p = r.progress;
      fill(where,
        el("div", { class: "stats" },
          stat("state", r.finished ? `${r.state} (finished)` : r.state, "state"),
          stat("strategy", strategyText(r), "strategy"),
          stat("samples", p.samples, "samples"), stat("leader", leaderText(r), "leader"),
          stat("cost", `${human(p.cost.flops)} FLOPs, ${p.cost.generated_tokens ?? 0} tokens`, "cost"),
          stat("seconds", seconds(p.elapsed_s), "seconds")),
        el("p", {}, el("span", { class: "muted" }, "prompt "), r.prompt),
        r.answer !== undefined ? el("p", { id: "answer" }, el("span", { class: "muted" }, "answer "),
          r.answer ?? "–") : null,
        r.error ? el("div", { class: "error", id: "failed" }, r.error) : null,
        r.tree ? el("h2", {}, r.finished ? "Search tree" : "Search tree so far") : null,
        r.tree ? drawTree(r.tree) : null);
      document.body.dataset.finished = r.finished ? "1" : "";
      return r.finished;
    });
  }

  /** A label of at most `n` characters. */
  function clip(text, n) {
    return text.length <= n ? text : text.slice(0, n - 1) + "…";
  }

  /** A search's samples as a tree (each under the sample it continued), from a virtual
   * root for the problem; d3 lays it out. Each node is labelled with its step (the text it
   * added to its parent's; the whole text on hover): an inner node's on its left, a leaf's
   * on its right, over a halo so links do not hide them. Nodes carry data-id for tests. */
  function drawTree(shape) {
    const DX = 18, DY = 180, LABEL = 28; // px between rows, px between depths, characters
    const nodes = [{ id: "root", parent: null, answer: null, text: "(the problem)",
      step: "the problem" }, ...shape.nodes.map((n) => ({ ...n, id: String(n.id),
      parent: n.parent === null ? "root" : String(n.parent) }))];
    const known = new Set(nodes.map((n) => n.id));
    for (const n of nodes) if (n.parent !== null && !known.has(n.parent)) n.parent = "root";
    const root = d3.stratify().id((d) => d.id).parentId((d) => d.parent)(nodes);
    d3.tree().nodeSize([DX, DY])(root);
    const [x0, x1] = d3.extent(root.descendants(), (d) => d.x);
    const left = 90; // room for the root's label
    const width = root.height * DY + left + LABEL * 6 + 20;
    const height = x1 - x0 + 2 * DX;
    const svg = d3.create("svg").attr("id", "tree").attr("width", width).attr("height", height);
    const g = svg.append("g").attr("transform", `translate(${left},${DX - x0})`);
    g.append("g").selectAll("path").data(root.links()).join("path")
      .attr("fill", "none").attr("stroke", "#999")
      .attr("d", d3.linkHorizontal().x((d) => d.y).y((d) => d.x));
    const node = g.append("g").selectAll("g").data(root.descendants()).join("g")
      .attr("class", "node").attr("data-id", (d) => d.data.id)
      .attr("transform", (d) => `translate(${d.y},${d.x})`);
    node.append("circle").attr("r", 5)
      .attr("fill", (d) => (d.data.id === "root" ? "#555" : d.data.answer ? "#2a7" : "#9bd"));
    node.append("title").text((d) => d.data.text);
    if (nodes.length <= 300) {
      node.append("text").attr("dy", "0.32em").attr("font-size", 10)
        .attr("x", (d) => (d.children ? -8 : 8))
        .attr("text-anchor", (d) => (d.children ? "end" : "start"))
        .attr("stroke", "white").attr("stroke-width", 3).attr("paint-order", "stroke")
        .text((d) => clip(d.data.step ?? d.data.answer ?? "", LABEL));
    }
    const box = el("div", { class: "tree-box" }, svg.node());
    if (shape.more) box.append(el("p", { class: "muted" }, `… ${shape.more} more samples`));
    return box;
  }

  const PAGES = { runs: runsPage, run: runPage, requests: requestsPage, request: requestPage };

  function start() {
    const which = PAGES[document.body.dataset.page];
    if (which) which();
    else document.body.dataset.ready = "1";
  }

  return { start };
})();

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", live.start);
else live.start();
