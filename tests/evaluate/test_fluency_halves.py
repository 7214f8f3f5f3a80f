"""The order score's second half, without a model: tokens are summed into the words their characters fall
in, and the second half's words are found again in each shuffle."""

import pytest

from molting.errors import UserError
from molting.evaluate.fluency import (
    HALF_WEIGHT,
    SHUFFLES,
    Calibration,
    Fluency,
    Nll,
    load_calibration,
    per_word,
    permutation,
    second_half,
    shuffled,
    token_words,
    word_spans,
)


def test_each_token_counts_for_the_word_its_characters_fall_in():
    text = " O João,\n que é"
    spans = word_spans(text)
    assert [text[a:b] for a, b in spans] == ["O", "João,", "que", "é"]
    # " O" | " Jo" | "ão" | "," | "\n" (white space alone: the next word's) | " que" | " é"
    offsets = [(0, 2), (2, 5), (5, 7), (7, 8), (8, 9), (9, 13), (13, 15)]
    words = token_words(offsets, spans)
    assert words == [0, 1, 1, 1, 2, 2, 3]
    assert per_word([1.0, 2.0, 3.0, 0.5, 0.25, 4.0, 5.0], words, len(spans)) == [1.0, 5.5, 4.25, 5.0]


def test_the_second_half_is_the_same_words_in_place_and_in_each_shuffle():
    answer = "um dois três quatro cinco seis"
    words = answer.split()
    for seed in SHUFFLES:  # the permutation is the one `shuffled` applies
        assert shuffled(answer, seed).split() == [words[i] for i in permutation(len(words), seed)]
    in_place = Nll(3.0, 6, (1.0, 1.0, 1.0, 2.0, 3.0, 4.0))
    # in each shuffle, word i costs 10 + i wherever it landed
    shuffles = [Nll(5.0, 6, tuple(10.0 + i for i in permutation(6, seed))) for seed in SHUFFLES]
    half, moved = second_half(in_place, shuffles)
    assert half == 9.0  # words 3, 4, 5 in place
    assert moved == 13.0 + 14.0 + 15.0  # the same words in either shuffle


def test_the_order_score_weighs_the_second_half_in():
    fluent_start = Fluency(nll=4.0, shuffled_nll=6.4, tokens=30, half_nll=17.0, shuffled_half_nll=20.0)
    assert fluent_start.order_ratio == 0.625 and fluent_start.half_ratio == 0.85
    assert fluent_start.order_score == pytest.approx((0.625 + HALF_WEIGHT * 0.85) / (1 + HALF_WEIGHT), abs=1e-4)
    # a tokenizer without offsets: no second half, the order ratio alone
    assert Fluency(4.0, 6.4, 30).order_score == 0.625
    calibration = Calibration("m", "id", 1, drift=0.66, salad=0.66, calibrated_on="", agreement={}, signal_version=2)
    assert calibration.level(fluent_start) == "salad" and calibration.level(Fluency(4.0, 6.4, 30)) is None


def test_thresholds_for_the_order_ratio_alone_are_refused(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(
        '{"model": "m", "identity": "id", "prompt_version": 1, "drift": 0.66, "salad": 0.66, '
        '"calibrated_on": "x", "agreement": {}}'
    )
    with pytest.raises(UserError, match="signal v1"):
        load_calibration(path)
