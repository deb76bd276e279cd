"""The JEPA parts: the predictor, the EMA target encoder, and the online module that DeepSpeed wraps.

EMA precision and memory (per parameter of the backbone, head excluded):
- The EMA master weights are fp32 (4 B). With decay 0.996 a bf16 EMA would never move: the step
  (1 - d) * (online - ema) is far below half a bf16 ulp of the weight for fine-tuning learning rates.
- With bf16 compute and `ema_shadow` (default), a bf16 copy of the EMA runs the target forward
  (+2 B, refreshed after each update): no cast per forward. Without it, the fp32 EMA runs under
  autocast, which re-casts every weight on each target forward (6 B of memory traffic per parameter
  per forward) but saves the 2 B. For an 8B model: 32 GB fp32 EMA, +16 GB shadow.
- The EMA never holds the output head: the target only needs the last hidden state, so its head is
  replaced by `NoHead` (for LLaDA-8B that skips a 126,464 x 4,096 matmul per target forward and
  2 GB of fp32 EMA). Where the head cannot be removed (tied to the input embedding) it stays.
- Layout and update (`FlatEma`): the master (and the shadow) are flat buffers, one per device, and the
  target model's parameters are views into them. The update touches each element once: on CPU in
  chunks, bit for bit the per-tensor `_foreach_mul_` / `_foreach_add_` / `_foreach_copy_` it
  replaced; on CUDA one compiled kernel per tensor, 12 B per parameter with bf16 weights
  (`ema_bound_bytes`), within 1 fp32 ulp of the CPU rounding.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from dllm_jepa_train.objectives import pool_embeddings
from lm_eval_diffusion.backbone import FamilySpec, model_forward

log = logging.getLogger(__name__)


def backbone_width(config: Any) -> int:
    """Hidden width of a HF config (hidden_size, d_model or n_embd)."""
    for name in ("hidden_size", "d_model", "n_embd"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise ValueError(f"cannot find the hidden width in config {type(config).__name__}")


def backbone_heads(config: Any) -> int:
    """Attention heads of a HF config (num_attention_heads or n_heads)."""
    for name in ("num_attention_heads", "n_heads", "n_head"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise ValueError(f"cannot find the number of attention heads in config {type(config).__name__}")


class Predictor(nn.Module):
    """k pre-norm transformer layers at backbone width on a length-1 sequence: (B, D) -> (B, D)."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=width,
                nhead=heads,
                dim_feedforward=round(width * mlp_ratio),
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.unsqueeze(1)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).squeeze(1)


class IdentityPredictor(nn.Module):
    """k = 0 (the Figure 3 "no predictor" ablation): the prediction is z_L itself, no parameters, so the
    JEPA loss is the plain stop-gradient two-view cosine 1 - cos(z_L, z_H)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


def build_predictor(width: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> nn.Module:
    """`Predictor` with `depth` layers, or `IdentityPredictor` at depth 0."""
    return IdentityPredictor() if depth == 0 else Predictor(width, depth, heads, mlp_ratio)


class OnlineModel(nn.Module):
    """The online backbone and the predictor in one module, so DeepSpeed shards and steps both."""

    def __init__(self, backbone: nn.Module, spec: FamilySpec, predictor: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.predictor = predictor
        self.spec = spec

    def forward(
        self, noisy_ids: torch.Tensor, keep: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(B, L) long ids, (B, L) bool keep -> aligned logits (B, L, V), z_L (B, D) fp32, prediction (B, D) fp32.

        Without a predictor (lambda = 0) no hidden states are requested and z_L and prediction are None.
        """
        need_hidden = self.predictor is not None
        logits, hidden = model_forward(self.backbone, self.spec, noisy_ids, attention_mask, need_hidden)
        if not need_hidden:
            return logits, None, None
        z_context = pool_embeddings(hidden[-1], keep)
        weight = next(self.predictor.parameters(), None)  # None: the identity predictor
        z_in = z_context.to(weight.dtype) if weight is not None else z_context
        return logits, z_context, self.predictor(z_in).float()


class NoHead(nn.Module):
    """Stands in for the output head of the target: (B, L, D) -> (B, L, 0) "logits", no compute.

    Not an identity: a model that post-processes its logits in place (e.g. LLaDA's optional
    `scale_logits`) would then rewrite the last hidden state that the target pools.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(*x.shape[:-1], 0)


def _removable_head(model: nn.Module) -> nn.Module | None:
    """The output head if the target can drop it; None without one or when it is tied to the input embedding."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or head is model.get_input_embeddings():
        return None
    if getattr(head, "weight", None) is not None and head.weight is model.get_input_embeddings().weight:
        return None
    return head


