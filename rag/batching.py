"""Step-level (continuous) batching for a local causal LM.

One scheduler thread owns the model. Requests wait in a queue; at every step boundary
the scheduler admits one waiting request (prefill, reusing the cached keys and values of
the fixed system-prompt prefix), hands out its first token at once, merges its KV cache
into the running batch (left-padded), and then runs one decode step for every active
sequence as a single batched forward. A sequence leaves the batch on EOS, at
``max_new_tokens``, or as soon as its consumer stops (``stop`` event or a closed
iterator), so a client that went away frees its row at the next step.

Decoding is greedy with the same repetition penalty as :class:`rag.generation.HFGenerator`
(``model.generate(do_sample=False, repetition_penalty=1.1)``), so a prompt gets the same
answer whether it runs alone or in a batch (tested against ``generate``).

A request may carry a :class:`rag.grounding.FigureGuard`: its greedy choice is then the
best of the top :data:`GUARD_CANDIDATES` tokens that keeps the answer's figures to the
evidence's (:func:`guarded_token`; the unbatched path uses the same function).

Only models whose KV cache is a plain :class:`transformers.DynamicCache` of full-attention
layers are batched this way (:func:`supports_batching`); others keep ``generate``.
"""

from __future__ import annotations

import collections
import copy
import inspect
import logging
import queue
import statistics
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.grounding import FigureGuard
from rag.torch_threads import use_torch_threads

log = logging.getLogger(__name__)

REPETITION_PENALTY = 1.1
MAX_PREFIXES = 4
GUARD_CANDIDATES = 16
_DONE = object()


class PieceTable:
    """The text each token id adds, cached; an end-of-sequence id ends the text (" ")."""

    def __init__(self, tokenizer: Any, eos_ids: set[int]) -> None:
        self._tokenizer = tokenizer
        self._pieces: dict[int, str] = dict.fromkeys(eos_ids, " ")

    def __call__(self, token: int) -> str:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._tokenizer.decode([token], skip_special_tokens=True)
            self._pieces[token] = piece
        return piece


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Return the token ids that end a generation (the model's, else the tokenizer's)."""
    eos = model.generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, list) else [eos])


def guarded_token(guard: FigureGuard, text: str, scores: Any, pieces: PieceTable) -> int:
    """Return the best-scoring token id that ``guard`` allows after ``text``.

    ``scores`` is one row of next-token scores. The top choice is checked first (it
    nearly always passes); otherwise the first allowed of the top
    :data:`GUARD_CANDIDATES`, or the top choice when none is (the post-check then
    handles that figure).
    """
    best = int(scores.argmax())
    if guard.allows(text, pieces(best)):
        return best
    candidates = [int(t) for t in scores.topk(GUARD_CANDIDATES).indices]
    return candidates[guard.choose(text, [pieces(t) for t in candidates])]


def supports_batching(model: Any) -> bool:
    """Return True when every layer of the model's cache is a full-attention DynamicLayer."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    config = model.config.get_text_config(decoder=True)
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    try:
        cache = DynamicCache(config=model.config)
    except Exception:  # an exotic cache layout: keep generate()
        return False
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def last_logits_only(model: Any) -> dict[str, int]:
    """Return the forward kwargs that make a prefill compute logits for its last position only.

    A prefill needs the next-token scores of the last prompt position alone; the LM head
    over every position is a vocabulary-sized matrix product per prompt token (about a
    fifth of a small model's prefill FLOPs, plus a ``(tokens, vocab)`` float tensor).
    Models whose ``forward`` has no ``logits_to_keep`` get no extra argument.
    """
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}


@dataclass
class _Request:
    """One generation: its prompt, limits, output queue and progress."""

    prompt_ids: list[int]
    max_new_tokens: int
    stop: threading.Event
    out: queue.SimpleQueue[object] = field(default_factory=queue.SimpleQueue)
    generated: list[int] = field(default_factory=list)
    emitted: str = ""
    text: str = ""  # everything generated so far, decoded
    prefix_len: int = 0
    guard: FigureGuard | None = None
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class _Prefix:
    """Cached keys and values of a prompt prefix (batch of one)."""

    ids: tuple[int, ...]
    keys: list[Any]
    values: list[Any]


