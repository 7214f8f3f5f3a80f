"""Training data: read and check data.jsonl, import chat exports, distil from a source model, curate,
write corrective data and preference pairs (`molt data …`, `molt augment`)."""
