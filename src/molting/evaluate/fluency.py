"""Fluency: whether a real language model finds an answer's word order meaningful.

Word salad made of the card's own words ("Não nem. Quero entender o tipo de cortar a qualidade. Pro,
direto, porque reproduzir…") passes every deterministic detector: it is Portuguese, names the right people,
ends with a full stop. A pretrained model is not fooled. Each answer is scored under a reference model by
its mean negative log-likelihood per token (NLL, in nats), conditioned on the card's one-line summary and
the question:

    <identity.summary>\n\nPergunta: <question>\nResposta: <answer>

The NLL alone separates badly: on the labelled set under google/gemma-3-270m (the default reference, the
molting[gemma] extra) fluent answers score 2.1–4.9 and hand-written salad 4.0–6.4, because rare words
(names, the stack, English terms) cost as much as broken grammar. So each answer is also scored with its
words shuffled (two fixed shuffles, averaged), and the figure used is their ratio,

    order_ratio = NLL(answer) / NLL(answer with its words shuffled)

the share of the answer's surprise that word order does not explain. The same words are in both, so rare
words cancel out. Fluent prose, right or wrong, sits at 0.31–0.66 (shuffling its words costs the model a
lot); word salad at 0.64–0.88 (its order was already no better than random); a repetition loop at 1.0.

The ranges overlap at 0.64–0.66: salad that opens like a sentence ("Eu sou uma IA que o João Figueiredo da
Softtor trabalha no parceiro, e a pesquisa confesso o CRM…", 0.636) sits below fluent answers with rare
words (0.664). Its second half gives it away: each word's NLL is summed from its tokens, in place and in
the shuffles, so the same ratio can be read over the answer's second half of words alone (0.85 for that
answer, above every answer labelled 10/10). The figure the thresholds apply to is the **order
score**,

    order_score = (order_ratio + HALF_WEIGHT · half_ratio) / (1 + HALF_WEIGHT),  HALF_WEIGHT = 0.2

The weight was chosen on the labelled set's first 163 answers (tests/fixtures/labelled; `python
bench/agreement.py --weights` prints the sweep): with the order ratio alone (weight 0) the lowest word-salad
answer sits below three answers labelled 10/10; from 0.05 to 0.4 every word-salad answer is above every one
of them, the widest gap (0.0185) at 0.2. Leaving each of those 66 answers out in turn, and choosing weight
and threshold on the rest, misclassifies one: L125 itself, the only answer that needs the second half. On
all 181 answers (with the 18 written after the choice) the widest gap is at 0.25 (0.0148; 0.0133 at 0.2)
and leave-one-out misclassifies none. The set is small: read it as a fit, not as
proof. Thresholds calibrated on that set (`calibrate`, run by `python bench/agreement.py --calibrate`) turn
the score into caps (molting.evaluate.rubric): at or above `drift` the answer drifts into nonsense (D5 ≤ 1,
D3 ≤ 1); at or above `salad` it is word salad throughout (D5 0, D3 ≤ 1, D2 0: a fact's words inside salad
are not a statement). Thresholds belong to one reference model and one prompt: a calibration file names
both, and `load_calibration` refuses it for another model.

Answers are scored in batches of similar length, and each text is cached in the molting cache by reference
model and prompt (fluency/<model>.json), so scoring the same answers again costs nothing. Reached through
`FluencySettings` (molt.yaml `fluency:`), `ReferenceModel` and `fluency_for_rows`.
"""

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from molting.errors import UserError
from molting.io import read_json, write_json_atomic
from molting.models.builtin_base import cache_dir

DEFAULT_REFERENCE = "packaged:gemma-3-270m"
SHIPPED_CALIBRATION = Path(__file__).parent / "fluency_calibration.json"
PROMPT_VERSION = 1  # bump when `prompt_for` changes: thresholds and cached figures depend on it
SIGNAL_VERSION = 2  # what the thresholds apply to: 1 the order ratio, 2 the order score (with the second half)
HALF_WEIGHT = 0.2  # the second half's weight in the order score (see above)
MIN_TOKENS = 8  # fewer answer tokens than this: the mean is too noisy to judge (short answers are D5's own)
SHUFFLES = (0, 1)  # the seeds of the word shuffles each answer is compared with
# "Question"/"Answer" in the card's language: the answer reads as a reply, as a reader would take it.
QA_LABELS = {"pt": ("Pergunta", "Resposta"), "en": ("Question", "Answer"), "es": ("Pregunta", "Respuesta")}


