"""Compiled forwards for evaluation: `torch.compile` behind a sampler's `logits_fn`, with few shapes.

    CompiledLogits(model, *, honours_padding=None, pad_id=None, batch_buckets=None, length_buckets=None,
                   max_length=None, use_compile=True, backend="inductor")

- `model`: a `Backbone` (its Hugging Face module is compiled; `honours_padding` and `pad_id` default to
  the backbone's padding-probe result and pad id) or a logits function `fn(ids, attention_mask) ->
  logits` (the function itself is compiled; give `honours_padding`, and `pad_id` when it is True).
- `batch_buckets`: row counts a forward is padded up to (None: powers of two; the harness passes
  `evaluation_buckets(batch_size, mc_batch_size, cfg_scale)`, which stop at each);
  `length_buckets`: canvas lengths (None: `length_bucket`, four per octave); `max_length`: no length
  bucket beyond it (the harness passes its prompt + generation cap).
- `use_compile=False` keeps the bucketing and runs eagerly (what the tests compare the compiled forward
  with); `backend` is torch.compile's (the tests use "eager", dynamo alone, where only graph counts matter).

The object is itself a `logits_fn(ids, attention_mask) -> logits` for `sampler.py` and `likelihood.py`,
and `.graphs` counts the graphs compiled so far (graph breaks and recompiles included).

Why buckets: early exit shrinks the batch and prompts differ in length, so an unbounded number of
shapes would each cost a compile. A forward of R rows is padded to the smallest batch bucket >= R with
dummy rows (copies of the last row, dropped from the logits; the sampler never sees them, so its
`row_forwards` does not count them). Where the model honours padding (the padding probe), the canvas is
also left-padded to a length bucket, as the harness already left-pads prompts, and every shape is
static: at most (batch buckets) x (length buckets) x (padded or not) shapes (`shape_bound`). Padding
moves logits within the probe's tolerance, so tokens may differ from compile off at near-ties. Where
the model ignores padding, only the batch is bucketed and the sequence dimension is compiled dynamic
(a model whose code fixes the length then fails at its first forward, naming the dimension). The
recompile limit is set to `shape_bound`, and reaching it raises where dynamo would silently run eagerly;
dynamo counts it per code object, so compiled models of one class in one process share it
(`torch.compiler.reset()` between models starts afresh).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from lm_eval_diffusion.backbone import Backbone, model_forward
from lm_eval_diffusion.sampler import LogitsFn

LENGTH_BITS = 3  # length buckets m * 2^k with m of 3 bits (4..7): four per octave, at most 25% padding
UNBOUNDED_SHAPES = 1024  # recompile limit where no bucket list or max_length bounds the shapes
DYNAMIC_SHAPES = 16  # recompile limit of compile_backbone: dynamic dimensions, only sizes 0/1 specialise


def default_batch_buckets(*max_rows: int) -> tuple[int, ...]:
    """Batch buckets for forwards of at most each of `max_rows` rows: powers of two below each, and each."""
    out = set()
    for limit in max_rows:
        if limit < 1:
            raise ValueError(f"max rows must be >= 1, got {limit}")
        out.update(1 << k for k in range(limit.bit_length()) if 1 << k < limit)
        out.add(limit)
    return tuple(sorted(out))


def evaluation_buckets(batch_size: int, mc_batch_size: int, cfg_scale: float = 0.0) -> tuple[int, ...]:
    """The harness's batch buckets: generation's `batch_size` rows and the ELBO's `mc_batch_size`
    masked copies, both doubled under classifier-free guidance (one forward holds both passes)."""
    guided = 2 if cfg_scale > 0 else 1
    return default_batch_buckets(guided * batch_size, guided * mc_batch_size)


def batch_bucket(rows: int, buckets: Sequence[int] | None = None) -> int:
    """The smallest bucket >= `rows` (None: the next power of two); `rows` itself beyond every bucket."""
    if buckets is None:
        return 1 << (rows - 1).bit_length()
    return min((b for b in buckets if b >= rows), default=rows)


def length_bucket(length: int, max_length: int | None = None, buckets: Sequence[int] | None = None) -> int:
    """The canvas length a forward of `length` tokens is left-padded to: the smallest bucket >= `length`.

    Default buckets are m * 2^k with m in 4..7 (4, 5, 6, 7, 8, 10, 12, 14, 16, 20, ...), so a run whose
    lengths span a factor of 2 compiles at most 5 lengths; never beyond `max_length` (when `length`
    fits under it), and `length` itself when it exceeds every explicit bucket.
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if buckets is not None:
        chosen = min((b for b in buckets if b >= length), default=length)
    else:
        shift = max(0, (length - 1).bit_length() - LENGTH_BITS)
        chosen = -(-length >> shift) << shift  # round up to a multiple of 2^shift: top LENGTH_BITS bits kept
    if max_length is not None and length <= max_length:
        chosen = min(chosen, max_length)
    return chosen


