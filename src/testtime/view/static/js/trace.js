// The trace page: fetch /api/trace with this page's query, then draw the result's search.
// Helpers shared with the other pages (tt.getJSON, tt.run, the error box) are in common.js.
// Each kind has one function below (drawTree, drawGenealogy, drawVotes, drawBracket,
// drawScores); the shapes they draw are made in Python (view/trace_data.py), so this file
// only lays out and wires clicks. d3 (vendored) does the tree layout, SVG and zoom.
"use strict";

const $ = (sel) => document.querySelector(sel);

// Numbers as the page shows them: integers whole, others to 4 significant digits.
function num(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en-US").replace(/,/g, " ");
  return String(Number(x.toPrecision(4)));
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// -- the side panel: what was clicked, and the cost ledger ------------------------------
function showDetail(title, fields, text) {
  const box = $("#detail");
  box.className = "";
  box.replaceChildren(el("h4", { text: title }));
  const table = el("table", { id: "detail-fields" });
  for (const [k, v] of fields) {
    if (v === undefined) continue;
    table.append(el("tr", { "data-field": k }, el("th", { text: k }),
      el("td", { class: "num", text: Array.isArray(v) ? v.join(", ") : num(v) })));
  }
  box.append(table);
  if (text) box.append(el("pre", { id: "detail-text", text }));
}

function candidateDetail(data, id, extra = []) {
  const c = data.result.candidates.find((c) => c.id === id);
  if (!c) return showDetail(`node (no candidate)`, extra, "");
  const steps = c.steps.length ? c.steps.map((s, i) => `[step ${i + 1}] ${s}`).join("\n") : c.text;
  showDetail(`candidate ${c.id}`, [
    ...extra, ["candidate", c.id], ["parent", c.parent], ["answer", c.answer],
    ["correct", c.correct === null ? undefined : String(c.correct)],
    ...Object.entries(c.scores).map(([k, v]) => [`score: ${k}`, v]),
    ["steps", c.steps.length], ["generated tokens", c.generated_tokens],
    ["finish", c.finish_reason],
  ], steps);
}

function drawLedger(cost) {
  const table = $("#ledger");
  table.replaceChildren();
  const keys = Object.keys(cost);
  if (!keys.length) table.append(el("tr", {}, el("td", { text: "nothing was charged" })));
  for (const k of keys) {
    table.append(el("tr", { "data-key": k }, el("th", { text: k.replace(/_/g, " ") }),
      el("td", { class: "num", text: num(cost[k]) })));
  }
}

function drawSummary(data) {
  const r = data.result;
  const s = r.strategy || {};
  const params = s.params ? Object.entries(s.params)
    .map(([k, v]) => `${k}=${String(v).replace(/\s+/g, " ").slice(0, 40)}`).join(" ") : "";
  const items = [
    ["problem", r.problem_id], ["strategy", s.name || "?"], ["params", params],
    ["answer", r.answer === null ? "none" : r.answer],
    ["correct", r.correct === null ? "ungraded" : r.correct ? "yes" : "no"],
    ["chosen", r.chosen === null ? "none" : `candidate ${r.chosen}`],
    ["candidates", r.candidates.length], ["kind", r.kind],
  ];
  if (r.budget_exhausted) items.push(["budget", "exhausted"]);
  $("#summary").replaceChildren(...items.filter(([, v]) => v !== "").map(([k, v]) =>
    el("span", { class: "kv", "data-key": k }, el("b", { text: `${k}: ` }),
      el("span", { class: "value", text: num(v) }))));
}

function drawCandidates(data) {
  const r = data.result;
  const names = [...new Set(r.candidates.flatMap((c) => Object.keys(c.scores)))];
  const table = $("#candidates");
  table.replaceChildren(el("tr", {}, ...["id", "parent", "answer", "correct", ...names,
    "steps", "tokens", "finish"].map((h) => el("th", { text: h }))));
  for (const c of r.candidates.slice(0, 500)) {
    const row = el("tr", {
      class: "clickable" + (c.id === r.chosen ? " chosen" : ""), "data-id": c.id,
      onclick: () => candidateDetail(data, c.id),
    }, el("td", { class: "num", text: c.id }), el("td", { class: "num", text: num(c.parent) }),
    el("td", { text: c.answer ?? "–" }),
    el("td", { text: c.correct === null ? "–" : c.correct ? "yes" : "no" }),
    ...names.map((n) => el("td", { class: "num", text: num(c.scores[n]) })),
    el("td", { class: "num", text: c.steps.length }),
    el("td", { class: "num", text: c.generated_tokens }), el("td", { text: c.finish_reason ?? "–" }));
    table.append(row);
  }
  if (r.candidates.length > 500) {
    table.append(el("tr", {}, el("td", { text: `… ${r.candidates.length - 500} more` })));
  }
}

// -- trees: beam search (candidates by parent) and MCTS (nodes with visits) -------------
const scoreColor = d3.scaleSequential(d3.interpolateRdYlGn).domain([0, 1]);

function zoomable(svg, g, width, height) {
  const zoom = d3.zoom().scaleExtent([0.05, 8]).on("zoom", (e) => g.attr("transform", e.transform));
  svg.call(zoom);
  const box = svg.node().getBoundingClientRect();
  const k = Math.min(1, (box.width - 40) / Math.max(width, 1), (box.height - 40) / Math.max(height, 1));
  svg.call(zoom.transform, d3.zoomIdentity.translate(20, 20).scale(k));
}

function drawTree(data) {
  const shape = data.result.shape;
  const mcts = data.result.kind === "mcts";
  $("#view-title").textContent = mcts ? "MCTS tree" : "Search tree";
  $("#view-note").textContent = (mcts
    ? "Node size: visits; colour: mean value Q. "
    : "Colour: the verifier's score; a ring: kept by its round. ")
    + "Red: the chosen path. Click a node; drag and scroll to move and zoom.";
  const root = d3.stratify().id((d) => String(d.id))
    .parentId((d) => (d.parent === null ? null : String(d.parent)))(shape.nodes);
  d3.tree().nodeSize([14, 70])(root);
  const [x0, x1] = d3.extent(root.descendants(), (d) => d.x);
  const width = (root.height + 1) * 70;
  const height = x1 - x0 + 14;
  const svg = d3.select("#view").append("svg").attr("class", "trace-svg tree");
  const g = svg.append("g").append("g").attr("transform", `translate(0,${-x0})`);
  g.append("g").selectAll("path").data(root.links()).join("path")
    .attr("class", (l) => "link" + (l.target.data.chosen && l.source.data.chosen ? " chosen" : ""))
    .attr("d", d3.linkHorizontal().x((d) => d.y).y((d) => d.x));
  const maxVisits = d3.max(shape.nodes, (n) => n.visits || 0) || 1;
  const radius = (n) => (mcts ? 3 + 6 * Math.sqrt((n.visits || 0) / maxVisits) : 5);
  const node = g.append("g").selectAll("g").data(root.descendants()).join("g")
    .attr("class", (d) => "node" + (d.data.chosen ? " chosen" : ""))
    .attr("data-id", (d) => d.data.id)
    .attr("transform", (d) => `translate(${d.y},${d.x})`)
    .on("click", (event, d) => {
      g.selectAll(".node.selected").classed("selected", false);
      d3.select(event.currentTarget).classed("selected", true);
      const n = d.data;
      const extra = mcts
        ? [["node", n.id], ["visits", n.visits], ["value", n.value], ["Q", n.q],
          ["children", d.children ? d.children.length : 0]]
        : [["node", n.id], ["round", n.round ?? undefined], ["kept", String(!!n.kept)],
          ["finished", String(!!n.finished)]];
      candidateDetail(data, n.candidate, [...extra, ["on chosen path", String(n.chosen)]]);
    });
  node.append("circle").attr("r", (d) => radius(d.data))
    .attr("fill", (d) => {
      const v = mcts ? d.data.q : d.data.score;
      return v === null || v === undefined ? "#ccc" : scoreColor(v);
    })
    .attr("stroke-dasharray", (d) => (!mcts && d.data.kept ? "2,1" : null));
  if (root.descendants().length <= 200) {
    node.append("text").attr("dy", -8).attr("text-anchor", "middle")
      .text((d) => (d.data.answer ? d.data.answer : ""));
  }
  zoomable(svg, svg.select("g"), width, height);
}

// -- genealogies: particle filtering (steps) and FK steering (checkpoints) ---------------
function drawGenealogy(data) {
  const fk = data.result.kind === "fk";
  const shape = data.result.shape;
  $("#view-title").textContent = fk ? "FK steering: particles per checkpoint" : "Particle genealogy";
  $("#view-note").textContent = "A lane per particle, a column per step; lines go to the "
    + "particle each descends from; dot size: normalised weight; shaded: the population was "
    + "resampled after that step. Click a particle.";
  const steps = shape.steps;
  const k = shape.particles;
  const dx = fk ? 110 : 90;
  const dy = fk ? 64 : 30;
  const top = 40;
  const width = steps.length * dx + 60;
  const height = k * dy + top + 20;
  const svg = d3.select("#view").append("svg").attr("class", "trace-svg genealogy")
    .style("height", `${Math.min(700, height + 20)}px`);
  const g = svg.append("g").append("g");
  const x = (t) => 40 + t * dx;
  const y = (i) => top + i * dy;
  g.selectAll("rect.resampled-band").data(steps.filter((s) => s.resampled)).join("rect")
    .attr("class", "resampled-band").attr("data-step", (s) => s.step)
    .attr("x", (s) => x(steps.indexOf(s)) + 8).attr("width", dx - 16)
    .attr("y", top - 20).attr("height", k * dy + 10);
  g.selectAll("text.step-ess").data(steps).join("text")
    .attr("class", "step-ess").attr("data-step", (s) => s.step)
    .attr("x", (s, t) => x(t)).attr("y", 14).attr("text-anchor", "middle")
    .text((s) => `${fk ? "step " + s.step : "step " + (s.step + 1)} · ESS ${num(s.ess)}`);
  const lines = [];
  steps.forEach((s, t) => s.lanes.forEach((l) => {
    if (l.from !== null) lines.push({ t, lane: l.lane, from: l.from });
  }));
  g.selectAll("line.link").data(lines).join("line").attr("class", "link")
    .attr("x1", (d) => x(d.t - 1)).attr("y1", (d) => y(d.from))
    .attr("x2", (d) => x(d.t)).attr("y2", (d) => y(d.lane));
  const dots = [];
  steps.forEach((s, t) => s.lanes.forEach((l) => dots.push({ t, s, l })));
  const node = g.selectAll("g.node").data(dots).join("g")
    .attr("class", (d) => "node" + (!fk && d.l.candidate === shape.chosen
      && d.t === steps.length - 1 ? " chosen" : ""))
    .attr("data-step", (d) => d.s.step).attr("data-lane", (d) => d.l.lane)
    .attr("transform", (d) => `translate(${x(d.t)},${y(d.l.lane)})`)
    .on("click", (event, d) => {
      g.selectAll(".node.selected").classed("selected", false);
      d3.select(event.currentTarget).classed("selected", true);
      const fields = [["step", d.s.step], ["lane", d.l.lane], ["weight", d.l.weight],
        ["ESS", d.s.ess], ["resampled after", String(d.s.resampled)],
        ["descends from lane", d.l.from ?? undefined]];
      if (fk) showDetail(`particle ${d.l.lane} at step ${d.s.step}`, [...fields, ["reward", d.l.reward]], "");
      else candidateDetail(data, d.l.candidate, fields);
    });
  if (fk) {
    node.append("image").attr("href", (d) => d.l.image).attr("x", -22).attr("y", -22)
      .attr("width", 44).attr("height", 44).attr("class", "checkpoint")
      .style("image-rendering", "pixelated").attr("visibility", (d) => (d.l.image ? null : "hidden"));
    node.append("circle").attr("r", (d) => 2 + 8 * d.l.weight).attr("cx", 26).attr("cy", -18)
      .attr("fill", "#1f77b4");
    node.append("text").attr("y", 32).attr("text-anchor", "middle").attr("class", "reward")
      .text((d) => `r ${num(d.l.reward)}`);
  } else {
    node.append("circle").attr("r", (d) => 2 + 10 * Math.sqrt(d.l.weight))
      .attr("fill", (d) => (d.l.score === null ? "#ccc" : scoreColor(d.l.score)));
  }
  zoomable(svg, svg.select("g"), width, height);
  if (fk) drawFinalImages(data);
}

function drawFinalImages(data) {
  const shape = data.result.shape;
  const box = el("div", { class: "images final" });
  for (const f of shape.final) {
    const fig = el("figure", { class: f.candidate === data.result.chosen ? "chosen" : "",
      "data-id": f.candidate, onclick: () => candidateDetail(data, f.candidate) });
    if (f.image) fig.append(el("img", { src: f.image, alt: `candidate ${f.candidate}` }));
    fig.append(el("figcaption", { text: `#${f.candidate} r ${num(f.reward)}`
      + (f.answer ? ` [${f.answer}]` : "") }));
    box.append(fig);
  }
  $("#view").append(el("h3", { text: "Finished images (red: chosen)" }), box);
}

// -- votes, scores, tournaments ------------------------------------------------------------
function bars(rows) {
  const box = el("div", { class: "bars" });
  const max = Math.max(...rows.map((r) => r.value), 1e-12);
  for (const r of rows) {
    box.append(el("div", { class: "bar-row" + (r.chosen ? " chosen" : ""), ...r.attrs,
      onclick: r.onclick }, el("span", { class: "bar-label", text: r.label, title: r.label }),
    el("span", { class: "bar", style: `width:${Math.max(2, 300 * r.value / max)}px` }),
    el("span", { class: "bar-value", text: num(r.value) }),
    el("span", { class: "note", text: r.note || "" })));
  }
  return box;
}

function drawVotes(data) {
  const shape = data.result.shape;
  $("#view-title").textContent = "Vote tally";
  $("#view-note").textContent = "Each answer group's total vote weight (highlighted: the chosen "
    + "answer's group). Click a group for its members.";
  $("#view").append(bars(shape.groups.map((gr) => ({
    label: gr.answer, value: gr.weight, chosen: gr.chosen,
    note: `${gr.members.length} sample(s), ${num(100 * gr.share)}%`,
    attrs: { "data-answer": gr.answer },
    onclick: () => showDetail(`answer ${gr.answer}`, [["weight", gr.weight], ["share", gr.share],
      ["members", gr.members]], ""),
  }))));
  if (shape.unanswered.length) {
    $("#view").append(el("p", { class: "note", text: `no answer: ${shape.unanswered.length} sample(s)` }));
  }
}

function drawScores(data) {
  const r = data.result;
  $("#view-title").textContent = "Verifier scores";
  $("#view-note").textContent = "Each scored sample's score (highlighted: the chosen one).";
  const scored = r.candidates.filter((c) => c.score !== null);
  $("#view").append(bars(scored.map((c) => ({
    label: `#${c.id} ${c.answer ?? "–"}`, value: c.score, chosen: c.id === r.chosen,
    attrs: { "data-id": c.id }, onclick: () => candidateDetail(data, c.id),
  }))));
}

function drawBracket(data) {
  const shape = data.result.shape;
  $("#view-title").textContent = `Tournament (${shape.format}, judge: ${shape.judge})`;
  $("#view-note").textContent = "Every comparison asked in both orders: a response wins only "
    + "when both orders pick it (or one does and the other gives no vote); else a tie.";
  const box = el("div", { class: "bracket" });
  shape.rounds.forEach((games, r) => {
    const col = el("div", { class: "round", "data-round": r }, el("h4", { text: `round ${r + 1}` }));
    for (const game of games) {
      const [a, b] = game.pair;
      const card = el("div", { class: "game", "data-round": r, "data-pair": `${a},${b}` },
        el("div", { text: `#${a} (${game.answers[0] ?? "–"}) vs #${b} (${game.answers[1] ?? "–"})` }));
      game.orders.forEach((o, i) => {
        const reply = o.refused ? `refused (${o.refused})` : `"${(o.reply ?? "").slice(0, 40)}"`;
        card.append(el("div", { class: "order", "data-order": i,
          text: `A=#${o.a} B=#${o.b}: ${reply} → ${o.parsed ?? "no letter"}`
            + (o.vote !== null ? `, vote #${o.vote}` : "") }));
      });
      const verdict = !game.complete ? "incomplete (budget)"
        : game.winner === null ? `tie → #${game.advances} on` : `winner #${game.winner}`;
      card.append(el("div", { class: game.winner !== null ? "winner" : "", text: verdict }));
      card.addEventListener("click", () => showDetail(`#${a} vs #${b}`, [["round", r + 1],
        ["winner", game.winner], ["advances", game.advances]],
      game.orders.map((o) => `A=#${o.a} B=#${o.b}: ${o.reply ?? o.refused}`).join("\n")));
      col.append(card);
    }
    box.append(col);
  });
  $("#view").append(box);
  if (shape.byes && shape.byes.length) {
    $("#view").append(el("p", { class: "note", text: "byes: " + shape.byes.map(([r, e]) =>
      `#${e} in round ${r + 1}`).join(", ") }));
  }
  if (shape.points.length) {
    $("#view").append(el("h3", { text: "Points" }), bars(shape.points.map(([e, p]) => ({
      label: `#${e}`, value: p, chosen: e === data.result.chosen, attrs: { "data-id": e } }))));
  }
  $("#view").append(el("p", { class: "note", id: "tournament-counts",
    text: `samples ${shape.samples}, entrants ${(shape.entrants || []).length}, ties ${shape.ties},`
      + ` unparsed replies ${shape.unparsed}, unfit ${shape.unfit}`
      + (shape.stopped ? ", stopped by the budget" : "") }));
}

const DRAW = { mcts: drawTree, tree: drawTree, genealogy: drawGenealogy, fk: drawGenealogy,
  votes: drawVotes, tournament: drawBracket, scores: drawScores };

function drawPicker(data) {
  if (data.results.length < 2) return;
  const pick = $("#result-pick");
  data.results.forEach((r, i) => pick.append(el("option", { value: i,
    text: `${i}: ${r.problem_id}` + (r.seed !== undefined && r.seed !== null ? ` seed ${r.seed}` : "") })));
  pick.value = String(data.index);
  pick.addEventListener("change", () => {
    const q = new URLSearchParams(location.search);
    q.set("result", pick.value);
    location.search = q.toString();
  });
  $("#result-label").hidden = false;
}

async function main() {
  const data = await tt.getJSON("/api/trace" + location.search);
  document.title = `${data.result.strategy.name || "trace"} · ${data.result.problem_id} · testtime`;
  $("#source").textContent = data.source.name;
  $("#trace-main").hidden = false;
  drawPicker(data);
  drawSummary(data);
  drawLedger(data.result.cost);
  drawCandidates(data);
  const draw = DRAW[data.result.kind];
  if (draw) draw(data);
  else $("#view-title").textContent = "No search structure in this trace: its candidates below.";
}

tt.run(main); // errors go to the page's error box; body[data-ready] is set either way
