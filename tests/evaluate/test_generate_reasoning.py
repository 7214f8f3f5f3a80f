"""A reasoning block before the answer (Qwen3's `<think>...</think>`) is kept apart from the scored answer."""

from molting.evaluate.generate import split_reasoning


def test_an_empty_block_is_dropped_from_the_answer():
    assert split_reasoning("<think>\n\n</think>\n\nSou o Cláudio.") == ("", "Sou o Cláudio.")


def test_reasoning_is_kept_apart():
    assert split_reasoning(" <think>\nO usuário pergunta.\n</think>\n\nOi! ") == ("O usuário pergunta.", "Oi!")


def test_text_without_a_closed_block_is_all_answer():
    assert split_reasoning("Oi, <think> é uma tag.") == (None, "Oi, <think> é uma tag.")
    assert split_reasoning("<think>\nraciocínio cortado em max_new_tokens") == (
        None,
        "<think>\nraciocínio cortado em max_new_tokens",
    )
