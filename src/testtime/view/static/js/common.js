// Shared helpers of every viewer page: fetching the JSON APIs, formatting numbers and
// costs, showing an error in the page's error box (never a traceback), small DOM helpers,
// and the plots' HTML tooltip and interval whiskers (Chart.js).
"use strict";

const tt = (() => {
  /** Show a one-line message in the page's error box (#error). */
  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  }

  /** GET a JSON API; an error answer ({"error": ...}) or a network failure is thrown as
   * an Error whose message is the server's one line. */
  async function getJSON(url) {
    let response;
    try {
      response = await fetch(url);
    } catch (e) {
      throw new Error(`the viewer did not answer (${url}): is \`testtime view\` still running?`);
    }
    let body;
    try {
      body = await response.json();
    } catch (e) {
      throw new Error(`${url} answered ${response.status} without JSON`);
    }
    if (!response.ok || (body && body.error)) {
      throw new Error(body && body.error ? body.error : `${url} answered ${response.status}`);
    }
    return body;
  }

  let loaders = 0; // pages with no loader are ready once loaded (see the end)

  /** Run an async page loader; what it throws goes to the error box. body[data-ready] is
   * set when it has finished, either way (tests and the bench wait for it). */
  function run(loader) {
    loaders += 1;
    const go = () =>
      loader().catch((e) => {
        showError(e && e.message ? e.message : String(e));
        document.body.dataset.failed = "1";
      }).finally(() => {
        document.body.dataset.ready = "1";
      });
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", go);
    else go();
  }

  /** A number in short human form: 1234 -> "1.23k", 2.5e12 -> "2.50T". */
  function human(x) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    const a = Math.abs(x);
    const units = [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (const [size, unit] of units) if (a >= size) return (x / size).toFixed(2) + unit;
    return Number.isInteger(x) ? String(x) : x.toPrecision(3);
  }

  /** A fraction as a percentage with one decimal: 0.4567 -> "45.7%". */
  function pct(x) {
    return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%";
  }

  /** Seconds as "12.3 s" or "4.0 min". */
  function seconds(s) {
    if (s === null || s === undefined) return "–";
    return s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
  }

  /** A UNIX time as local "YYYY-MM-DD HH:MM". */
  function when(t) {
    const d = new Date(t * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
      `${p(d.getHours())}:${p(d.getMinutes())}`;
  }

  /** Create an element: el("td", {class: "num"}, "text", child, ...). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  /** A table from column names and rows of cells (strings, numbers or nodes). */
  function table(columns, rows, attrs) {
    const head = el("tr", {}, ...columns.map((c) => el("th", {}, c)));
    const body = rows.map((r) =>
      el("tr", {}, ...r.map((c) => el("td", typeof c === "number" ? { class: "num" } : {}, c))));
    return el("table", attrs || {}, el("thead", {}, head), el("tbody", {}, ...body));
  }

  /** The page's query parameters. */
  function params() {
    return new URLSearchParams(window.location.search);
  }

  /** A Chart.js external tooltip handler drawing an HTML tooltip (tests and screen readers
   * can read it) in a .tip div beside the canvas: linesOf(raw point) gives its lines. */
  function chartTip(linesOf) {
    return (context) => {
      const { chart, tooltip } = context;
      let tip = chart.canvas.parentNode.querySelector(".tip");
      if (!tip) {
        tip = el("div", { class: "tip" });
        chart.canvas.parentNode.append(tip);
      }
      if (tooltip.opacity === 0 || !tooltip.dataPoints || !tooltip.dataPoints.length) {
        tip.hidden = true;
        return;
      }
      tip.replaceChildren(...linesOf(tooltip.dataPoints[0].raw).map((l) => el("div", {}, l)));
      tip.hidden = false;
      tip.style.left = `${Math.min(tooltip.caretX + 12, chart.width - 40)}px`;
      tip.style.top = `${tooltip.caretY + 12}px`;
    };
  }

  /** A Chart.js plugin drawing each point's interval as a vertical whisker in its line's
   * colour: rangeOf(point, dataset) gives [lo, hi], or null for a point without one. */
  function whiskerPlugin(id, rangeOf) {
    return {
      id,
      afterDatasetsDraw(chart) {
        const { ctx, scales: { y } } = chart;
        chart.data.datasets.forEach((ds, i) => {
          const meta = chart.getDatasetMeta(i);
          if (meta.hidden) return;
          ds.data.forEach((d, j) => {
            const range = rangeOf(d, ds);
            if (!range) return;
            const x = meta.data[j].x;
            ctx.save();
            ctx.strokeStyle = ds.borderColor;
            ctx.globalAlpha = 0.45;
            ctx.beginPath();
            ctx.moveTo(x, y.getPixelForValue(range[0]));
            ctx.lineTo(x, y.getPixelForValue(range[1]));
            ctx.stroke();
            ctx.restore();
          });
        });
      },
    };
  }

  window.addEventListener("load", () => {
    if (loaders === 0) document.body.dataset.ready = "1";
  });

  return {
    showError, getJSON, run, human, pct, seconds, when, el, table, params, chartTip,
    whiskerPlugin,
  };
})();
