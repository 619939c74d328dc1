// The lab store pages: runs, a run (table, plots, problems), two runs side by side, and one
// problem's stored samples in vote groups. Each page is an HTML shell whose body's
// data-page names the view; everything shown comes from /api/store/... (view/store_data.py),
// which sends `testtime lab report`'s own analysis: nothing is recomputed here.
"use strict";

const store = (() => {
  const { el, human, pct, getJSON } = tt;
  const charts = {}; // canvas id -> Chart, for tests and the bench
  const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83",
    "#e16f24", "#6e7781", "#d63384", "#116329"];

  // -- runs --------------------------------------------------------------------------
  async function runsView() {
    const data = await getJSON("/api/store/runs");
    const box = document.getElementById("runs");
    if (!data.runs.length) {
      box.append(el("p", { id: "no-runs" }, "no runs in this store yet: `testtime lab run` makes one"));
      return;
    }
    const ticked = new Set();
    const button = document.getElementById("compare");
    button.addEventListener("click", () => {
      const [a, b] = [...ticked];
      window.location.href = `/store/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`;
    });
    const rows = data.runs.map((r) => {
      const box = el("input", { type: "checkbox", class: "pick", "data-run": r.id });
      box.addEventListener("change", () => {
        if (box.checked) ticked.add(r.id); else ticked.delete(r.id);
        button.disabled = ticked.size !== 2;
      });
      const s = r.spec;
      const spec = [s.models, s.tasks, s.arms].filter((l) => l.length).map((l) => l.join(", ")).join(" · ") +
        (s.budgets.length ? ` · budgets ${s.budgets.join(",")}` : "") +
        (s.pool ? ` · pool ${s.pool}` : "");
      return [box, el("a", { href: `/store/run?id=${encodeURIComponent(r.id)}`, class: "run-link" }, r.id),
        r.name, el("span", { class: `status ${r.status}` }, r.status), tt.when(r.created),
        r.samples, r.results, el("span", { title: `${r.flops} FLOPs` }, human(r.flops)),
        tt.seconds(r.seconds), el("span", { class: "spec" }, spec)];
    });
    box.append(tt.table(["", "run", "name", "status", "created", "samples", "results", "FLOPs",
      "seconds", "spec"], rows, { id: "runs-table" }));
  }

  // -- one run -------------------------------------------------------------------------
  async function runView(section, withProblems) {
    const id = section.dataset.run;
    const wait = el("p", { class: "muted loading" }, `replaying run ${id}'s stored samples ` +
      "(the first open of a large run takes as long as `testtime lab report`; later ones are quick) …");
    section.append(wait);
    const data = await getJSON(`/api/store/run?id=${encodeURIComponent(id)}`).finally(() => wait.remove());
    section.append(el("h2", {}, el("a", { href: `/store/run?id=${encodeURIComponent(id)}` }, data.id),
      ` · ${data.name}`));
    const t = data.totals || {};
    section.append(el("p", { class: "meta" },
      el("span", { class: `status ${data.status}` }, data.status), ` · created ${tt.when(data.created)}`,
      ` · ${tt.seconds(data.seconds)} · ${t.samples ?? 0} samples · ${t.results ?? 0} results · `,
      el("span", { class: "flops" }, `${human(t.flops)} FLOPs`),
      ` · ${data.brief.models.join(", ")} on ${data.brief.tasks.join(", ")}`));
    if (data.error) section.append(el("div", { class: "error" }, data.error));
    if (data.note) section.append(el("p", { class: "note" }, data.note));
    if (data.diffusion) diffusion.runView(section, data); // diffusion.js: `diffuse report`'s
    const a = data.analysis;
    if (a) {
      section.append(el("p", { class: "muted" }, `${a.title} (${a.problems} problems)`));
      section.append(analysisTable(a));
      if (a.pareto_key) section.append(el("p", { class: "muted" }, a.pareto_key));
      section.append(el("ul", { class: "summary" }, ...a.summary.map((l) => el("li", {}, l))));
      plots(section, a, id);
    }
    section.append(el("details", {}, el("summary", {}, "spec as given"), el("pre", {}, data.source)));
    if (withProblems) {
      if (data.diffusion) diffusion.problemsList(section, data);
      else await problemsList(section, id);
    }
  }

  function curvesOf(a) {
    const curves = a.curves.map((c) => ({ ...c, coverage: false }));
    if (a.coverage) curves.push({ ...a.coverage, label: a.coverage_label, coverage: true });
    return curves;
  }

  /** The table `lab report` prints, its cells as the report formats them (sent). */
  function analysisTable(a) {
    const table = tt.table(a.headers, a.table, { class: "analysis" });
    table.querySelectorAll("tbody tr").forEach((tr, i) => {
      if (a.table[i][0]) tr.classList.add("first");
      for (const j of [1, 2, 3, 4, 5]) tr.children[j].classList.add("num");
    });
    return table;
  }

  /** Accuracy against each cost axis (coverage dashed), and coverage with its fitted law. */
  function plots(section, a, id) {
    const curves = curvesOf(a);
    if (!curves.some((c) => c.points.length)) {
      section.append(el("p", {}, "Nothing to plot yet: this analysis has no points."));
      return;
    }
    const axes = ["samples", "tokens", "flops"];
    if (curves.some((c) => c.points.some((p) => p.eflops > 0))) axes.push("eflops");
    const box = el("div", { class: "plots" });
    section.append(box);
    for (const axis of axes) {
      chart(box, `${id}-${axis}`, a.axes[axis], curves.map((c, i) => ({
        label: c.label, color: COLORS[i % COLORS.length], dashed: c.coverage,
        points: c.points.filter((p) => p[axis] > 0)
          .map((p) => ({ x: p[axis], y: p.accuracy, p, curve: c })),
      })));
    }
    if (a.coverage && a.fit) {
      const ks = a.coverage.points.map((p) => p.budget);
      const law = ks.map((k) => ({ x: k, y: Math.exp(a.fit.a * Math.pow(k, a.fit.b)) }));
      chart(box, `${id}-coverage`, a.axes.samples, [
        { label: a.coverage_label, color: COLORS[0],
          points: a.coverage.points.map((p) => ({ x: p.samples, y: p.accuracy, p, curve: a.coverage })) },
        { label: `fit log c = ${a.fit.a.toPrecision(3)}·k^${a.fit.b.toPrecision(3)} (R² ${a.fit.r2.toFixed(3)})`,
          color: COLORS[1], dashed: true, points: law, fit: true },
      ]);
    }
  }

  function tooltipLines(d) {
    if (!d.p) return [`${d.y.toFixed(3)} at k=${d.x}`];
    const p = d.p;
    return [
      `${d.curve.label} · k=${p.budget}`,
      `accuracy ${pct(p.accuracy)} [${pct(p.lo)}–${pct(p.hi)}]`,
      `samples ${Number(p.samples.toPrecision(3))} · tokens ${human(p.tokens)}`,
      `FLOPs ${human(p.flops)}` + (p.eflops > 0 ? ` · eFLOPs ${human(p.eflops)}` : ""),
      `estimator ${d.curve.estimator}`,
    ];
  }

  /** Confidence intervals as whiskers at each point that has one. */
  const whiskers = tt.whiskerPlugin("whiskers",
    (d) => (!d.p || d.p.lo === undefined ? null : [d.p.lo, d.p.hi]));

  /** Whether a log axis labels this tick: 1, 2 and 5 times a power of ten. */
  function roundLog(v) {
    const m = v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9));
    return [1, 2, 5].some((r) => Math.abs(m - r) < 1e-6);
  }

  function chart(box, id, xLabel, series) {
    const canvas = el("canvas", { id: `chart-${id}`, width: 520, height: 340 });
    box.append(el("div", { class: "plot" }, canvas));
    const positive = series.every((s) => s.points.every((pt) => pt.x > 0));
    charts[canvas.id] = new Chart(canvas, {
      type: "line",
      data: {
        datasets: series.map((s) => ({
          label: s.label, data: s.points, borderColor: s.color, backgroundColor: s.color,
          borderDash: s.dashed ? [6, 4] : [], pointRadius: s.fit ? 0 : 3, pointHoverRadius: 6,
          borderWidth: 1.5, parsing: false, tension: 0,
        })),
      },
      plugins: [whiskers],
      options: {
        responsive: false, animation: false,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          x: { type: positive ? "logarithmic" : "linear", title: { display: true, text: xLabel },
            ticks: { autoSkip: true, maxTicksLimit: 8, callback: (v) => (positive && !roundLog(v) ? null : human(v)) } },
          y: { min: 0, max: 1, title: { display: true, text: "accuracy" },
            ticks: { callback: (v) => `${Math.round(v * 100)}%` } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, font: { size: 11 } } },
          tooltip: { enabled: false, external: tt.chartTip(tooltipLines) },
        },
      },
    });
  }

  async function problemsList(section, id) {
    const data = await getJSON(`/api/store/problems?run=${encodeURIComponent(id)}`);
    section.append(el("h2", {}, `Problems (${data.problems.length})`));
    const rows = data.problems.map((p) => [
      el("a", { class: "problem-link", href: `/store/problem?run=${encodeURIComponent(id)}` +
        `&task=${encodeURIComponent(p.task)}&problem=${encodeURIComponent(p.problem)}` }, p.problem),
      p.task, p.gold ?? "–", p.samples, p.samples ? pct(p.correct / p.samples) : "–", p.results]);
    section.append(tt.table(["problem", "task", "gold answer", "samples", "correct", "results"],
      rows, { id: "problems" }));
  }

  // -- one problem -----------------------------------------------------------------------
  async function problemView(section) {
    const q = section.dataset;
    const data = await getJSON(`/api/store/problem?run=${encodeURIComponent(q.run)}` +
      `&task=${encodeURIComponent(q.task)}&problem=${encodeURIComponent(q.problem)}`);
    if (data.kind === "diffusion") return diffusion.problemView(section, data);
    section.append(el("p", {}, `task ${data.task} · gold answer `,
      el("b", { id: "gold" }, data.gold ?? "–")));
    if (data.prompt) section.append(el("details", {}, el("summary", {}, "prompt"), el("pre", {}, data.prompt)));
    for (const pool of data.pools) section.append(poolView(pool));
    if (data.verdicts.length) section.append(verdictsView(data.verdicts));
    if (data.results.length) section.append(resultsView(data.results, q));
    if (!data.pools.length && !data.results.length) section.append(el("p", {}, "nothing stored for this problem yet"));
  }

  function poolView(pool) {
    const box = el("section", { class: "pool" });
    box.append(el("h2", {}, `pool ${pool.pool} · model ${pool.model} · seed ${pool.seed} · ${pool.size} samples`));
    for (const g of pool.groups) {
      const head = g.answer === null ? "no answer" : `answer ${g.answer}`;
      const lead = g.leader ? el("span", { class: "chosen" }, " the vote's leader") : null;
      const rows = g.samples.map((s) => [
        s.idx, s.answer ?? "–",
        el("span", { class: s.correct ? "ok" : "no" }, s.correct === null ? "–" : s.correct ? "yes" : "no"),
        scoresCell(s), s.generated_tokens, human(s.flops), costsCell(s), tt.seconds(s.seconds),
        s.finish ?? "–", el("details", {}, el("summary", {}, "text"), el("pre", {}, s.text)),
      ]);
      box.append(el("div", { class: "group", "data-answer": g.answer ?? "" },
        el("h3", {}, `${head} · ${g.count} vote${g.count === 1 ? "" : "s"} · ${g.correct} correct`, lead),
        tt.table(["#", "answer", "correct", "verifier scores", "tokens", "FLOPs",
          "verifier FLOPs", "seconds", "finish", ""], rows, { class: "samples" })));
    }
    return box;
  }

  function scoresCell(s) {
    const names = Object.keys(s.scores);
    if (!names.length) return "–";
    return el("span", { class: "scores" }, names.map((n) => `${n}: ${Number(s.scores[n]).toPrecision(3)}`).join("; "));
  }

  function costsCell(s) {
    const names = Object.keys(s.verifier_costs || {});
    const parts = names.map((n) => `${n}: ${human(s.verifier_costs[n])}`);
    return parts.length ? parts.join("; ") : human(s.verifier_flops);
  }

  function verdictsView(verdicts) {
    const rows = verdicts.map((v) => [v.judge, v.seed, v.swapped ? `${v.j} vs ${v.i}` : `${v.i} vs ${v.j}`,
      v.refused ? `refused (${v.refused})` : v.vote ?? "none", v.parsed ?? "–", human(v.flops),
      el("details", {}, el("summary", {}, "reply"), el("pre", {}, v.reply ?? ""))]);
    return el("section", { id: "verdicts" }, el("h2", {}, `Judge verdicts (${verdicts.length})`),
      tt.table(["judge", "seed", "A vs B (samples)", "voted for", "letter", "FLOPs", ""], rows));
  }

  function resultsView(results, q) {
    const rows = results.map((r) => {
      const key = new URLSearchParams({ run: q.run, model: r.model, task: q.task, arm: r.arm,
        budget: r.budget, seed: r.seed, problem: q.problem });
      return [r.arm, r.budget, r.seed, r.answer ?? "–",
        el("span", { class: r.correct ? "ok" : "no" }, r.correct ? "yes" : "no"),
        r.cost.samples, human(r.cost.generated_tokens), human(r.cost.flops), r.exhausted ? "yes" : "",
        el("a", { class: "trace-link", href: `/trace?${key}` }, "trace")];
    });
    return el("section", { id: "results" }, el("h2", {}, "Strategy results"),
      tt.table(["arm", "budget", "seed", "answer", "correct", "samples", "tokens", "FLOPs",
        "budget spent", ""], rows));
  }

  // -- start -----------------------------------------------------------------------------
  tt.run(async () => {
    const view = document.body.dataset.page;
    if (view === "runs") await runsView();
    else if (view === "run") await runView(document.getElementById("run"), true);
    else if (view === "compare") {
      await Promise.all([...document.querySelectorAll("section.run")].map((s) => runView(s, false)));
    } else if (view === "problem") await problemView(document.getElementById("problem"));
  });

  return { charts };
})();