def _drop_output_head(model: nn.Module) -> bool:
    """Replace the output head by `NoHead` (the target needs hidden states only); False if tied."""
    head = _removable_head(model)
    if head is None:
        return False
    for name, module in model.named_modules():
        if module is head:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, NoHead())
            return True
    return False


# Each tensor starts at a multiple of 64 elements of its flat buffer (256 B of fp32), so GPU vector loads
# stay aligned; the CPU sweep's chunks are multiples of it too.
EMA_ALIGN = 64
# CPU sweep: a chunk's master, online weight and shadow (2.5 MB with fp32 online weights) stay in cache
# between the mul, the add and the copy. 42M parameters, one thread, a shared 2-core AVX2 host (best of
# 12, three runs): 36-38 ms against 41-51 ms for the three foreach passes; 32K-element chunks lose it
# to Python overhead (58 ms).
EMA_CPU_CHUNK = 1 << 18


def ema_bound_bytes(num_params: int, online_bytes: int = 2, shadow_bytes: int = 2) -> int:
    """Least memory traffic of one EMA update: read and write the fp32 master (8 B per parameter), read the
    online weight, write the shadow (0 without one). bf16 online and shadow: 12 B per parameter."""
    return num_params * (8 + online_bytes + shadow_bytes)


def _ema_step(master: torch.Tensor, online: torch.Tensor, shadow: torch.Tensor | None, decay: float,
              alpha: float) -> None:
    """master <- master * decay + alpha * online, shadow <- master: (N,) fp32, (N,) any float, (N,) or None.

    The body `FlatEma` compiles on CUDA: one elementwise kernel that reads master and online and writes
    master and shadow. The compiler may fuse the multiply-add differently from the CPU's
    `mul_` then `add_(alpha=)`: within 1 fp32 ulp, not bit for bit.
    """
    new = master * decay + online.float() * alpha
    master.copy_(new)
    if shadow is not None:
        shadow.copy_(new)