@dataclass(frozen=True)
class Nll:
    """One text under the reference model."""

    nll: float | None  # mean negative log-likelihood per answer token, nats; None below MIN_TOKENS
    tokens: int  # answer tokens scored
    # the NLL of each white-space-separated word (the sum of its tokens'), in the text's order; None when
    # the tokenizer gives no character offsets
    words: tuple[float, ...] | None = None

    def as_dict(self) -> dict:
        return {"nll": self.nll, "tokens": self.tokens, "words": None if self.words is None else list(self.words)}


@dataclass(frozen=True)
class Fluency:
    """One answer: its NLL, its shuffled words' NLL, and their ratio (None when too short to judge)."""

    nll: float | None
    shuffled_nll: float | None
    tokens: int
    # the NLL summed over the second half of the answer's words, in place and (mean of) in the shuffles
    half_nll: float | None = None
    shuffled_half_nll: float | None = None

    @property
    def order_ratio(self) -> float | None:
        if self.nll is None or not self.shuffled_nll:
            return None
        return round(self.nll / self.shuffled_nll, 4)

    @classmethod
    def from_figures(cls, figures: dict) -> "Fluency":
        """From tests/fixtures/labelled/fluency.json's entries (bench/agreement.py writes them)."""
        keys = ("nll", "shuffled_nll", "tokens", "half_nll", "shuffled_half_nll")
        return cls(*(figures.get(k) for k in keys))

    @property
    def half_ratio(self) -> float | None:
        if self.order_ratio is None or self.half_nll is None or not self.shuffled_half_nll:
            return None
        return round(self.half_nll / self.shuffled_half_nll, 4)

    @property
    def order_score(self) -> float | None:
        """What the thresholds apply to: the order ratio, weighted with the second half's (module doc); the
        order ratio alone when the second half could not be read."""
        return self.order_score_with(HALF_WEIGHT)

    def order_score_with(self, weight: float) -> float | None:
        """The order score with another weight on the second half (bench/agreement.py --weights)."""
        whole, half = self.order_ratio, self.half_ratio
        if whole is None or half is None:
            return whole
        return round((whole + weight * half) / (1 + weight), 4)

    def as_dict(self) -> dict:
        return {
            "nll": self.nll,
            "shuffled_nll": self.shuffled_nll,
            "order_ratio": self.order_ratio,
            "half_ratio": self.half_ratio,
            "order_score": self.order_score,
            "tokens": self.tokens,
        }


def word_spans(text: str) -> list[tuple[int, int]]:
    """Where each white-space-separated word of `text` starts and ends."""
    spans, pos = [], 0
    for word in text.split():
        start = text.index(word, pos)
        spans.append((start, start + len(word)))
        pos = start + len(word)
    return spans


