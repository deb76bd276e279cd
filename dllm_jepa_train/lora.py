"""LoRA fine-tuning (section `lora`; our extension: the paper's runs fine-tune every weight).

    online model   the frozen base + trainable peft adapters on the modules `lora.target_modules` names inside
                   the transformer blocks (default: the family's `lora_targets`; `families.lora_target_pattern`
                   never reaches the output head), adapters in the base's dtype (bf16 under DeepSpeed bf16, so
                   ZeRO sees one dtype), initialised from `run.seed`
    JEPA target    the same frozen base with an EMA of the adapter weights: `AdapterEmaTarget` keeps the EMA
                   as fp32 tensors outside peft (a `FlatEma` over the adapter parameters: fp32 master, a shadow
                   in the adapters' dtype where that is not fp32), and for the target forward swaps them into
                   the adapter modules (`.data` of each adapter parameter: no copy), runs the model in eval
                   mode (LoRA dropout off) without gradients, and swaps the online weights back. No second
                   copy of the backbone, and peft's own adapter switching (whose `set_adapter` makes the
                   active adapter trainable) never runs.
    checkpoints    step checkpoints hold the trainable parameters and their optimizer state only (DeepSpeed
                   `exclude_frozen_parameters`), with the base recorded in trainer_state.json; the export
                   (`export_adapter`) writes peft's adapter files at the folder's root, so
                   `lm_eval ... pretrained=<run>/final` and `PeftModel.from_pretrained` load base + adapter.

The L2 anchor, where asked for, hooks the trainable (adapter) parameters: g + lambda (p - p_init), p_init
the adapter's initial values (lora_B starts at zero).
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dllm_jepa_train.jepa import FlatEma, FlatEmaTarget
from lm_eval_diffusion.backbone import FamilySpec, model_forward
from lm_eval_diffusion.families import get_family, lora_target_pattern

log = logging.getLogger("dllm_jepa_train")

ADAPTER_CONFIG = "adapter_config.json"  # peft's file names
ADAPTER_WEIGHTS = "adapter_model.safetensors"
EMA_ADAPTER = "ema_adapter.safetensors"  # the adapters' fp32 EMA in an export's jepa/, peft key names


def base_reference(pretrained: str) -> str:
    """What an adapter records as its base: a local folder as an absolute path, a hub id as it is."""
    path = Path(pretrained)
    return str(path.resolve()) if path.exists() else pretrained


def block_linear_names(model: nn.Module, family: str) -> list[str]:
    """Leaf names (`q_proj`, `mlp.0`) of the Linear modules inside the family's transformer blocks, sorted."""
    blocks = re.compile(get_family(family).lora_blocks + r"\.(.+)")
    names = set()
    for name, module in model.named_modules():
        match = blocks.fullmatch(name)
        if match and isinstance(module, nn.Linear):
            names.add(match.group(1))
    return sorted(names)


def target_pattern(model: nn.Module, family: str, names: tuple[str, ...]) -> tuple[str, list[str]]:
    """(the regex peft gets as `target_modules`, the names of the modules it matches); ValueError when it
    matches nothing, naming what the blocks hold."""
    rules = get_family(family)
    pattern = lora_target_pattern(rules, names)
    matched = [n for n, m in model.named_modules() if re.fullmatch(pattern, n) and isinstance(m, nn.Linear)]
    if not matched:
        asked = ", ".join(names) if names else f"family {family}'s defaults ({', '.join(rules.lora_targets)})"
        found = ", ".join(block_linear_names(model, family)) or "none"
        raise ValueError(f"lora.target_modules: {asked} match no Linear module inside the transformer blocks of "
                         f"{type(model).__name__}; its blocks hold: {found}")
    return pattern, matched


def apply_lora(model: nn.Module, lora: Any, family: str, pretrained: str, seed: int) -> nn.Module:
    """`model` (a HF model, gradient checkpointing already set) as a peft model: base frozen, adapters trainable.

    `lora`: the config section (rank, alpha, dropout, target_modules; its names are looked up after the
    plug-ins of `dllm_jepa_train.plugins` load); the adapters take the base's dtype;
    their initialisation (peft's: lora_A Kaiming-uniform, lora_B zero) is seeded with `seed`. The adapter
    config records the base as `base_reference(pretrained)`.
    """
    from peft import LoraConfig, get_peft_model

    from dllm_jepa_train import plugins

    plugins.load_plugins()  # a plug-in may add its models' module names to a family (the toy's tiny models do)
    pattern, matched = target_pattern(model, family, tuple(lora.target_modules))
    config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=pattern,
                        bias="none")
    # The frozen embedding gives the first checkpointed block an input without grad: fine for the non-reentrant
    # checkpoints every family's switch uses (HF's with use_reentrant=False, LLaDA's own), which still reach
    # the adapters' gradients (tested); a reentrant one would drop them. (peft's enable_input_require_grads
    # would fix that case but calls requires_grad_ inside the forward, which model.compile cannot trace.)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config, autocast_adapter_dtype=False)
    peft_model.peft_config["default"].base_model_name_or_path = base_reference(pretrained)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    log.info("LoRA: rank %d, alpha %g, dropout %g on %d modules (%s, ...): %d trainable of %d parameters (%.3f%%)",
             lora.rank, lora.alpha, lora.dropout, len(matched), matched[0], trainable, total,
             100.0 * trainable / total)
    return peft_model


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every parameter with requires_grad, in `named_parameters` order."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def peft_key_names(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` keyed by `model.named_parameters` names -> keyed as peft saves adapters (adapter name dropped)."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(model, state_dict=state)


