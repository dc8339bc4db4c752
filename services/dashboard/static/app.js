// Kiln dashboard: a small single-page app on the API's REST routes (docs/openapi/api.json).
// Pages are hash routes (#/jobs/<id>), so the server serves one file; every request goes to
// this page's own origin, relative to where the page is (any root path works).
"use strict";

(function () {
  const KEY = "kiln.apiKey";
  // /ui/ → the API's root: "/" or, behind a prefix, "/prefix/".
  const BASE = location.pathname.replace(/ui\/?(index\.html)?$/, "");
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  const REFIT_COLOR = "#222";
  const main = document.getElementById("main");

  // ---- DOM ------------------------------------------------------------------------------
  // h("a", {href: "#/"}, "text", child…): text is always set as text, never parsed as HTML.
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  const link = (href, text, attrs) => h("a", { href, ...attrs }, text);
  const badge = (state) => h("span", { class: `badge state-${state}`, "data-state": state }, state);

  function fmt(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 0.001 || a >= 1e6)) return v.toExponential(2);
    return a >= 100 ? v.toFixed(1) : v.toFixed(4);
  }
  // Metrics in tables: four decimals, so that columns line up (a std of 0 shows as 0.0000).
  const num4 = (v) => (typeof v !== "number" ? fmt(v) : Math.abs(v) >= 1000 ? v.toPrecision(6) : v.toFixed(4));
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
  const short = (id) => String(id).slice(0, 8);

  function table(head, rows, attrs) {
    return h("table", attrs || {},
      h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c)))))));
  }

  function section(title, ...children) {
    return h("section", { class: "card" }, h("h2", {}, title), ...children);
  }

  function kv(pairs) {
    return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  }

  function errorBox(err) {
    return h("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
  }

  // ---- the API ----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && typeof body === "object"
        ? body.detail || body.error || body.title
        : body;
      super(`${status}: ${detail || "request failed"}`);
      this.status = status;
      this.body = body;
    }
  }

  let asking = null;  // one key dialog at a time, however many requests were refused

  function askKey(reason) {
    if (asking) return asking;
    const dialog = document.getElementById("key-dialog");
    const input = document.getElementById("key-input");
    document.getElementById("key-reason").textContent = reason;
    input.value = "";
    asking = new Promise((resolve) => {
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        const key = input.value.trim();
        if (key) sessionStorage.setItem(KEY, key);
        asking = null;
        showKeyState();
        resolve();
      });
    });
    dialog.showModal();
    return asking;
  }

  function showKeyState() {
    const has = !!sessionStorage.getItem(KEY);
    document.getElementById("key-state").textContent = has ? "API key set" : "";
    document.getElementById("forget-key").hidden = !has;
  }

  // fetch on this origin; the key, when there is one, goes in Authorization. A 401 asks for
  // a key (once, then it is kept for this tab) and sends the request again.
  async function api(path, { method = "GET", body } = {}) {
    for (;;) {
      const headers = { Accept: "application/json" };
      const key = sessionStorage.getItem(KEY);
      if (key) headers.Authorization = `Bearer ${key}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const res = await fetch(BASE + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
      const type = res.headers.get("content-type") || "";
      const data = type.includes("json") ? await res.json() : await res.text();
      if (res.status === 401) {
        sessionStorage.removeItem(KEY);
        await askKey((data && (data.detail || data.error)) || "This Kiln requires an API key.");
        if (!sessionStorage.getItem(KEY)) throw new ApiError(401, data);
        continue;
      }
      if (!res.ok) throw new ApiError(res.status, data);
      return data;
    }
  }

  // ---- pages and polling -------------------------------------------------------------------
  let page = { alive: false, timers: [] };

  function newPage() {
    page.alive = false;
    page.timers.forEach(clearTimeout);
    page = { alive: true, timers: [] };
    const p = page;
    // Run fn now and then every ms while this page is shown and fn answers true.
    p.every = (ms, fn) => {
      const tick = async () => {
        if (!p.alive) return;
        let again = false;
        try {
          again = await fn();
        } catch (err) {
          again = true;
          console.warn(err);
        }
        if (again && p.alive) p.timers.push(setTimeout(tick, ms));
      };
      return tick();
    };
    return p;
  }

  function mount(...children) {
    main.replaceChildren(...children);
  }

  function replace(node, ...children) {
    node.replaceChildren(...children);
  }

  // ---- datasets ----------------------------------------------------------------------------
  async function datasetsPage() {
    const [datasets, builtin] = await Promise.all([api("datasets?limit=200"), api("datasets/builtin")]);
    mount(
      h("h1", {}, "Datasets"),
      section("Stored",
        datasets.items.length
          ? table(["id", "name", "source", "kind", "rows", "columns", "target", "classes", "created"],
            datasets.items.map((d) => [
              h("code", { title: d.id }, short(d.id)), d.name, d.source, d.kind, d.n_rows, d.n_columns, d.target,
              d.class_counts ? Object.entries(d.class_counts).map(([k, v]) => `${k}: ${v}`).join(", ") : "–",
              when(d.created_at),
            ]), { class: "datasets" })
          : h("p", { class: "muted" }, "None yet: upload a CSV with POST /datasets or `kiln datasets upload`, or train on a built-in one.")),
      section("Built in (use as sklearn:<name>)",
        table(["name", "description"], builtin.map((b) => [h("code", {}, `sklearn:${b.name}`), b.description]))),
    );
  }

  // ---- jobs ------------------------------------------------------------------------------
  const EXAMPLE_SPEC = {
    task: "multiclass",
    layers: [
      { type: "Dense", units: 16, activation: "relu" },
      { type: "Dense", units: 3, activation: "softmax" },
    ],
    optimizer: { name: "adam", learning_rate: 0.01 },
    loss: "sparse_categorical_crossentropy",
    epochs: 60,
    batch_size: 16,
    k_folds: 3,
    seed: 0,
  };

  function progressText(job) {
    const p = job.progress;
    if (!p) return job.state === "queued" ? "waiting for a worker" : "";
    const where = p.phase === "refit" ? "refit" : `fold ${p.fold}/${p.n_folds}`;
    return `${where}, epoch ${p.epoch}/${p.epochs}`;
  }

  function submitForm(datasets, builtin) {
    const status = h("p", { class: "form-status" });
    const options = [
      ...builtin.map((b) => h("option", { value: `sklearn:${b.name}` }, `sklearn:${b.name}`)),
      ...datasets.items.map((d) => h("option", { value: d.id }, `${d.name} (${short(d.id)})`)),
    ];
    const form = h("form", { id: "submit-job", class: "stack" },
      h("label", {}, "Model name ", h("input", { name: "model_name", required: true, pattern: "[a-z][a-z0-9_-]{0,62}", value: "iris" })),
      h("label", {}, "Dataset ", h("select", { name: "dataset" }, options)),
      h("label", { class: "wide" }, "Spec (JSON; examples/ has one per kind)",
        h("textarea", { name: "spec", rows: 14, spellcheck: "false" }, JSON.stringify(EXAMPLE_SPEC, null, 2))),
      h("div", {}, h("button", { type: "submit" }, "Submit job")),
      status);
    const ds = form.elements.namedItem("dataset");
    ds.value = "sklearn:iris";
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      let spec;
      try {
        spec = JSON.parse(form.elements.namedItem("spec").value);
      } catch (err) {
        replace(status, errorBox(`the spec is not JSON: ${err.message}`));
        return;
      }
      replace(status, "submitting…");
      try {
        const accepted = await api("jobs", {
          method: "POST",
          body: { model_name: form.elements.namedItem("model_name").value, dataset: ds.value, spec },
        });
        location.hash = `#/jobs/${accepted.id}`;
      } catch (err) {
        const fields = err.body && Array.isArray(err.body.errors)
          ? err.body.errors.map((e) => h("li", {}, `${(e.loc || []).join(".")}: ${e.msg}`))
          : [];
        replace(status, errorBox(err), fields.length ? h("ul", { class: "error" }, fields) : null);
      }
    });
    return form;
  }

  async function jobsPage(p) {
    const list = h("div", { id: "jobs" }, h("p", { class: "muted" }, "loading…"));
    const formSlot = h("div");
    mount(h("h1", {}, "Jobs"), section("New training job", h("details", {}, h("summary", {}, "Train a model"), formSlot)), section("All jobs", list));
    Promise.all([api("datasets?limit=200"), api("datasets/builtin")])
      .then(([d, b]) => replace(formSlot, submitForm(d, b)))
      .catch((err) => replace(formSlot, errorBox(err)));
    await p.every(2000, async () => {
      const jobs = await api("jobs?limit=100");
      replace(list, jobs.items.length
        ? table(["job", "model", "state", "progress", "attempt", "created", "version"],
          jobs.items.map((j) => [
            link(`#/jobs/${j.id}`, short(j.id), { class: "job-link", title: j.id }),
            link(`#/models/${j.model_name}`, j.model_name),
            badge(j.state),
            progressText(j),
            j.attempt,
            when(j.created_at),
            j.model_version ? link(`#/models/${j.model_name}/versions/${j.model_version}`, `v${j.model_version}`) : "–",
          ]), { class: "jobs" })
        : h("p", { class: "muted" }, "No jobs yet."));
      return true;  // live: other people's jobs come and go
    });
  }

  function metricNames(history) {
    // "loss", "accuracy", …: each drawn with its "val_" twin.
    const names = new Set();
    for (const k of Object.keys(history || {})) names.add(k.startsWith("val_") ? k.slice(4) : k);
    return [...names].sort((a, b) => (a === "loss" ? -1 : b === "loss" ? 1 : a.localeCompare(b)));
  }

  function curves(hist) {
    const fits = [...hist.folds.map((f) => ({ ...f, label: `fold ${f.fold}`, color: PALETTE[(f.fold - 1) % PALETTE.length] }))];
    if (hist.refit) fits.push({ ...hist.refit, label: "refit", color: REFIT_COLOR });
    const names = new Set(fits.flatMap((f) => metricNames(f.history)));
    const ordered = [...names].sort((a, b) => (a === "loss" ? -1 : b === "loss" ? 1 : a.localeCompare(b)));
    if (!ordered.length) return [h("p", { class: "muted" }, "No epochs yet.")];
    const charts = ordered.map((name) => {
      const series = [];
      for (const f of fits) {
        if (f.history[name]) series.push({ label: `${f.label} training`, values: f.history[name], color: f.color });
        if (f.history[`val_${name}`]) series.push({ label: `${f.label} validation`, values: f.history[`val_${name}`], color: f.color, dashed: true });
      }
      return h("figure", { class: "curve-figure", "data-metric": name }, KilnCharts.line({ title: name, series }));
    });
    const legend = h("p", { class: "legend" },
      fits.map((f) => h("span", { class: "swatch-item" }, h("span", { class: "swatch", "data-color": f.color }), f.label, f.done ? "" : " (running)")),
      h("span", { class: "muted" }, "solid: training, dashed: validation"));
    legend.querySelectorAll(".swatch").forEach((s) => { s.style.background = s.dataset.color; });
    return [h("div", { class: "charts" }, charts), legend];
  }

  function scalarMetrics(folds) {
    const names = [];
    for (const f of folds) {
      for (const [k, v] of Object.entries(f.metrics || {})) {
        if (typeof v === "number" && !names.includes(k)) names.push(k);
      }
    }
    return names;
  }

  function meanStd(values) {
    const xs = values.filter((v) => typeof v === "number" && Number.isFinite(v));
    if (!xs.length) return null;
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    return { mean, std };
  }

  // One row per metric: each fold's value, then mean ± std over the folds (as Kiln stores it).
  function foldTable(folds, summary) {
    if (!folds.length) return h("p", { class: "muted" }, "No fold has finished yet.");
    const sorted = [...folds].sort((a, b) => a.fold - b.fold);
    const names = scalarMetrics(sorted);
    return table(
      ["metric", ...sorted.map((f) => `fold ${f.fold}`), "mean ± std"],
      names.map((name) => {
        const ms = (summary && summary[name]) || meanStd(sorted.map((f) => f.metrics[name]));
        return [name, ...sorted.map((f) => num4(f.metrics[name])),
          h("td", { class: "mean-std" }, ms ? `${num4(ms.mean)} ± ${num4(ms.std)}` : "–")];
      }).concat([["rows (train / validation)", ...sorted.map((f) => `${f.n_train} / ${f.n_val}`), ""]]),
      { class: "folds" });
  }

  async function jobPage(p, id) {
    const head = h("div", {}, h("p", { class: "muted" }, "loading…"));
    const chartsBox = h("div", { id: "curves" });
    const foldsBox = h("div", { id: "fold-table" });
    const eventsBox = h("div");
    mount(
      h("h1", {}, "Job ", h("code", {}, short(id))),
      head,
      section("Learning curves (per epoch)", chartsBox),
      section("Fold metrics", foldsBox),
      section("Events", eventsBox),
    );
    await p.every(1000, async () => {
      const [job, hist] = await Promise.all([api(`jobs/${id}`), api(`jobs/${id}/history`)]);
      const done = TERMINAL.has(job.state);
      const actions = [];
      if (!done) {
        actions.push(h("button", {
          type: "button",
          class: "danger",
          onclick: async () => {
            if (!confirm(`Cancel job ${short(id)}?`)) return;
            try { await api(`jobs/${id}/cancel`, { method: "POST" }); } catch (err) { alert(err.message); }
          },
        }, "Cancel job"));
      }
      replace(head, section("Job",
        kv([
          ["id", h("code", {}, job.id)],
          ["model", link(`#/models/${job.model_name}`, job.model_name)],
          ["state", h("span", { id: "job-state" }, badge(job.state))],
          ["progress", h("span", { id: "job-progress" }, progressText(job) || (done ? "done" : ""))],
          ["version", job.model_version
            ? link(`#/models/${job.model_name}/versions/${job.model_version}`, `v${job.model_version}`, { id: "job-version" })
            : "–"],
          ["attempt", job.attempt],
          ["worker", job.worker || "–"],
          ["created", when(job.created_at)],
          ["finished", when(job.finished_at)],
          ["dataset", h("code", {}, job.dataset_id)],
        ]),
        job.reason ? h("p", { class: "error" }, job.reason) : null,
        actions,
        h("details", {}, h("summary", {}, "Spec"), h("pre", {}, JSON.stringify(job.spec, null, 2)))));
      replace(chartsBox, ...curves(hist));
      replace(foldsBox, foldTable(job.folds));
      replace(eventsBox, table(["at", "state", "message"], job.events.map((e) => [when(e.at), badge(e.state), e.message || ""])));
      return !done;
    });
  }

  // ---- models -----------------------------------------------------------------------------
  async function modelsPage() {
    const models = await api("models?limit=200");
    mount(h("h1", {}, "Models"), section("Registered models",
      models.items.length
        ? table(["model", "latest", "versions", "aliases", "description", "created"], models.items.map((m) => [
          link(`#/models/${m.name}`, m.name),
          m.latest_version ? link(`#/models/${m.name}/versions/${m.latest_version}`, `v${m.latest_version}`) : "–",
          m.versions.length,
          Object.entries(m.aliases).map(([a, v]) => h("span", { class: "alias" }, `${a} → v${v}`)),
          m.description || "",
          when(m.created_at),
        ]), { class: "models" })
        : h("p", { class: "muted" }, "No models yet: a succeeded job registers one.")));
  }

  function headlineMetric(metrics) {
    for (const k of ["accuracy", "f1", "rmse", "r2"]) if (metrics[k]) return [k, metrics[k]];
    const first = Object.entries(metrics)[0];
    return first || null;
  }

  async function modelPage(p, name) {
    const versionsBox = h("div");
    const aliasesBox = h("div", { id: "aliases" });
    const historyBox = h("div", { id: "alias-history" });
    const predictBox = h("div", { id: "predict" });
    mount(
      h("h1", {}, "Model ", h("code", {}, name)),
      section("Versions", versionsBox),
      section("Aliases", aliasesBox),
      section("Alias history", historyBox),
      section("Predict", predictBox),
    );
    const [model, versions] = await Promise.all([api(`models/${name}`), api(`models/${name}/versions`)]);
    const numbers = versions.map((v) => v.version);
    const latest = versions.find((v) => v.version === model.latest_version) || versions[versions.length - 1];
    const predict = latest ? predictForm(name, latest) : null;
    replace(predictBox, predict ? predict.form : h("p", { class: "muted" }, "No version to predict with."));
    const refreshAliases = async () => {
      const [aliases, history, current] = await Promise.all([
        api(`models/${name}/aliases`), api(`models/${name}/aliases/history?limit=50`), api(`models/${name}/versions`)]);
      replace(versionsBox, ...versionsTable(name, current));
      replace(aliasesBox, aliasTable(name, aliases, refreshAliases), promoteForm(name, numbers, refreshAliases));
      replace(historyBox, history.length
        ? table(["at", "alias", "from", "to", "by", "reason"], history.map((e) => [
          when(e.at), e.alias, e.from_version ? `v${e.from_version}` : "–", e.to_version ? `v${e.to_version}` : "deleted",
          e.actor || "–", e.reason || "",
        ]), { class: "alias-history" })
        : h("p", { class: "muted" }, "No alias has moved yet."));
      if (predict) predict.targets(aliases, current);
    };
    await refreshAliases();
  }

  function versionsTable(name, versions) {
    const picked = new Set();
    const compareButton = h("button", {
      type: "button",
      id: "compare",
      disabled: true,
      onclick: () => { location.hash = `#/models/${name}/compare/${[...picked].sort((a, b) => a - b).join(",")}`; },
    }, "Compare selected");
    return [
      table(["", "version", "created", "aliases", "dataset", "metric (mean ± std)", "job"], versions.map((v) => {
        const head = headlineMetric(v.metrics);
        return [
          h("input", {
            type: "checkbox",
            class: "pick",
            value: v.version,
            "aria-label": `compare v${v.version}`,
            onchange: (ev) => {
              if (ev.target.checked) picked.add(v.version); else picked.delete(v.version);
              compareButton.disabled = picked.size < 2;
            },
          }),
          link(`#/models/${name}/versions/${v.version}`, `v${v.version}`),
          when(v.created_at),
          v.aliases.map((a) => h("span", { class: "alias" }, a)),
          `${v.dataset.name} (${short(v.dataset.id)})`,
          head ? `${head[0]} ${fmt(head[1].mean)} ± ${fmt(head[1].std)}` : "–",
          link(`#/jobs/${v.job_id}`, short(v.job_id)),
        ];
      }), { class: "versions" }),
      h("p", {}, compareButton, " ", h("span", { class: "muted" }, "pick two or more; the first is the baseline")),
    ];
  }

  function aliasTable(name, aliases, refresh) {
    if (!aliases.length) return h("p", { class: "muted" }, "No aliases yet: promote a version below.");
    return table(["alias", "version", "updated", ""], aliases.map((a) => [
      h("strong", {}, a.alias),
      link(`#/models/${name}/versions/${a.version}`, `v${a.version}`, { class: "alias-version", "data-alias": a.alias }),
      when(a.updated_at),
      h("button", {
        type: "button",
        class: "rollback",
        "data-alias": a.alias,
        onclick: async () => {
          if (!confirm(`Roll alias '${a.alias}' of ${name} back to the version it pointed at before v${a.version}?`)) return;
          try {
            await api(`models/${name}/aliases/${a.alias}/rollback`, { method: "POST", body: { to: "previous", reason: "rolled back from the dashboard" } });
            await refresh();
          } catch (err) {
            alert(err.message);
          }
        },
      }, "Roll back"),
    ]), { class: "aliases" });
  }

  function promoteForm(name, numbers, refresh) {
    const status = h("span", { class: "form-status" });
    const form = h("form", { id: "promote", class: "inline" },
      h("label", {}, "Alias ", h("input", { name: "alias", value: "production", required: true, size: 14 })),
      h("label", {}, "Version ", h("select", { name: "version" }, [...numbers].reverse().map((n) => h("option", { value: n }, `v${n}`)))),
      h("label", {}, "Reason ", h("input", { name: "reason", placeholder: "optional", size: 24 })),
      h("button", { type: "submit" }, "Promote"),
      status);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const alias = form.elements.namedItem("alias").value.trim();
      const version = Number(form.elements.namedItem("version").value);
      const reason = form.elements.namedItem("reason").value.trim() || null;
      if (!confirm(`Point alias '${alias}' of ${name} at v${version}? Predictors that follow ${name}@${alias} switch to it.`)) return;
      try {
        await api(`models/${name}/aliases/${alias}`, { method: "PUT", body: { version, reason } });
        await refresh();
      } catch (err) {
        replace(status, errorBox(err));
      }
    });
    return form;
  }

  // One row of named features to the predictor's POST /predict/{model}, through the API's
  // /ui/predict/ (services/api/dashboard.py), and the answer drawn.
  // {form, targets(aliases, versions)}: the second refills the model choice after a promotion.
  function predictForm(name, latest) {
    const sig = latest.signature || {};
    if (sig.kind && sig.kind !== "table") {
      const note = h("p", { class: "muted" }, `${name} takes ${sig.kind} inputs, not rows of named features: use POST /v2/models/${name}/infer.`);
      return { form: note, targets: () => {} };
    }
    const features = sig.feature_names || [];
    const out = h("div", { id: "prediction", class: "wide", "aria-live": "polite" });
    const select = h("select", { name: "target" });
    const targets = (aliases, versions) => {
      const was = select.value;
      const choices = [["", `latest (v${latest.version})`], ...aliases.map((a) => [`@${a.alias}`, `${a.alias} (v${a.version})`]),
        ...versions.map((v) => [`/versions/${v.version}`, `v${v.version}`])];
      select.replaceChildren(...choices.map(([v, t]) => h("option", { value: v }, t)));
      if (choices.some(([v]) => v === was)) select.value = was;
    };
    const form = h("form", { id: "predict-form", class: "grid" },
      h("label", { class: "wide" }, "Model ", select),
      features.map((f) => h("label", {}, f, h("input", { name: f, "data-feature": f, type: "number", step: "any", required: true }))),
      h("div", { class: "wide" }, h("button", { type: "submit" }, "Predict")),
      out);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const row = {};
      for (const f of features) row[f] = Number(form.elements.namedItem(f).value);
      const target = form.elements.namedItem("target").value;
            replace(out, "predicting…");
      try {
        const answer = await api(`ui/predict/${name}${target}`, { method: "POST", body: { rows: [row] } });
        const pred = answer.predictions[0];
        const head = h("p", { class: "answer" },
          `${answer.model_name} v${answer.model_version} (${answer.provider}): `,
          "label" in pred ? h("strong", { id: "predicted-label" }, String(pred.label)) : h("strong", { id: "predicted-value" }, fmt(pred.value)));
        const chart = "probabilities" in pred
          ? KilnCharts.bars({ items: Object.entries(pred.probabilities).map(([label, value]) => ({ label, value, strong: String(label) === String(pred.label) })) })
          : null;
        replace(out, head, chart);
      } catch (err) {
        replace(out, errorBox(err));
      }
    });
    return { form, targets };
  }

  function confusion(folds, which) {
    const chosen = which === "all" ? folds : folds.filter((f) => String(f.fold) === which);
    let sum = null;
    for (const f of chosen) {
      const m = f.metrics.confusion_matrix;
      if (!Array.isArray(m)) continue;
      sum = sum ? sum.map((row, i) => row.map((c, j) => c + m[i][j])) : m.map((row) => [...row]);
    }
    return sum;
  }

  async function versionPage(p, name, number) {
    const [v, lineage] = await Promise.all([api(`models/${name}/versions/${number}`), api(`models/${name}/versions/${number}/lineage`)]);
    const sig = v.signature || {};
    const labels = sig.class_labels || [];
    const heat = h("div", { id: "heatmap" });
    const drawHeat = (which) => {
      const m = confusion(v.folds, which);
      replace(heat, m
        ? KilnCharts.heatmap({ title: which === "all" ? `all ${v.folds.length} folds (validation rows)` : `fold ${which}`, matrix: m, labels })
        : h("p", { class: "muted" }, "No confusion matrix: a regression model."));
    };
    const picker = h("select", { id: "heatmap-fold", onchange: (ev) => drawHeat(ev.target.value) },
      h("option", { value: "all" }, "all folds (sum)"), v.folds.map((f) => h("option", { value: String(f.fold) }, `fold ${f.fold}`)));
    const parity = v.parity || {};
    // A file of this version's, fetched with the key (a plain link would carry none).
    const blobUrl = async (path) => {
      const key = sessionStorage.getItem(KEY);
      const res = await fetch(`${BASE}models/${name}/versions/${number}/${path}`, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
      if (!res.ok) { alert(`${res.status}: ${path} could not be fetched`); return null; }
      return URL.createObjectURL(await res.blob());
    };
    const download = h("button", {
      type: "button",
      onclick: async () => {
        const url = await blobUrl("artifacts/onnx");
        if (!url) return;
        const a = h("a", { href: url, download: `${name}-v${number}.onnx` });
        a.click();
        setTimeout(() => URL.revokeObjectURL(url), 1000);
      },
    }, "Download ONNX");
    // The evaluation report: one self-contained HTML file, opened in a tab of its own.
    const report = v.artifacts.report
      ? h("button", {
        type: "button",
        id: "open-report",
        onclick: async () => {
          const url = await blobUrl("report.html");
          if (url) window.open(url, "_blank");
        },
      }, "Open evaluation report")
      : h("p", { class: "muted" }, `No evaluation report: this version was registered before reports. kiln models report ${name} ${number} --write asks a worker for one.`);
    mount(
      h("h1", {}, link(`#/models/${name}`, name), ` v${v.version}`),
      section("Version", kv([
        ["aliases", v.aliases.length ? v.aliases.map((a) => h("span", { class: "alias" }, a)) : "–"],
        ["description", v.description || "–"],
        ["tags", Object.entries(v.tags).map(([k, t]) => `${k}=${t}`).join(", ") || "–"],
        ["created", when(v.created_at)],
        ["archived", v.archived_at ? when(v.archived_at) : "no"],
        ["trained on", v.device],
        ["job", link(`#/jobs/${v.job_id}`, v.job_id)],
      ])),
      h("div", { class: "grid2" },
      v.metrics_on === "training_rows"
        ? section("Metrics on the training rows (no cross-validation)",
          h("p", { class: "muted" }, "The spec asked for no cross-validation: these are the model's scores on the rows it was trained on, not an estimate for new rows."),
          kv(Object.entries(v.metrics).map(([k, x]) => [k, fmt(x.mean)])))
        : section("Metrics over the folds", foldTable(v.folds, v.metrics),
        v.test_metrics ? h("div", {}, h("h3", {}, "Held-out test rows"), kv(Object.entries(v.test_metrics).filter(([, x]) => typeof x === "number").map(([k, x]) => [k, fmt(x)]))) : null),
      section("Confusion matrix", h("p", {}, h("label", {}, "Show ", picker)), heat)),
      h("div", { class: "grid2" },
      section("Parity (ONNX Runtime against Keras)", kv([
        ["passed", h("span", { class: parity.passed ? "ok" : "error", id: "parity-passed" }, parity.passed ? "yes" : "no")],
        ...Object.entries(parity).filter(([k]) => k !== "passed").map(([k, x]) => [k, fmt(x)]),
      ])),
      section("Signature",
        table(["", "name", "datatype", "shape"], [
          ...(sig.inputs || []).map((t) => ["input", t.name, t.datatype, JSON.stringify(t.shape)]),
          ...(sig.outputs || []).map((t) => ["output", t.name, t.datatype, JSON.stringify(t.shape)]),
        ], { class: "signature" }),
        kv([
          ["kind", sig.kind || "–"], ["task", sig.task || "–"], ["target", sig.target || "–"],
          ["classes", labels.length ? labels.join(", ") : "–"],
          ["features", (sig.feature_names || []).join(", ") || "–"],
        ])),
      ),
      h("div", { class: "grid2" },
      section("Lineage", kv([
        ["job", h("span", {}, link(`#/jobs/${lineage.job.id}`, short(lineage.job.id)), " ", badge(lineage.job.state), ` attempt ${lineage.job.attempt}, ${lineage.job.worker || "–"}`)],
        ["dataset", `${lineage.dataset.name} (${lineage.dataset.source}, ${lineage.dataset.kind}, shape ${JSON.stringify(lineage.dataset.shape)}, target ${lineage.dataset.target})`],
        ["dataset sha256", h("code", {}, lineage.dataset.sha256 || "–")],
        ["seed", lineage.seed ?? "–"],
        ["retrained from", lineage.retrained_from ? link(`#/models/${lineage.retrained_from.model_name}/versions/${lineage.retrained_from.version}`, `${lineage.retrained_from.model_name} v${lineage.retrained_from.version}`) : "–"],
        ["libraries", Object.entries(lineage.library_versions).map(([k, x]) => `${k} ${x}`).join(", ")],
        ["device", lineage.device],
      ]), h("details", {}, h("summary", {}, "Spec"), h("pre", {}, JSON.stringify(lineage.spec, null, 2)))),
      section("Artifacts",
        table(["artifact", "sha256", "size"], Object.entries(v.artifacts).map(([k, a]) => [k, h("code", {}, a.sha256 || "–"), a.size_bytes === null || a.size_bytes === undefined ? "–" : `${a.size_bytes} B`]), { class: "artifacts" }),
        v.artifacts.onnx ? download : null, " ", report)),
    );
    drawHeat("all");
  }

  // Whether a difference from the baseline is an improvement: lower is better for losses and errors.
  function better(metric, diff) {
    if (!diff) return "";
    const lower = /loss|error|mse|mae/.test(metric);
    return (diff < 0) === lower ? "better" : "worse";
  }

  async function comparePage(p, name, list) {
    const cmp = await api(`models/${name}/compare?versions=${encodeURIComponent(list)}`);
    const rows = Object.entries(cmp.metrics).map(([metric, entries]) => [
      metric,
      ...entries.map((e) => {
        const diff = e.diff_from_baseline;
        return h("td", { class: "cmp" },
          e.mean === null ? "–" : `${num4(e.mean)} ± ${num4(e.std)}`,
          diff === null || diff === undefined || e.version === cmp.baseline ? null
            : h("span", { class: `diff ${better(metric, diff)}` }, ` (${diff > 0 ? "+" : ""}${num4(diff)})`),
          h("div", { class: "muted small" }, e.folds.map(num4).join(" · ")));
      }),
    ]);
    mount(
      h("h1", {}, "Compare ", link(`#/models/${name}`, name), " ", cmp.versions.map((n) => `v${n}`).join(" · ")),
      section(`Mean ± std over the folds; in brackets the difference from v${cmp.baseline}, then each fold`,
        table(["metric", ...cmp.versions.map((n) => link(`#/models/${name}/versions/${n}`, `v${n}${n === cmp.baseline ? " (baseline)" : ""}`))], rows, { class: "compare" })),
    );
  }

  // ---- searches ------------------------------------------------------------------------------
  function searchCounts(s) {
    return Object.entries(s.counts).map(([k, n]) => `${n} ${k}`).join(", ") || "–";
  }

  async function searchesPage(p) {
    const list = h("div", { id: "searches" }, h("p", { class: "muted" }, "loading…"));
    mount(h("h1", {}, "Searches"),
      h("p", { class: "muted" }, "Start one with POST /searches or kiln searches submit (README: Searching the model space)."),
      section("All searches", list));
    await p.every(2000, async () => {
      const page = await api("searches?limit=50");
      replace(list, page.items.length
        ? table(["search", "model", "state", "trials", "objective", "best", "version"],
          page.items.map((s) => [
            link(`#/searches/${s.id}`, short(s.id), { class: "search-link", title: s.id }),
            link(`#/models/${s.model_name}`, s.model_name),
            badge(s.state),
            searchCounts(s),
            `${s.objective.metric} (${s.objective.direction})`,
            s.best_trial ?? "–",
            s.refit && s.refit.model_version ? link(`#/models/${s.model_name}/versions/${s.refit.model_version}`, `v${s.refit.model_version}`) : "–",
          ]), { class: "searches" })
        : h("p", { class: "muted" }, "No searches yet."));
      return true;
    });
  }

  async function searchPage(p, id) {
    const body = h("div", {}, h("p", { class: "muted" }, "loading…"));
    mount(h("h1", {}, "Search ", h("code", {}, short(id))), body);
    await p.every(2000, async () => {
      const s = await api(`searches/${id}`);
      const metric = s.objective.metric;
      const params = (t) => Object.entries(t.params || {}).map(([k, v]) => `${k}=${typeof v === "number" ? fmt(v) : v}`).join(", ");
      const score = (t) => {
        const m = (t.metrics || {})[metric];
        return m ? `${num4(m.mean)} ± ${num4(m.std)}` : "–";
      };
      replace(body,
        section("Search", kv([
          ["model", link(`#/models/${s.model_name}`, s.model_name)],
          ["state", h("span", {}, badge(s.state), s.reason ? ` ${s.reason}` : "")],
          ["trials", `${searchCounts(s)} of a budget of ${s.budget.trials} (${s.budget.parallel} at once)`],
          ["objective", `${metric} (${s.objective.direction})`],
          ["fold fits", s.fold_fits],
          ["folds sha256", h("code", {}, s.folds_sha256 || "–")],
          ["refits", s.refits.length ? s.refits.map((r) => h("span", { class: "refit" }, `trial ${r.trial}: `, badge(r.state),
            r.model_version ? h("span", {}, " ", link(`#/models/${s.model_name}/versions/${r.model_version}`, `v${r.model_version}`)) : "", " ")) : "–"],
        ])),
        section("Leaderboard",
          table(["#", "trial", "state", `${metric} mean ± std`, "folds", "parameters", "time"],
            s.leaderboard.map((t, i) => [
              i + 1,
              link(`#/jobs/${t.job_id}`, String(t.trial)),
              h("span", {}, badge(t.state), t.reason ? h("span", { class: "muted" }, ` ${t.reason}`) : ""),
              score(t),
              t.folds.map((f) => fmt((f.metrics || {})[metric])).join(" "),
              params(t),
              t.seconds === null || t.seconds === undefined ? "–" : `${fmt(t.seconds)} s`,
            ]), { class: "leaderboard" })));
      return !["succeeded", "failed", "cancelled"].includes(s.state) || s.refits.some((r) => !["succeeded", "failed", "cancelled"].includes(r.state));
    });
  }

  // ---- router ------------------------------------------------------------------------------
  const ROUTES = [
    [/^#?\/?$/, jobsPage, "jobs"],
    [/^#\/jobs$/, jobsPage, "jobs"],
    [/^#\/jobs\/([^/]+)$/, jobPage, "jobs"],
    [/^#\/datasets$/, datasetsPage, "datasets"],
    [/^#\/searches$/, searchesPage, "searches"],
    [/^#\/searches\/([^/]+)$/, searchPage, "searches"],
    [/^#\/models$/, modelsPage, "models"],
    [/^#\/models\/([^/]+)$/, modelPage, "models"],
    [/^#\/models\/([^/]+)\/versions\/(\d+)$/, versionPage, "models"],
    [/^#\/models\/([^/]+)\/compare\/([\d,]+)$/, comparePage, "models"],
  ];

  async function route() {
    const p = newPage();
    const hash = location.hash || "#/";
    for (const [pattern, render, nav] of ROUTES) {
      const m = hash.match(pattern);
      if (!m) continue;
      document.querySelectorAll("nav a[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
      try {
        await render(p, ...m.slice(1).map(decodeURIComponent));
      } catch (err) {
        if (p.alive) mount(errorBox(err));
      }
      return;
    }
    mount(h("h1", {}, "Not found"), h("p", {}, link("#/", "Back to the jobs")));
  }

  document.getElementById("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showKeyState();
  });
  window.addEventListener("hashchange", route);
  showKeyState();
  route();
})();