class BatchScheduler:
    """Runs many greedy generations of one model as one batched forward per step.

    ``submit`` is thread-safe and returns a blocking iterator of text pieces; at most
    ``max_batch`` sequences decode together, the rest wait their turn.
    """

    def __init__(self, model: Any, tokenizer: Any, *, device: str = "cpu",
                 max_batch: int = 8, repetition_penalty: float = REPETITION_PENALTY,
                 threads: int | None = None) -> None:
        self.model = model
        self.threads = threads  # torch CPU threads of the scheduler thread
        try:  # the scheduler thread decodes while request threads encode: own copy
            self.tokenizer = copy.deepcopy(tokenizer)
        except Exception:  # not copyable: share it (decoding does not change its state)
            self.tokenizer = tokenizer
        self.device = device
        self.max_batch = max_batch
        self.penalty = repetition_penalty
        self._prefill_kwargs = last_logits_only(model)
        self.eos_ids = eos_ids(model, tokenizer)
        self._pieces = PieceTable(self.tokenizer, self.eos_ids)
        self._waiting: collections.deque[_Request] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._prefixes: dict[tuple[int, ...], _Prefix] = {}
        # The running batch: per-layer keys/values (B, heads, L, dim), a (B, L) mask of
        # real positions, each row's last token and a (B, vocab) mask of tokens seen.
        self._rows: list[_Request] = []
        self._cache: Any = None
        self._mask: Any = None
        self._last: Any = None
        self._seen: Any = None
        self.stats = {"admitted": 0, "steps": 0, "max_rows": 0, "prefix_hits": 0}
        self._recent: collections.deque[dict[str, float]] = collections.deque(maxlen=64)
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------------------

    def submit(self, prompt_ids: list[int], max_new_tokens: int,
               stop: threading.Event | None = None, *, prefix_len: int = 0,
               guard: FigureGuard | None = None) -> Iterator[str]:
        """Queue a prompt; return an iterator of text pieces (closing it cancels).

        ``prefix_len`` marks a leading part shared by many prompts (the system turn):
        its keys and values are computed once and reused by later prompts. ``guard``
        (a :class:`rag.grounding.FigureGuard`) keeps the answer's figures to its evidence.
        """
        request = _Request(list(prompt_ids), max_new_tokens, stop or threading.Event(),
                           prefix_len=prefix_len, guard=guard)
        with self._cv:
            if self._closed:
                raise RuntimeError("the batch scheduler is closed")
            self._waiting.append(request)
            self._cv.notify()
        return self._drain(request)

    def close(self) -> None:
        """Stop the scheduler thread; waiting and running requests end."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def load(self) -> dict[str, Any]:
        """Return running/waiting counts, lifetime counters and recent admission medians.

        ``recent``: median prompt tokens, tokens prefilled (prompt minus reused prefix),
        seconds waiting for admission and seconds of prefill over the last 64 requests.
        """
        with self._cv:
            recent = list(self._recent)
            counts: dict[str, Any] = {"running": len(self._rows), "waiting": len(self._waiting),
                                      **self.stats}
        if recent:
            counts["recent"] = {key: round(statistics.median(r[key] for r in recent), 4)
                                for key in recent[0]}
        return counts

    # -- consumer side -----------------------------------------------------------------

    @staticmethod
    def _drain(request: _Request) -> Iterator[str]:
        try:
            while True:
                item = request.out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise RuntimeError(f"generation failed: {item}") from item
                yield str(item)
        finally:
            request.stop.set()  # a consumer that stopped early frees its row

    # -- scheduler thread --------------------------------------------------------------

    def _loop(self) -> None:
        import torch

        use_torch_threads(self.threads)
        while True:
            with self._cv:
                while not self._closed and not self._waiting and not self._rows:
                    self._cv.wait()
                if self._closed:
                    break
                admit = (self._waiting.popleft()
                         if self._waiting and len(self._rows) < self.max_batch else None)
            with torch.inference_mode():
                if admit is not None and not admit.stop.is_set():
                    try:
                        self._admit(admit)
                    except Exception as exc:  # handed to that request's consumer
                        log.warning("prefill failed: %s", exc)
                        self._finish(admit, exc)
                elif admit is not None:
                    self._finish(admit)
                if self._rows:
                    try:
                        self._step()
                    except Exception as exc:  # the whole batch fails together
                        log.warning("decode step failed: %s", exc)
                        for request in self._rows:
                            self._finish(request, exc)
                        self._reset()
        for request in [*self._rows, *self._waiting]:
            self._finish(request, RuntimeError("the batch scheduler closed"))
        self._reset()

    def _reset(self) -> None:
        self._rows = []
        self._cache = self._mask = self._last = self._seen = None

    def _finish(self, request: _Request, error: BaseException | None = None) -> None:
        if error is not None:
            request.out.put(error)
        request.out.put(_DONE)

    def _prefix_for(self, request: _Request) -> _Prefix | None:
        """Return the cached prefix of ``request``'s prompt, computing it the first time."""
        from transformers import DynamicCache

        size = request.prefix_len
        if size <= 0 or size >= len(request.prompt_ids):
            return None
        key = tuple(request.prompt_ids[:size])
        prefix = self._prefixes.get(key)
        if prefix is not None:
            self.stats["prefix_hits"] += 1
            return prefix
        import torch

        cache: Any = DynamicCache()
        self.model(input_ids=torch.tensor([list(key)], device=self.device),
                   past_key_values=cache, use_cache=True, **self._prefill_kwargs)
        prefix = _Prefix(key, [layer.keys for layer in cache.layers],
                         [layer.values for layer in cache.layers])
        if len(self._prefixes) >= MAX_PREFIXES:
            self._prefixes.pop(next(iter(self._prefixes)))
        self._prefixes[key] = prefix
        return prefix

    def _next_tokens(self, logits: Any, seen: Any, rows: Sequence[_Request]) -> Any:
        """Greedy choice after the repetition penalty (as transformers applies it)."""
        import torch

        scores = logits.float()
        if self.penalty != 1.0:
            penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
            scores = torch.where(seen, penalised, scores)
        tokens = scores.argmax(dim=-1)
        for i, request in enumerate(rows):
            if request.guard is not None:
                tokens[i] = guarded_token(request.guard, request.text, scores[i], self._pieces)
        return tokens

    def _admit(self, request: _Request) -> None:
        import torch
        from transformers import DynamicCache

        started = time.perf_counter()
        ids = request.prompt_ids
        prefix = self._prefix_for(request)
        if prefix is not None:
            cache = DynamicCache(ddp_cache_data=list(zip(prefix.keys, prefix.values,
                                                         strict=True)))
            rest = ids[len(prefix.ids):]
        else:
            cache = DynamicCache()
            rest = ids
        input_ids = torch.tensor([rest], device=self.device)
        attention = torch.ones((1, len(ids)), dtype=torch.long, device=self.device)
        position_ids = torch.arange(len(ids) - len(rest), len(ids), device=self.device)[None]
        out = self.model(input_ids=input_ids, attention_mask=attention,
                         position_ids=position_ids, past_key_values=cache, use_cache=True,
                         **self._prefill_kwargs)
        vocab = out.logits.shape[-1]
        seen = torch.zeros((1, vocab), dtype=torch.bool, device=self.device)
        seen[0, torch.tensor(ids, device=self.device)] = True
        token = self._next_tokens(out.logits[:, -1, :], seen, [request])
        self.stats["admitted"] += 1
        self._recent.append({"prompt_tokens": len(ids), "prefill_tokens": len(rest),
                             "wait_s": started - request.enqueued,
                             "prefill_s": time.perf_counter() - started})
        if not self._emit(request, int(token[0])):
            return
        seen[0, token] = True
        self._merge(request, out.past_key_values, attention, token.view(1, 1), seen)

    def _emit(self, request: _Request, token: int) -> bool:
        """Record ``token`` for ``request``, send new text; return False when it is done."""
        finished = token in self.eos_ids
        if not finished:
            request.generated.append(token)
            text = self.tokenizer.decode(request.generated, skip_special_tokens=True)
            request.text = text
            if not text.endswith("\ufffd") and text.startswith(request.emitted):
                piece = text[len(request.emitted):]
                if piece:
                    request.out.put(piece)
                    request.emitted = text
        if finished or len(request.generated) >= request.max_new_tokens \
                or request.stop.is_set():
            text = self.tokenizer.decode(request.generated, skip_special_tokens=True)
            if text.startswith(request.emitted) and len(text) > len(request.emitted):
                request.out.put(text[len(request.emitted):])
            self._finish(request)
            return False
        return True

    def _merge(self, request: _Request, cache: Any, attention: Any, last: Any,
               seen: Any) -> None:
        import torch
        import torch.nn.functional as functional

        if not self._rows:
            self._rows, self._cache, self._mask = [request], cache, attention
            self._last, self._seen = last, seen
            self.stats["max_rows"] = max(self.stats["max_rows"], 1)
            return
        have, new = self._mask.shape[1], attention.shape[1]
        width = max(have, new)
        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([functional.pad(mine.keys, (0, 0, width - have, 0)),
                                   functional.pad(theirs.keys, (0, 0, width - new, 0))])
            mine.values = torch.cat([functional.pad(mine.values, (0, 0, width - have, 0)),
                                     functional.pad(theirs.values, (0, 0, width - new, 0))])
        self._mask = torch.cat([functional.pad(self._mask, (width - have, 0)),
                                functional.pad(attention, (width - new, 0))])
        self._last = torch.cat([self._last, last])
        self._seen = torch.cat([self._seen, seen])
        self._rows.append(request)
        self.stats["max_rows"] = max(self.stats["max_rows"], len(self._rows))

    def _step(self) -> None:
        import torch

        keep = [i for i, request in enumerate(self._rows) if not request.stop.is_set()]
        if len(keep) < len(self._rows):
            for i, request in enumerate(self._rows):
                if i not in keep:
                    self._finish(request)
            self._select(keep)
            if not self._rows:
                return
        mask = torch.cat([self._mask, self._mask.new_ones((len(self._rows), 1))], dim=1)
        position_ids = self._mask.sum(dim=1, keepdim=True)
        out = self.model(input_ids=self._last, attention_mask=mask, position_ids=position_ids,
                         past_key_values=self._cache, use_cache=True)
        self._cache, self._mask = out.past_key_values, mask
        tokens = self._next_tokens(out.logits[:, -1, :], self._seen, self._rows)
        self._seen[torch.arange(len(self._rows)), tokens] = True
        self._last = tokens.view(-1, 1)
        self.stats["steps"] += 1
        alive = [i for i, (request, token) in enumerate(zip(self._rows, tokens.tolist(),
                                                            strict=True))
                 if self._emit(request, token)]
        if len(alive) < len(self._rows):
            self._select(alive)

    def _select(self, rows: list[int]) -> None:
        """Keep only ``rows`` of the batch and drop columns that are padding for all."""
        import torch

        if not rows:
            self._reset()
            return
        index = torch.tensor(rows, device=self.device)
        mask = self._mask.index_select(0, index)
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]
        self._mask = mask[:, start:]
        self._last = self._last.index_select(0, index)
        self._seen = self._seen.index_select(0, index)
        self._rows = [self._rows[i] for i in rows]


def _template_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]], **kwargs: Any
                  ) -> list[int]:
    encoded = tokenizer.apply_chat_template([dict(m) for m in messages], return_dict=True,
                                            **kwargs)
    ids = encoded["input_ids"]
    return [int(i) for i in (ids[0] if ids and isinstance(ids[0], list) else ids)]


def prompt_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Return the chat template's token ids for ``messages`` with the generation prompt."""
    return _template_ids(tokenizer, messages, add_generation_prompt=True)


def prefix_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Return the token ids of the leading system turn, when the template renders it alone."""
    if not messages or messages[0].get("role") != "system":
        return []
    return _template_ids(tokenizer, messages[:1])