def token_words(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """For each token (its character offsets), the word its characters fall in; a token of white space
    alone belongs to the word after it (or the last word)."""
    words, word = [], 0
    for start, _end in offsets:
        while word < len(spans) - 1 and spans[word][1] <= start:
            word += 1
        words.append(word)
    return words


def per_word(values: list[float], words: list[int], count: int) -> list[float]:
    """Each token's value added to its word's (`words` from `token_words`), for `count` words."""
    sums = [0.0] * count
    for value, word in zip(values, words, strict=True):
        sums[word] += value
    return sums


def permutation(words: int, seed: int) -> list[int]:
    """The word order of `shuffled(answer, seed)`: position j holds the answer's word permutation[j]."""
    order = list(range(words))
    random.Random(seed).shuffle(order)
    return order


def shuffled(answer: str, seed: int) -> str:
    """The answer's words (split on white space, punctuation kept on its word) in a fixed random order."""
    words = answer.split()
    return " ".join(words[i] for i in permutation(len(words), seed))


@dataclass(frozen=True)
class Calibration:
    """Thresholds on the order ratio, for one reference model and prompt version."""

    model: str  # the base_model spec it was calibrated with
    identity: str  # what the weights are (ReferenceModel.identity); thresholds hold for these weights only
    prompt_version: int
    drift: float  # at or above: the answer drifts into nonsense
    salad: float  # at or above: word salad throughout
    calibrated_on: str  # the labelled set and its size
    agreement: dict  # D5 exact agreement on that set, with these thresholds
    signal_version: int = 1  # SIGNAL_VERSION when calibrated (files without it: the order ratio alone)

    def level(self, fluency: "Fluency | None") -> str | None:
        """ "salad", "drift" or None."""
        ratio = fluency.order_score if fluency is not None else None
        if ratio is None:
            return None
        if ratio >= self.salad:
            return "salad"
        if ratio >= self.drift:
            return "drift"
        return None


def prompt_for(summary: str, question: str, language: str) -> str:
    q, a = QA_LABELS.get(language, QA_LABELS["en"])
    return f"{summary.strip()}\n\n{q}: {question.strip()}\n{a}:"


def model_identity(path: str) -> str:
    """What the reference weights are: a converted GGUF's sha256, else the sha256 of the weight files'
    names and sizes with config.json (cheap, and changes with any re-download of other weights), else the
    hub id as given."""
    folder = Path(path)
    record = folder / "molting_gguf.json"
    if record.is_file():
        return "gguf-sha256:" + json.loads(record.read_text())["sha256"]
    if folder.is_dir():
        h = hashlib.sha256()
        for f in sorted(folder.glob("*.safetensors")) + [folder / "config.json"]:
            if f.is_file():
                h.update(f"{f.name}:{f.stat().st_size}\n".encode())
                if f.suffix == ".json":
                    h.update(f.read_bytes())
        return "files-sha256:" + h.hexdigest()
    return "hub:" + path


class ReferenceModel:
    """A causal LM loaded once to score answers; `spec` is any base_model value (packaged:, a .gguf file,
    a folder, a hub id)."""

    def __init__(self, spec: str, batch_size: int = 8, threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from molting.models.resolve import resolve_base

        self.spec = spec
        path = resolve_base(spec)
        self.identity = model_identity(path)
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(threads)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        except OSError as e:
            raise UserError(f"fluency.model {spec!r}: could not load it ({e}).") from None
        self.softcap = getattr(self.model.config, "final_logit_softcapping", None)

    def _ids(self, prompt: str, answer: str) -> tuple[list[int], int, tuple[list[int], int] | None]:
        """The token ids of prompt + answer, where the answer starts, and each answer token's word
        (`token_words`) with the number of words (None without character offsets). Tokenized apart and
        joined, so the answer's tokens do not depend on how the prompt ends."""
        prompt_ids = self.tokenizer(prompt)["input_ids"]
        text = " " + answer.strip()
        try:
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = [tuple(o) for o in encoded["offset_mapping"]]
        except NotImplementedError:  # a slow (Python) tokenizer keeps no offsets
            encoded, offsets = self.tokenizer(text, add_special_tokens=False), None
        answer_ids = encoded["input_ids"]
        spans = word_spans(text)
        words = (token_words(offsets, spans), len(spans)) if offsets is not None and spans else None
        return prompt_ids + answer_ids, len(prompt_ids), words

    def score(self, pairs: list[tuple[str, str]], on_done=None) -> list[Nll]:
        """(prompt, text) pairs → their Nll, in order; `on_done(n)` after each batch."""
        import torch

        encoded = [self._ids(p, a) for p, a in pairs]
        order = sorted(range(len(pairs)), key=lambda i: len(encoded[i][0]))
        results: list[Nll | None] = [None] * len(pairs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        head = self.model.get_output_embeddings()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = max(len(encoded[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                seq = encoded[i][0]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with torch.no_grad():
                hidden = self.model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
                for row, i in enumerate(batch):
                    seq, answer_start, word_of = encoded[i]
                    n = len(seq) - answer_start
                    if n < 1:
                        results[i] = Nll(None, 0)
                        continue
                    # the logits at position t predict token t+1: only the answer's positions are projected
                    # onto the vocabulary (262,144 rows for Gemma), never the whole sequence
                    logits = head(hidden[row, answer_start - 1 : len(seq) - 1]).float()
                    if self.softcap:
                        logits = torch.tanh(logits / self.softcap) * self.softcap
                    targets = torch.tensor(seq[answer_start:])
                    each = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
                    nll = each.mean().item()
                    words = tuple(round(w, 4) for w in per_word(each.tolist(), *word_of)) if word_of else None
                    results[i] = Nll(round(nll, 4) if n >= MIN_TOKENS and math.isfinite(nll) else None, n, words)
            if on_done:
                on_done(len(batch))
        return results  # type: ignore[return-value]


class FluencyCache:
    """Results by reference model and (prompt, answer), kept in the molting cache between runs."""

    def __init__(self, identity: str):
        name = hashlib.sha256(f"{identity}|prompt-v{PROMPT_VERSION}".encode()).hexdigest()[:16]
        self.path = cache_dir() / "fluency" / f"{name}.json"
        try:
            self.entries: dict = read_json(self.path) if self.path.is_file() else {}
        except UserError:  # a damaged cache is recomputed, not trusted
            self.entries = {}
        self.changed = False

    @staticmethod
    def key(prompt: str, answer: str) -> str:
        return hashlib.sha256(f"{prompt}\x00{answer.strip()}".encode()).hexdigest()

    def get(self, prompt: str, answer: str) -> Nll | None:
        hit = self.entries.get(self.key(prompt, answer))
        if not hit or "words" not in hit:  # no entry, or one written before words were kept
            return None
        return Nll(hit["nll"], hit["tokens"], None if hit["words"] is None else tuple(hit["words"]))

    def put(self, prompt: str, answer: str, result: Nll) -> None:
        self.entries[self.key(prompt, answer)] = result.as_dict()
        self.changed = True

    def save(self) -> None:
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, self.entries)
            self.changed = False


def load_calibration(path: str | Path | None, identity: str | None = None) -> Calibration:
    """A calibration file (default: the shipped one, for the packaged Gemma 3 270M). With `identity`,
    refuses thresholds calibrated for other weights or another prompt."""
    path = Path(path) if path else SHIPPED_CALIBRATION
    try:
        data = read_json(path)
        if data is None:
            raise UserError("no such file")
        calibration = Calibration(**data)
    except (TypeError, UserError) as e:
        raise UserError(
            f"{path}: not a fluency calibration file ({e}). Write one with bench/agreement.py --calibrate."
        ) from None
    if calibration.signal_version != SIGNAL_VERSION:
        raise UserError(
            f"{path}: these fluency thresholds were calibrated for signal v{calibration.signal_version} (the "
            f"order ratio alone), not for molting's v{SIGNAL_VERSION} (the order score, with the answer's "
            "second half): calibrate again with python bench/agreement.py --calibrate --model MODEL --out FILE."
        )
    if identity is not None and (calibration.identity != identity or calibration.prompt_version != PROMPT_VERSION):
        raise UserError(
            f"{path}: these fluency thresholds were calibrated for {calibration.model} ({calibration.identity}, "
            f"prompt v{calibration.prompt_version}), not for this reference model ({identity}, prompt "
            f"v{PROMPT_VERSION}); thresholds of one model mean nothing for another. Calibrate for it: "
            "python bench/agreement.py --calibrate --model MODEL --out FILE, then set fluency.calibration: FILE "
            "in molt.yaml; or score without fluency (--no-fluency)."
        )
    return calibration


def save_calibration(path: str | Path, calibration: Calibration) -> None:
    write_json_atomic(path, asdict(calibration))


@dataclass
class FluencyCheck:
    """What `score_responses` needs: the figure per answer id, the thresholds, and where they came from."""

    by_answer: dict[str, Fluency]
    calibration: Calibration
    model: str
    seconds: float
    computed: int  # texts (answers and their shuffles) scored by the model now; the rest came from the cache

    def summary(self) -> dict:
        scored = [f.nll for f in self.by_answer.values() if f.nll is not None]
        ratios = [f.order_score for f in self.by_answer.values() if f.order_score is not None]
        return {
            "model": self.model,
            "identity": self.calibration.identity,
            "thresholds": {"drift": self.calibration.drift, "salad": self.calibration.salad},
            "calibrated_on": self.calibration.calibrated_on,
            "mean_nll": round(sum(scored) / len(scored), 4) if scored else None,
            "mean_order_score": round(sum(ratios) / len(ratios), 4) if ratios else None,
            "answers": len(self.by_answer),
            "computed": self.computed,
            "seconds": round(self.seconds, 2),
        }


def measure_fluency(
    pairs: list[tuple[str, str]],
    model_spec: str = DEFAULT_REFERENCE,
    batch_size: int = 8,
    show_progress: bool = True,
    reference: ReferenceModel | None = None,
) -> tuple[list[Fluency], str, int]:
    """(prompt, answer) pairs → (their Fluency, the reference model's identity, texts the model scored now).
    Cached texts are not scored again, and the model is loaded only when one is missing."""
    identity = reference.identity if reference else None
    if identity is None:
        from molting.models.resolve import resolve_base

        identity = model_identity(resolve_base(model_spec))
    cache = FluencyCache(identity)
    # every text to score: each answer as given, then with its words in each fixed shuffle
    texts = [(prompt, [answer, *(shuffled(answer, seed) for seed in SHUFFLES)]) for prompt, answer in pairs]
    known = {(prompt, t): None for prompt, variants in texts for t in variants}
    known = {pair: cache.get(*pair) for pair in known}
    missing = sorted(pair for pair, hit in known.items() if hit is None)
    if missing:
        from molting.progress import bar

        reference = reference or ReferenceModel(model_spec, batch_size)
        with bar(f"fluency under {model_spec}", len(missing), unit="texts", disable=not show_progress) as progress:
            scored = reference.score(missing, progress.advance)
        for pair, result in zip(missing, scored, strict=True):
            known[pair] = result
            cache.put(*pair, result)
        cache.save()
    out = []
    for prompt, (answer, *variants) in texts:
        plain = known[(prompt, answer)]
        shuffled_nlls = [known[(prompt, v)].nll for v in variants]
        mean = round(sum(shuffled_nlls) / len(shuffled_nlls), 4) if None not in shuffled_nlls else None
        half, shuffled_half = second_half(plain, [known[(prompt, v)] for v in variants])
        out.append(Fluency(plain.nll, mean, plain.tokens, half, shuffled_half))
    return out, identity, len(missing)


def second_half(plain: Nll, shuffles: list[Nll]) -> tuple[float | None, float | None]:
    """The NLL of the answer's second half of words in place, and the mean of the same words' NLL in the
    shuffles (`shuffles[k]` is the answer shuffled with SHUFFLES[k])."""
    if plain.words is None or any(s.words is None or len(s.words) != len(plain.words) for s in shuffles):
        return None, None
    n = len(plain.words)
    if n < 2:
        return None, None
    half = sum(plain.words[n // 2 :])
    moved = [
        sum(value for value, word in zip(s.words, permutation(n, seed), strict=True) if word >= n // 2)
        for s, seed in zip(shuffles, SHUFFLES, strict=True)
    ]
    return round(half, 4), round(sum(moved) / len(moved), 4)


def prepare_reference(model_spec: str, calibration_path: str | Path | None) -> Calibration:
    """Resolve the reference model (converting it once) and load its thresholds, before any answer is
    generated: a missing extra or a calibration for another model stops `molt eval` at once."""
    from molting.models.resolve import resolve_base

    try:
        path = resolve_base(model_spec)
    except UserError as e:
        raise UserError(
            f"fluency.model {model_spec!r}: {e} To score without the fluency pass, add --no-fluency (or set "
            "fluency.model: null in molt.yaml)."
        ) from None
    return load_calibration(calibration_path, model_identity(path))


def fluency_for_rows(
    rows: list[dict],
    answer_ids: list[str],
    questions: list[str],
    summary: str,
    language: str,
    model_spec: str = DEFAULT_REFERENCE,
    calibration_path: str | Path | None = None,
    batch_size: int = 8,
    show_progress: bool = True,
) -> FluencyCheck:
    """Every row's `response` under the reference model, conditioned on the question it answered
    (`questions`, one per row), with the thresholds calibrated for that model (refused for another)."""
    import time

    started = time.time()
    calibration = prepare_reference(model_spec, calibration_path)
    pairs = [(prompt_for(summary, q, language), r["response"]) for q, r in zip(questions, rows, strict=True)]
    measured, _, computed = measure_fluency(pairs, model_spec, batch_size, show_progress)
    by_answer = dict(zip(answer_ids, measured, strict=True))
    return FluencyCheck(by_answer, calibration, model_spec, time.time() - started, computed)