class AdapterEmaTarget(FlatEmaTarget):
    """The JEPA target under LoRA: the online peft model with an fp32 EMA of its adapters swapped in.

    A `jepa.FlatEmaTarget` like `jepa.EmaTarget` (update, encode, state_dict, load_state_dict, num_parameters). The EMA
    (`FlatEma`) follows the trainable backbone parameters, i.e. the adapters; `encode` swaps their EMA values
    into the adapter modules for the forward and back afterwards (see the module docstring).
    """

    has_head = True  # the target forward is the online model's: its head runs (on the target view)

    def __init__(self, model: nn.Module, spec: FamilySpec, decay: float, autocast_dtype: torch.dtype | None,
                 fused: bool | None = None) -> None:
        """`model`: the online peft model; `autocast_dtype`: the autocast of the online forward (torch engine
        under bf16), None where the weights are already in the compute dtype."""
        self.model = model
        self.spec = spec
        self.decay = decay
        self.autocast_dtype = autocast_dtype
        followed = trainable_parameters(model)
        if not followed:
            raise ValueError("AdapterEmaTarget: the model has no trainable (adapter) parameters")
        dtype = followed[0][1].dtype
        self.ema = FlatEma(followed, decay, dtype if dtype != torch.float32 else None, fused)
        self.params = [p for _, p in followed]
        self.names = self.ema.names

    @contextlib.contextmanager
    def swapped(self):
        """Inside: the adapter parameters hold the EMA weights (shadow, else the fp32 master) and the model is in
        eval mode; afterwards the online weights and the training mode are back, whatever happened inside."""
        weights = self.ema.shadow if self.ema.shadow is not None else self.ema.master
        online = [p.data for p in self.params]
        was_training = self.model.training
        try:
            for p, w in zip(self.params, weights):
                p.data = w
            self.model.eval()
            yield self.model
        finally:
            for p, data in zip(self.params, online):
                p.data = data
            self.model.train(was_training)

    @torch.no_grad()
    def encode(self, noisy_ids: torch.Tensor, keep: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """z_H: (B, L) long ids, (B, L) bool keep -> (B, D) fp32 pooled, LayerNormed last hidden state."""
        from dllm_jepa_train.objectives import pool_embeddings

        with self.swapped() as model, torch.autocast(noisy_ids.device.type, dtype=self.autocast_dtype or torch.float32,
                                                     enabled=self.autocast_dtype is not None):
            _, hidden = model_forward(model, self.spec, noisy_ids, attention_mask, output_hidden_states=True)
        return pool_embeddings(hidden[-1], keep)


def lora_meta(lora: Any, model: nn.Module, pretrained: str) -> dict:
    """The `lora` entry of an export's jepa/config.json."""
    peft_config = model.peft_config["default"]
    return {"rank": lora.rank, "alpha": lora.alpha, "dropout": lora.dropout,
            "target_modules": peft_config.target_modules, "base": base_reference(pretrained)}


def export_adapter(out_dir: str | Path, model: nn.Module, tokenizer: Any, predictor: nn.Module | None,
                   ema_state: dict[str, torch.Tensor] | None, jepa_meta: dict) -> Path:
    """Write a LoRA run's export to `out_dir`, atomically: peft's adapter_config.json and
    adapter_model.safetensors at the root, the tokenizer, and jepa/ (predictor.safetensors,
    ema_adapter.safetensors in peft's key names, config.json with the `lora` settings)."""
    from dllm_jepa_train.checkpoint import staged_export, write_jepa_dir

    with staged_export(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        ema = peft_key_names(model, ema_state) if ema_state is not None else None
        write_jepa_dir(tmp, predictor, ema, EMA_ADAPTER, jepa_meta)
    return Path(out_dir)