class _GraphCounter:
    """A torch.compile backend that counts the graphs it is handed and compiles them with `backend`."""

    def __init__(self, backend: str) -> None:
        from torch._dynamo.backends.registry import lookup_backend

        self.backend = lookup_backend(backend)
        self.graphs = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: list) -> Callable:
        self.graphs += 1
        return self.backend(graph_module, example_inputs)


# The dynamo settings that bound the compiled shapes and make the bound an error (torch 2.7 or later).
DYNAMO_SETTINGS = ("recompile_limit", "accumulated_recompile_limit", "fail_on_recompile_limit_hit")


def require_compile_support(switch: str) -> None:
    """RuntimeError naming `switch` (e.g. "model_arg compile") when this torch's dynamo lacks the settings
    the compiled paths rely on, instead of an AttributeError at the first forward."""
    missing = [name for name in DYNAMO_SETTINGS if not hasattr(torch._dynamo.config, name)]
    if missing:
        raise RuntimeError(f"{switch} needs a torch whose dynamo has {', '.join(missing)} (torch 2.7 or later; "
                           f"this is torch {torch.__version__}): upgrade torch or turn {switch} off")


def _dynamo_limits(limit: int) -> Any:
    """Room for `limit` compiled shapes, and an error past it where dynamo would silently run eagerly;
    set only around the compiled calls."""
    return torch._dynamo.config.patch(recompile_limit=limit, accumulated_recompile_limit=max(256, limit),
                                      fail_on_recompile_limit_hit=True)


