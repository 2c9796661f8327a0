// callcenter dashboard: charts (uPlot, vendored) and admin actions (Bearer token from the field).
(function () {
  "use strict";
  const tokenField = document.getElementById("admin-token");
  if (tokenField) {
    tokenField.value = sessionStorage.getItem("cc-admin-token") || "";
    tokenField.addEventListener("change", () => sessionStorage.setItem("cc-admin-token", tokenField.value));
  }
  function authHeaders() {
    const t = tokenField ? tokenField.value.trim() : "";
    return t ? { Authorization: "Bearer " + t } : {};
  }
  function toast(msg, bad) {
    const el = document.getElementById("toast");
    el.textContent = msg;
    el.className = bad ? "show bad" : "show";
    setTimeout(() => { el.className = ""; }, 4000);
  }
  async function explain(resp) {
    try { return (await resp.json()).error || resp.statusText; } catch (e) { return resp.statusText; }
  }

  // ---- invalidate buttons ----
  document.querySelectorAll("button.invalidate").forEach((btn) => {
    btn.addEventListener("click", async () => {
      const id = btn.dataset.id;
      const resp = await fetch("/api/cache/" + encodeURIComponent(id), { method: "DELETE", headers: authHeaders() });
      if (resp.ok) {
        document.querySelectorAll('tr[data-id="' + CSS.escape(id) + '"]').forEach((tr) => tr.remove());
        toast("invalidated " + id);
      } else {
        toast(resp.status + ": " + (await explain(resp)), true);
      }
    });
  });

  // ---- warm upload ----
  const warm = document.getElementById("warm-form");
  if (warm) {
    warm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const resp = await fetch("/api/cache/warm", { method: "POST", headers: authHeaders(), body: new FormData(warm) });
      if (resp.ok) {
        const r = await resp.json();
        toast("stored " + r.stored + " of " + r.total);
        setTimeout(() => location.reload(), 800);
      } else {
        toast(resp.status + ": " + (await explain(resp)), true);
      }
    });
  }

  // ---- charts ----
  const dataEl = document.getElementById("series-data");
  if (!dataEl || typeof uPlot === "undefined") return;
  const s = JSON.parse(dataEl.textContent);
  const stages = ["eou_delay", "stt_delay", "llm_ttft", "tts_ttfb", "voice_to_voice"];
  const colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728"];
  // x range: from the first bucket (at least 1 h back) to now, so a single point is not stretched
  const x0 = Math.min(s.x.length ? s.x[0] - s.bucket_s : s.now, s.now - 3600);
  const x1 = s.now + s.bucket_s;
  function chart(id, series, data, axes, yRange) {
    const el = document.getElementById(id);
    if (!el) return;
    const opts = { width: el.clientWidth || 420, height: 220, series: [{}].concat(series),
                   scales: { x: { time: true, range: [x0, x1] }, y: yRange ? { range: yRange } : { auto: true },
                             calls: { auto: true } },
                   axes: axes || [{}, { size: 60 }] };
    if (!data[0].length) { el.textContent = "no finished calls in the last 24 h"; return; }
    new uPlot(opts, data, el);
  }
  for (const q of ["p50", "p95"]) {
    chart("chart-" + q, stages.map((st, i) => ({ label: st, stroke: colors[i], width: 2, points: { show: true } })),
          [s.x].concat(stages.map((st) => s[st + "_" + q])));
  }
  chart("chart-cache", [
    { label: "hit rate %", stroke: "#2ca02c", width: 2, points: { show: true } },
    { label: "calls/hour", stroke: "#1f77b4", width: 2, points: { show: true }, scale: "calls" },
  ], [s.x, s.cache_hit_rate.map((v) => (v === null ? null : v * 100)), s.calls_per_hour],
  [{}, { size: 50, label: "hit rate %" }, { scale: "calls", side: 1, size: 50, label: "calls/hour", grid: { show: false } }], [0, 100]);
})();
