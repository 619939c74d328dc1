// A diffusion run on the lab store pages: `testtime diffuse report`'s table, its two plots
// (judged accuracy and the chosen image's reward against NFE, with their intervals) drawn
// with hover, an arm-minus-arm comparison, its problems, and one problem's stored results
// with every finished image's label and reward. store.js calls in when a run's data has
// "diffusion" (view/diffusion_data.py); every number is the report's, sent by the server.
"use strict";

const diffusion = (() => {
  const { el, human, pct, getJSON } = tt;
  const charts = {}; // canvas id -> Chart, for tests
  const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83",
    "#e16f24", "#6e7781", "#d63384", "#116329"];

  /** The report (table, caption, comparison, plots) after the run's heading. */
  function runView(section, data) {
    const d = data.diffusion;
    section.append(el("p", { class: "muted" }, `${d.title} (${d.models.join(", ")})`));
    const table = tt.table(d.headers, d.table, { class: "analysis diffusion" });
    table.querySelectorAll("tbody tr").forEach((tr, i) => {
      if (d.table[i][0]) tr.classList.add("first");
      for (let j = 1; j < tr.children.length; j++) tr.children[j].classList.add("num");
    });
    section.append(table, el("p", { class: "muted" }, d.caption));
    if (d.arms.length >= 2) section.append(compareForm(data.id, d));
    if (!d.points.length) {
      section.append(el("p", {}, "Nothing to plot yet: no arm has a stored result."));
      return;
    }
    const box = el("div", { class: "plots" });
    section.append(box);
    for (const metric of ["accuracy", "reward"]) chart(box, `${data.id}-${metric}`, d, metric);
  }

  /** Two arms to subtract, paired by problem: `diffuse report --compare A,B`'s table. */
  function compareForm(id, d) {
    const pick = (name, chosen) => el("select", { class: `diff-${name}` },
      ...d.arms.map((a) => el("option", { value: a, selected: a === chosen }, a)));
    const a = pick("a", d.arms[0]);
    const b = pick("b", d.arms[1]);
    const out = el("div", { class: "difference" });
    const go = el("button", { class: "diff-go" }, "compare");
    go.addEventListener("click", async () => {
      out.replaceChildren(el("p", { class: "muted" }, "pairing by problem …"));
      try {
        const c = await getJSON(`/api/store/diffusion/compare?run=${encodeURIComponent(id)}` +
          `&a=${encodeURIComponent(a.value)}&b=${encodeURIComponent(b.value)}`);
        const t = tt.table(c.headers, c.table, { class: "analysis difference" });
        t.querySelectorAll("td").forEach((td) => td.classList.add("num"));
        out.replaceChildren(el("p", {}, c.title), t, el("p", { class: "muted" }, c.caption));
      } catch (e) {
        out.replaceChildren(el("div", { class: "error" }, e.message));
      }
    });
    return el("div", { class: "controls" }, "arm ", a, " minus arm ", b, " ", go, out);
  }

  function tooltipLines(d) {
    const p = d.p;
    const [am, alo, ahi] = p.accuracy;
    const [rm, rlo, rhi] = p.reward;
    return [
      `${p.arm} · NFE budget ${p.budget}`,
      `accuracy ${pct(am)} [${pct(alo)}, ${pct(ahi)}]`,
      `reward ${rm.toFixed(3)} [${rlo.toFixed(3)}, ${rhi.toFixed(3)}]`,
      `NFE spent ${p.nfe.toFixed(0)} · FLOPs ${human(p.flops)}`,
      `${p.problems} problems`,
    ];
  }

  /** Each point's interval (lo, hi of its metric: [value, lo, hi]) as a whisker. */
  const whiskers = tt.whiskerPlugin("diffusionWhiskers", (d, ds) => d.p[ds.metric].slice(1));

  /** One of the report's plots: `metric` against NFE spent (log2 axis), one line per arm. */
  function chart(box, id, d, metric) {
    const canvas = el("canvas", { id: `chart-${id}`, width: 520, height: 340 });
    box.append(el("div", { class: "plot" }, canvas));
    const arms = [...new Set(d.points.map((p) => p.arm))];
    const xs = d.points.map((p) => p.nfe).filter((x) => x > 0);
    const log = xs.length === d.points.length;
    const powers = [];
    if (log) {
      for (let k = Math.floor(Math.log2(Math.min(...xs))); k <= Math.ceil(Math.log2(Math.max(...xs))); k++) {
        powers.push(2 ** k);
      }
    }
    charts[canvas.id] = new Chart(canvas, {
      type: "line",
      data: {
        datasets: arms.map((arm, i) => ({
          label: arm, metric, borderColor: COLORS[i % COLORS.length],
          backgroundColor: COLORS[i % COLORS.length], pointRadius: 3, pointHoverRadius: 6,
          borderWidth: 1.5, parsing: false, tension: 0,
          data: d.points.filter((p) => p.arm === arm).map((p) => ({ x: p.nfe, y: p[metric][0], p })),
        })),
      },
      plugins: [whiskers],
      options: {
        responsive: false, animation: false,
        interaction: { mode: "nearest", intersect: false, axis: "xy" },
        scales: {
          x: { type: log ? "logarithmic" : "linear", title: { display: true, text: d.axes.nfe },
            min: log ? powers[0] : undefined, max: log ? powers[powers.length - 1] : undefined,
            afterBuildTicks: log ? (axis) => { axis.ticks = powers.map((v) => ({ value: v })); } : undefined,
            ticks: { callback: (v) => human(v) } },
          y: metric === "accuracy"
            ? { min: 0, max: 1, title: { display: true, text: d.axes.accuracy },
              ticks: { callback: (v) => `${Math.round(v * 100)}%` } }
            : { beginAtZero: true, title: { display: true, text: d.axes.reward },
              suggestedMin: Math.min(...d.points.map((p) => p.reward[1])),
              suggestedMax: Math.max(...d.points.map((p) => p.reward[2])) },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, font: { size: 11 } } },
          tooltip: { enabled: false, external: tt.chartTip(tooltipLines) },
        },
      },
    });
  }

  /** The run's problems (prompt, gold label, results and how many the judge called right). */
  function problemsList(section, data) {
    const id = data.id;
    const problems = data.diffusion.problems;
    section.append(el("h2", {}, `Problems (${problems.length})`));
    const rows = problems.map((p) => [
      el("a", { class: "problem-link", href: `/store/problem?run=${encodeURIComponent(id)}` +
        `&task=${encodeURIComponent(p.task)}&problem=${encodeURIComponent(p.problem)}` }, p.problem),
      p.task, p.prompt, p.gold ?? "–", p.results, p.results ? `${p.correct} (${pct(p.correct / p.results)})` : "–"]);
    section.append(tt.table(["problem", "task", "prompt", "gold label", "results", "judged correct"],
      rows, { id: "problems" }));
  }

  // -- one problem -----------------------------------------------------------------------
  function problemView(section, data) {
    section.append(el("p", {}, `task ${data.task} · prompt `, el("b", { id: "prompt" }, data.prompt ?? "–"),
      " · gold label ", el("b", { id: "gold" }, data.gold ?? "–")));
    section.append(el("p", { class: "muted" }, "Each result is one arm at one NFE budget; its images " +
      "are the finished samples the judge labelled and the reward scored (the lab store keeps " +
      "their labels, rewards and costs, not their pixels)."));
    if (!data.results.length) {
      section.append(el("p", {}, "nothing stored for this problem yet"));
      return;
    }
    const rows = data.results.map((r) => [
      r.arm, r.budget, r.seed, r.answer ?? "–",
      el("span", { class: r.correct ? "ok" : "no" }, r.correct === null ? "–" : r.correct ? "yes" : "no"),
      r.reward === null || r.reward === undefined ? "–" : Number(r.reward).toPrecision(3),
      r.cost.nfe, human(r.cost.flops), tt.seconds(r.cost.seconds), r.exhausted ? "yes" : "",
      samplesCell(r),
    ]);
    section.append(el("section", { id: "results" }, el("h2", {}, `Results (${data.results.length})`),
      tt.table(["arm", "NFE budget", "seed", "chosen label", "correct", "chosen reward", "NFE spent",
        "FLOPs", "seconds", "budget spent", "images"], rows, { class: "diffusion-results" })));
  }

  /** A result's finished images (label, correct, reward, parent), the chosen one marked,
   * and its trace as stored. */
  function samplesCell(r) {
    const rows = r.samples.map((s) => {
      const cells = [s.idx, s.answer ?? "–",
        el("span", { class: s.correct ? "ok" : "no" }, s.correct ? "yes" : "no"),
        Object.entries(s.scores).map(([n, v]) => `${n}: ${Number(v).toPrecision(3)}`).join("; ") || "–",
        s.parent ?? "–", s.chosen ? "chosen" : ""];
      return cells;
    });
    const t = tt.table(["#", "label", "correct", "reward", "parent", ""], rows, { class: "samples" });
    t.querySelectorAll("tbody tr").forEach((tr, i) => { if (r.samples[i].chosen) tr.classList.add("chosen"); });
    return el("details", {}, el("summary", {}, `${r.samples.length} image${r.samples.length === 1 ? "" : "s"}`),
      t, el("details", {}, el("summary", {}, "trace"), el("pre", {}, JSON.stringify(r.trace, null, 1))));
  }

  return { charts, runView, problemsList, problemView };
})();
