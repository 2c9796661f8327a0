// callcenter dashboard, cache page: review the answers the LLM wrote (approve / edit / reject).
// Same admin Bearer token field as dashboard.js; the server checks it on every decision.
(function () {
  "use strict";
  const tokenField = document.getElementById("admin-token");
  function authHeaders() {
    const t = tokenField ? tokenField.value.trim() : "";
    return t ? { Authorization: "Bearer " + t } : {};
  }
  function toast(msg, bad) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = msg;
    el.className = bad ? "show bad" : "show";
    setTimeout(() => { el.className = ""; }, 4000);
  }
  async function explain(resp) {
    try { return (await resp.json()).error || resp.statusText; } catch (e) { return resp.statusText; }
  }
  async function decide(id, body) {
    const resp = await fetch("/api/cache/review/" + encodeURIComponent(id), {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
      body: JSON.stringify(body),
    });
    if (!resp.ok) {
      toast(resp.status + ": " + (await explain(resp)), true);
      return;
    }
    document.querySelectorAll('#pending tr[data-id="' + CSS.escape(id) + '"]').forEach((tr) => tr.remove());
    const count = document.getElementById("pending-count");
    if (count) count.textContent = String(Math.max(0, Number(count.textContent) - 1));
    toast(body.action === "reject" ? "rejected " + id : "approved " + id + (body.action === "edit" ? " (edited)" : ""));
  }
  document.querySelectorAll("button.review-approve").forEach((btn) => {
    btn.addEventListener("click", () => {
      const id = btn.dataset.id;
      const box = document.querySelector('textarea.review-answer[data-id="' + CSS.escape(id) + '"]');
      const text = box ? box.value.trim() : "";
      if (box && text !== box.dataset.original.trim()) {
        decide(id, { action: "edit", answer: text });
      } else {
        decide(id, { action: "approve" });
      }
    });
  });
  document.querySelectorAll("button.review-reject").forEach((btn) => {
    btn.addEventListener("click", () => decide(btn.dataset.id, { action: "reject" }));
  });
})();
