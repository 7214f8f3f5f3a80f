// The scoring page's script (/static/score.js): every change is posted at once, and the server does the
// read-modify-write under a file lock. Each write carries the server's token (from the page's
// <meta name="molt-token">) in X-Molt-Token: a page of another origin cannot read it, so it cannot write.
const base = document.getElementById("scoring").dataset.apiBase;
const token = document.querySelector('meta[name="molt-token"]').content;
const headers = {"Content-Type": "application/json", "X-Molt-Token": token};

async function post(path, body, status) {
  status.classList.remove("error");
  status.textContent = "saving…";
  try {
    const r = await fetch(base + path, {method: "POST", headers: headers, body: JSON.stringify(body)});
    const data = await r.json();
    if (!r.ok) throw new Error(data.error || r.statusText);
    status.textContent = "saved " + new Date().toLocaleTimeString();
  } catch (e) {
    status.classList.add("error");
    status.textContent = "not saved: " + e.message;
  }
}

// Notes are saved 0.4 s after the last keystroke; one still waiting when the tab closes goes out with
// keepalive, which outlives the page (sendBeacon cannot carry the token header).
const pendingNotes = new Map();
window.addEventListener("pagehide", () => {
  for (const [id, note] of pendingNotes) {
    fetch(base + "/score", {method: "POST", headers: headers, body: JSON.stringify({answer_id: id, note: note}), keepalive: true});
  }
  pendingNotes.clear();
});

for (const card of document.querySelectorAll(".answer[data-answer]")) {
  const id = card.dataset.answer;
  const status = card.querySelector(".scorer .status");
  for (const sel of card.querySelectorAll("select[data-dim]")) {
    sel.addEventListener("change", () => post("/score", {answer_id: id, dim: sel.dataset.dim, value: sel.value === "" ? null : Number(sel.value)}, status));
  }
  const note = card.querySelector(".note-input");
  let timer = null;
  const saveNote = () => { clearTimeout(timer); timer = null; pendingNotes.delete(id); post("/score", {answer_id: id, note: note.value}, status); };
  note.addEventListener("input", () => { clearTimeout(timer); pendingNotes.set(id, note.value); timer = setTimeout(saveNote, 400); });
  note.addEventListener("blur", () => { if (timer) saveNote(); });
  const chosen = card.querySelector(".chosen-input");
  card.querySelector(".reject-button").addEventListener("click", () => post("/reject", {answer_id: id, chosen: chosen.value}, card.querySelector(".pair-status")));
}
