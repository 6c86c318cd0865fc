"""all-MiniLM-L6-v2 in plain torch: the bundled weights, its own tokenizer, mean pooling.

The model is a 6-layer BERT encoder (sentence-transformers' ``Transformer`` → mean
``Pooling`` → ``Normalize``). Loading it through sentence-transformers imports scipy,
scikit-learn, pandas and sympy as well, seconds of CPU before the first text, paid by
every embedding actor of an ingest run and every replica that starts. This module needs
torch, ``tokenizers`` and ``safetensors`` only (first-vector times in
docs/performance.md). Its vectors match
sentence-transformers' (``tests/unit/rag/test_minilm.py``).

Texts are tokenized once, sorted by token count and cut into batches of similar
length, so a batch pads little; pooling and normalisation run in float32 whatever the
model's precision, so a bfloat16 model still gives unit vectors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - torch's own convention
from safetensors.torch import load_file
from tokenizers import Tokenizer

from rag.tokens import load_token_counter

Vectors = npt.NDArray[np.float32]


def _config(path: Path) -> dict[str, Any]:
    """Read and check the model's configuration: what this encoder implements, or a clear error."""
    config: dict[str, Any] = json.loads((path / "config.json").read_text())
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    window = json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"]
    problems = [
        f"{key}={config.get(key)!r}" for key, wanted in (
            ("model_type", "bert"), ("hidden_act", "gelu"),
            ("position_embedding_type", "absolute"))
        if config.get(key, wanted) != wanted
    ]
    if not pooling.get("pooling_mode_mean_tokens") or any(
            value for key, value in pooling.items()
            if key.startswith("pooling_mode_") and key != "pooling_mode_mean_tokens"):
        problems.append("pooling is not mean-of-tokens")
    if problems:
        raise ValueError(f"{path} is not a mean-pooled BERT encoder: {', '.join(problems)}")
    return {**config, "window": int(window)}


class MiniLM:
    """Sentence embeddings from a mean-pooled BERT checkpoint in sentence-transformers layout."""

    def __init__(self, path: Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
        config = _config(path)
        self.device = torch.device(device)
        self.dtype = dtype
        self.dimension = int(config["hidden_size"])
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.window = config["window"]
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()  # batches are padded here, to their longest text
        self.tokenizer.enable_truncation(self.window)
        self.count_tokens = load_token_counter(path)  # word pieces, untruncated
        weights = load_file(str(path / "model.safetensors"), device=str(self.device))

        def w(name: str) -> torch.Tensor:
            return weights[name].to(dtype)

        self.word = w("embeddings.word_embeddings.weight")
        # every text is one segment: the type-0 row is added to every position
        self.position = w("embeddings.position_embeddings.weight") + w(
            "embeddings.token_type_embeddings.weight")[0]
        self.norm = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            attention = [f"{p}attention.self.{name}" for name in ("query", "key", "value")]
            self.layers.append((
                torch.cat([w(f"{a}.weight") for a in attention]),  # one GEMM for Q, K and V
                torch.cat([w(f"{a}.bias") for a in attention]),
                *(w(f"{p}{name}.{part}") for name in (
                    "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
                    "output.dense", "output.LayerNorm") for part in ("weight", "bias")),
            ))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Return the last hidden states ``(batch, length, dimension)`` of padded ``ids``."""
        batch, length = ids.shape
        width, heads = self.dimension, self.heads
        x = F.embedding(ids, self.word) + self.position[:length]
        x = F.layer_norm(x, (width,), *self.norm, eps=self.eps)
        attend = mask[:, None, None, :]  # keys that are text, not padding
        for (qkv_w, qkv_b, out_w, out_b, norm1_w, norm1_b, up_w, up_b, down_w, down_b,
             norm2_w, norm2_b) in self.layers:
            q, k, v = (F.linear(x, qkv_w, qkv_b).view(batch, length, 3, heads, width // heads)
                       .permute(2, 0, 3, 1, 4))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(batch, length, width)
            x = F.layer_norm(x + F.linear(context, out_w, out_b), (width,), norm1_w, norm1_b,
                             eps=self.eps)
            hidden = F.gelu(F.linear(x, up_w, up_b))
            x = F.layer_norm(x + F.linear(hidden, down_w, down_b), (width,), norm2_w, norm2_b,
                             eps=self.eps)
        return x

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Vectors:
        """Return ``(len(texts), dimension)`` float32 unit vectors, in the order of ``texts``."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([str(t).strip() for t in texts])
        lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
        order = np.argsort(-lengths, kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                sizes = lengths[rows]
                ids = np.zeros((len(rows), int(sizes[0])), dtype=np.int64)
                for row, i in enumerate(rows):
                    ids[row, :sizes[row]] = encodings[i].ids
                mask = torch.from_numpy(np.arange(ids.shape[1]) < sizes[:, None]).to(self.device)
                hidden = self.forward(torch.from_numpy(ids).to(self.device), mask).float()
                weights = mask.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
                out[rows] = F.normalize(pooled, dim=1).cpu().numpy()
        return out