def _flat_alias(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor`'s elements as a 1-D tensor at storage offset 0 on a slice of its storage (the same memory).

    Not a view, and always at offset 0: the compiled step would otherwise guard on a view's base (whose
    shape differs per parameter) and recompile for each. The compiler assumes offset-0 inputs aligned and
    copies the rare misaligned one before its kernel (a DeepSpeed flat-buffer view, say). A copy if the
    tensor is not contiguous (the step only reads the online weights).
    """
    if not tensor.is_contiguous():
        return tensor.detach().reshape(-1)
    start = tensor.storage_offset() * tensor.element_size()
    storage = tensor.untyped_storage()[start:start + tensor.numel() * tensor.element_size()]
    return torch.empty(0, dtype=tensor.dtype, device=tensor.device).set_(storage, 0, (tensor.numel(),), (1,))


@functools.cache
def _fused_ema_step():
    """`_ema_step` through torch.compile (built on first use; dynamic sizes: one graph for every tensor)."""
    return torch.compile(_ema_step, dynamic=True, fullgraph=True)


class FlatEma:
    """An fp32 EMA of some named tensors, held in flat buffers and updated in one pass.

    `followed` lists (name, online tensor) pairs: a whole backbone for the JEPA target, or any subset
    (e.g. LoRA adapters alone). The EMA keeps one fp32 master buffer per device, and with `shadow_dtype`
    one shadow buffer (its copy in the compute dtype); `master[i]` and `shadow[i]` are views into them
    shaped like the i-th online tensor, each starting at a multiple of EMA_ALIGN elements.

    `update` (ema <- decay * ema + (1 - decay) * online, then shadow <- ema) touches each element once:
    - CPU (what the tests run): per tensor, per chunk of EMA_CPU_CHUNK elements, `mul_(decay)`,
      `add_(online, alpha=1 - decay)`, `copy_` into the shadow. The same kernels as the per-tensor
      `_foreach_mul_` / `_foreach_add_` / `_foreach_copy_` this replaces (on CPU those loop over the
      tensors), so the same bits: the master is rounded after the multiply, then the add rounds
      `master + alpha * online` once. Measured on AVX2: the add fuses in its vector and its scalar loop
      alike, so where a chunk (or a thread's share) ends changes nothing; chunks start at multiples of
      EMA_ALIGN besides, so each tensor's vector / scalar split is the one the per-tensor add had.
    - CUDA (`fused`, the default there): one compiled elementwise kernel per tensor (`_ema_step`) reads
      the fp32 master and the online weight and writes the master and the shadow: 12 B per parameter
      with bf16 weights (`bound_bytes`), where three foreach passes move about twice that. It rounds
      within 1 fp32 ulp of the CPU formula.
    """

    def __init__(self, followed: Sequence[tuple[str, torch.Tensor]], decay: float,
                 shadow_dtype: torch.dtype | None = None, fused: bool | None = None) -> None:
        if not followed:
            raise ValueError("FlatEma: no tensors to follow")
        self.names = [name for name, _ in followed]
        if len(set(self.names)) != len(self.names):
            raise ValueError("FlatEma: tensor names repeat")
        self.online = [tensor for _, tensor in followed]
        self.decay = decay
        self.fused = any(t.is_cuda for t in self.online) if fused is None else fused
        offsets, sizes = [], {}
        for tensor in self.online:
            start = sizes.get(tensor.device, 0)
            offsets.append(start)
            sizes[tensor.device] = start + -(-tensor.numel() // EMA_ALIGN) * EMA_ALIGN
        # One buffer per device; padding between tensors stays zero and is never read back.
        self.flat_master = {dev: torch.zeros(n, dtype=torch.float32, device=dev) for dev, n in sizes.items()}
        self.flat_shadow = ({dev: torch.zeros(n, dtype=shadow_dtype, device=dev) for dev, n in sizes.items()}
                            if shadow_dtype is not None else None)
        self.master = [self._view(self.flat_master, t, off) for t, off in zip(self.online, offsets)]
        self.shadow = ([self._view(self.flat_shadow, t, off) for t, off in zip(self.online, offsets)]
                       if self.flat_shadow is not None else None)
        self._aliases = None  # the fused path's 1-D aliases of `master` and `shadow`, made on first use
        with torch.no_grad():
            for master, tensor in zip(self.master, self.online):
                master.copy_(tensor.detach())
            self._refresh_shadow()

    @staticmethod
    def _view(flat: dict[torch.device, torch.Tensor], like: torch.Tensor, offset: int) -> torch.Tensor:
        return flat[like.device][offset:offset + like.numel()].view(like.shape)

    def _refresh_shadow(self) -> None:
        if self.flat_shadow is not None:
            for dev, flat in self.flat_master.items():
                self.flat_shadow[dev].copy_(flat)

    @torch.no_grad()
    def update(self) -> None:
        """ema <- decay * ema + (1 - decay) * online (fp32), then the shadow <- ema."""
        alpha = 1.0 - self.decay
        shadows = self.shadow if self.shadow is not None else [None] * len(self.master)
        if self.fused:
            step = _fused_ema_step()
            if self._aliases is None:
                self._aliases = [(_flat_alias(m), _flat_alias(s) if s is not None else None)
                                 for m, s in zip(self.master, shadows)]
            try:
                for (master, shadow), online in zip(self._aliases, self.online):
                    step(master, _flat_alias(online), shadow, self.decay, alpha)
            except torch.OutOfMemoryError:
                raise  # as it is: callers that retry smaller (bench_gpu) catch this type
            except Exception as err:
                raise RuntimeError(f"the fused EMA update (torch.compile of jepa._ema_step on "
                                   f"{self.master[0].device.type}) failed: {err}; set jepa.ema_fused false to "
                                   "update with plain foreach passes instead") from err
            return
        if self.master[0].device.type != "cpu":
            # Unfused off the CPU: the multi-tensor foreach kernels (a chunk loop would launch ~3 kernels per
            # 256K elements); the same arithmetic as the CPU path.
            torch._foreach_mul_(self.master, self.decay)
            torch._foreach_add_(self.master, [p.detach() for p in self.online], alpha=alpha)
            if self.shadow is not None:
                torch._foreach_copy_(self.shadow, self.master)
            return
        for master, online, shadow in zip(self.master, self.online, shadows):
            master, online = master.view(-1), online.detach().reshape(-1)
            shadow = shadow.view(-1) if shadow is not None else None
            for start in range(0, master.numel(), EMA_CPU_CHUNK):
                end = start + EMA_CPU_CHUNK
                chunk = master[start:end]
                chunk.mul_(self.decay)
                chunk.add_(online[start:end], alpha=alpha)
                if shadow is not None:
                    shadow[start:end].copy_(chunk)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{name: fp32 master}, views into the flat buffers (clone to keep them)."""
        return dict(zip(self.names, self.master))

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy `state` (from `state_dict`, or a checkpoint's ema.safetensors) into the master and the shadow."""
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:3]}")
        for name, master in zip(self.names, self.master):
            if state[name].shape != master.shape:
                raise ValueError(f"EMA state: {name} has shape {tuple(state[name].shape)}, "
                                 f"the model's is {tuple(master.shape)}")
            master.copy_(state[name])
        self._refresh_shadow()

    def num_parameters(self) -> int:
        """Elements followed (padding excluded)."""
        return sum(m.numel() for m in self.master)

    def bound_bytes(self) -> int:
        """Least memory traffic of one `update` (`ema_bound_bytes` with these tensors' dtypes)."""
        shadows = self.shadow if self.shadow is not None else [None] * len(self.master)
        return sum(m.numel() * (8 + o.element_size() + (s.element_size() if s is not None else 0))
                   for m, o, s in zip(self.master, self.online, shadows))


class FlatEmaTarget:
    """What every JEPA target shares: an EMA (`FlatEma`, in `self.ema`) of the weights it follows, updated
    once per optimizer step, saved and restored by parameter name. Subclasses build `ema` and `encode`."""

    ema: FlatEma

    def update(self) -> None:
        """ema <- decay * ema + (1 - decay) * online (fp32; online weights of any dtype), one pass (`FlatEma`)."""
        self.ema.update()

    def update_bound_bytes(self) -> int:
        """Least memory traffic of one `update` (12 B per parameter with bf16 weights and shadow)."""
        return self.ema.bound_bytes()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{followed parameter name: fp32 EMA weight} (views into the flat buffers)."""
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy `state` (from `state_dict`) into the master weights and the shadow."""
        self.ema.load_state_dict(state)

    def num_parameters(self) -> int:
        """Parameters held by the EMA."""
        return self.ema.num_parameters()


class EmaTarget(FlatEmaTarget):
    """The EMA copy of the online backbone: fp32 master weights, no gradients, no output head.

    The weights live in a `FlatEma` (flat fp32 buffers, one-pass `update` once per optimizer step:
    ema <- decay * ema + (1 - decay) * online). The target model's parameters are views into its
    buffers: into the bf16 shadow when there is one, else into the fp32 master. `encode` runs the target
    forward in `compute_dtype` (see the module docstring for the shadow copy and its memory cost).
    """

    def __init__(
        self, online: nn.Module, spec: FamilySpec, decay: float, compute_dtype: torch.dtype, shadow: bool = True,
        fused: bool | None = None,
    ) -> None:
        """`fused`: the compiled one-kernel update (default: on CUDA; see `FlatEma`)."""
        self.spec = spec
        self.decay = decay
        self.compute_dtype = compute_dtype
        head = _removable_head(online)
        skipped = {id(p) for p in head.parameters()} if head is not None else set()
        followed = [(name, p) for name, p in online.named_parameters() if id(p) not in skipped]
        use_shadow = shadow and compute_dtype != torch.float32
        self.ema = FlatEma(followed, decay, compute_dtype if use_shadow else None, fused)
        weights = self.ema.shadow if use_shadow else self.ema.master
        # The copy takes the flat views as its parameters instead of copying the online weights (which
        # would hold a third copy of the model until the views replaced them).
        memo = {id(p): nn.Parameter(w, requires_grad=False) for (_, p), w in zip(followed, weights)}
        model = copy.deepcopy(online, memo)
        model.eval()
        self.has_head = not _drop_output_head(model)
        if self.has_head:
            log.warning("the output head is tied to the input embedding; the target forward computes it too")
        model.requires_grad_(False)
        self.model = model.to(compute_dtype) if use_shadow else model.float()  # buffers; parameters already are
        self.names = self.ema.names
        self.online_params = self.ema.online
        self.master = self.ema.master
        self.shadow = self.ema.shadow
        self.autocast = compute_dtype != torch.float32 and not use_shadow

    def parameters(self) -> list[torch.Tensor]:
        """The fp32 master weights, in `names` order."""
        return self.ema.master

    @torch.no_grad()
    def encode(
        self, noisy_ids: torch.Tensor, keep: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z_H: (B, L) long ids, (B, L) bool keep -> (B, D) fp32 pooled, LayerNormed last hidden state."""
        device_type = noisy_ids.device.type
        with torch.autocast(device_type, dtype=self.compute_dtype, enabled=self.autocast):
            _, hidden = model_forward(self.model, self.spec, noisy_ids, attention_mask, output_hidden_states=True)
        return pool_embeddings(hidden[-1], keep)