class CompiledLogits:
    """`logits_fn(ids, attention_mask) -> logits` through torch.compile with bucketed shapes; see the module."""

    def __init__(
        self,
        model: Backbone | LogitsFn,
        *,
        honours_padding: bool | None = None,
        pad_id: int | None = None,
        batch_buckets: Sequence[int] | None = None,
        length_buckets: Sequence[int] | None = None,
        max_length: int | None = None,
        use_compile: bool = True,
        backend: str = "inductor",
    ) -> None:
        if isinstance(model, Backbone):
            honours_padding = model.honours_padding if honours_padding is None else honours_padding
            pad_id = model.spec.pad_id if pad_id is None else pad_id
        elif honours_padding is None:
            raise ValueError("CompiledLogits of a logits function needs honours_padding (the padding probe's answer)")
        if honours_padding and pad_id is None:
            raise ValueError("CompiledLogits needs pad_id to pad the canvas of a model that honours padding")
        self.honours_padding = bool(honours_padding)
        self.pad_id = pad_id
        self.batch_buckets = tuple(sorted(batch_buckets)) if batch_buckets is not None else None
        self.length_buckets = tuple(sorted(length_buckets)) if length_buckets is not None else None
        self.max_length = max_length
        self.use_compile = use_compile
        if use_compile:
            require_compile_support("compile")
        self._counter = _GraphCounter(backend)
        self._shapes: set[tuple[int, int, bool]] = set()
        self._limit = self.shape_bound()
        if isinstance(model, Backbone):
            # The module is compiled, not model_forward: its padding check (a host sync) and the logit
            # shift stay eager, outside the graph. Static shapes unless marked dynamic per call.
            spec = model.spec
            module = torch.compile(model.model, backend=self._counter, dynamic=False) if use_compile else model.model
            self._forward: LogitsFn = lambda ids, mask: model_forward(module, spec, ids, mask)[0]
        else:
            self._forward = torch.compile(model, backend=self._counter, dynamic=False) if use_compile else model

    def shape_bound(self) -> int:
        """The most forward shapes the buckets allow (rows x lengths x padded or not); the recompile limit."""
        is_length_unbounded = self.honours_padding and self.length_buckets is None and self.max_length is None
        if self.batch_buckets is None or is_length_unbounded:
            return UNBOUNDED_SHAPES
        if not self.honours_padding:
            lengths = 1  # one dynamic dimension
        elif self.length_buckets is not None:
            lengths = len(self.length_buckets)
        else:
            lengths = len({length_bucket(n, self.max_length) for n in range(1, self.max_length + 1)})
        return len(self.batch_buckets) * lengths * 2

    @property
    def graphs(self) -> int:
        """Graphs compiled so far (0 with use_compile=False)."""
        return self._counter.graphs

    @property
    def shapes(self) -> int:
        """Distinct (rows, length, padded) forward shapes seen so far; the ignored-padding path counts one length."""
        return len(self._shapes)

    def summary(self) -> str:
        """One line for the log: graphs, shapes and the buckets."""
        batches = ", ".join(map(str, self.batch_buckets)) if self.batch_buckets else "powers of two"
        lengths = ("dynamic (the model ignores padding)" if not self.honours_padding else
                   ", ".join(map(str, self.length_buckets)) if self.length_buckets else
                   f"m * 2^k, m in 4..7, <= {self.max_length}")
        return (f"compile: {self.graphs} graph(s) compiled for {self.shapes} forward shape(s); batch buckets "
                f"{batches}; length buckets {lengths}")

    def __call__(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (R, L, V) of (R, L) long `ids`, computed on the bucketed shape and cut back to (R, L)."""
        R, L = ids.shape
        rows = batch_bucket(R, self.batch_buckets)
        length = length_bucket(L, self.max_length, self.length_buckets) if self.honours_padding else L
        if rows > R:  # dummy rows: copies of the last row, so they are as well-formed as a real one
            ids = torch.cat([ids, ids[-1:].expand(rows - R, -1)])
            if attention_mask is not None:
                attention_mask = torch.cat([attention_mask, attention_mask[-1:].expand(rows - R, -1)])
        if length > L:  # left padding, as the harness pads prompts
            ids = torch.cat([ids.new_full((rows, length - L), self.pad_id), ids], dim=1)
            real = attention_mask if attention_mask is not None else torch.ones_like(ids[:, length - L:])
            attention_mask = torch.cat([real.new_zeros((rows, length - L)), real], dim=1)
        self._shapes.add((rows, length if self.honours_padding else -1, attention_mask is not None))
        if self.use_compile and not self.honours_padding and length >= 2:
            torch._dynamo.mark_dynamic(ids, 1)
            if attention_mask is not None:
                torch._dynamo.mark_dynamic(attention_mask, 1)
        with _dynamo_limits(self._limit):
            logits = self._forward(ids, attention_mask)
        return logits[:R, length - L:]


def compile_backbone(backbone: Backbone, backend: str = "inductor") -> Callable[[], int]:
    """Run `backbone.model`'s forward through torch.compile in place, every dimension dynamic; returns a
    function giving the graphs compiled so far.

    For callers that need hidden states and feed many lengths (the analysis commands): no padding is
    added, so results equal eager ones up to kernel rounding. Only the instance's `forward` is replaced:
    parameters and `state_dict` keys are untouched, so weights loaded in place later are used.
    """
    require_compile_support("--compile")
    counter = _GraphCounter(backend)
    compiled = torch.compile(backbone.model.forward, backend=counter, dynamic=True)

    def forward(*args: Any, **kwargs: Any) -> Any:
        with _dynamo_limits(DYNAMIC_SHAPES):
            return compiled(*args, **kwargs)

    backbone.model.forward = forward
    return lambda: counter.graphs
