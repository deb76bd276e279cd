"""The model-family registry: every rule that differs between kinds of checkpoint, one `Family` each.

A family says
  - which configs are its own: `model_types` (the config's `model_type`, any case); the one family
    registered with `is_fallback` takes every config that no family claims,
  - where the mask id comes from (`mask_id_from_config`) and which token strings end a text or a turn
    (`stop_tokens`, `eot_tokens`): `Family.resolve_spec` turns them, the config and the tokenizer into
    a `FamilySpec` (mask, stop, pad, EOS, EOT ids),
  - the logits' alignment (`shift_logits`: the logits at i predict token i + 1, as Dream's do),
  - how padding reaches the forward (`padding`, one of the functions below) and the keywords every
    forward gets (`forward_kwargs`),
  - how it loads (`Family.load_model`: `config_overrides` set on the config, then the Auto class that
    the checkpoint's `auto_map` names),
  - the harness's default sampler (`default_sampler`, a name in `lm_eval_diffusion.sampler.SAMPLERS`),
  - how gradient checkpointing is switched on (`checkpointing`, a function of the model),
  - where LoRA adapters go by default (`lora_blocks`, a regex of a transformer block's module name, and
    `lora_targets`, module names inside a block; `lora_target_pattern` joins them so that nothing
    outside the blocks, such as LLaDA's head `transformer.ff_out`, is ever adapted).
`backbone`, the harness and the trainer ask the registry (`get_family`, `detect_family`); none of them
compares a family name. Built in: llada, dream, generic (the fallback). Adding one: `register_family`
(docs/extending.md, "Adding a model family"); tests swap `_registry` for a copy to undo theirs.

Imports neither torch nor transformers at module level: the package imports `FAMILIES` from here, and
the package's start-up hook runs in every Python process.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# End-of-turn / end-of-text token *strings* used by the supported tokenizers. Their ids are looked up
# in each tokenizer, never hard-coded.
STOP_TOKEN_STRINGS = ("<|eot_id|>", "<|endoftext|>", "<|im_end|>", "<|end_of_text|>")
EOT_TOKEN_STRINGS = ("<|eot_id|>", "<|im_end|>")  # the chat end-of-turn among them (FamilySpec.eot_id)


@dataclass(frozen=True)
class FamilySpec:
    """What the sampler, the ELBO and the trainer need to know about a checkpoint's family."""

    family: str  # a registered family's name: get_family(spec.family) has its rules
    mask_id: int
    stop_ids: tuple[int, ...]  # EOS and EOT ids: generation ends at the first of these
    pad_id: int
    shift_logits: bool  # Dream: the logits at position i predict token i + 1
    vocab_size: int
    eos_id: int = -1  # the id that pads a response to the batch length in training
    eot_id: int | None = None


# ---- padding conventions: (B, L) attention mask (1 = real token) -> the forward's keywords ------------------
def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L) long position ids that restart at each row's first real token (0 on the left padding)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pad_mask(attention_mask: torch.Tensor) -> dict[str, Any]:
    """The 2-D mask alone: the model derives positions itself (LLaDA)."""
    return {"attention_mask": attention_mask}


def pad_mask_positions(attention_mask: torch.Tensor) -> dict[str, Any]:
    """The 2-D mask and position ids from the first real token (HF encoders)."""
    return {"attention_mask": attention_mask, "position_ids": _positions(attention_mask)}


def pad_key_mask_4d_positions(attention_mask: torch.Tensor) -> dict[str, Any]:
    """A (B, 1, L, L) bool key mask and position ids, as Dream's own `diffusion_generate` passes them."""
    keep = attention_mask.bool()
    return {"attention_mask": keep[:, None, None, :].expand(-1, 1, keep.shape[1], -1),
            "position_ids": _positions(attention_mask)}


# ---- gradient checkpointing: model -> the name of the switch used ---------------------------------------
def hf_checkpointing(model: Any) -> str:
    """The transformers switch (non-reentrant); ValueError when the model does not support it."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} does not support the HF gradient-checkpointing switch")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return "hf"


def llada_checkpointing(model: Any) -> str:
    """The HF switch where supported, else LLaDA's own whole-layer activation checkpointing."""
    if getattr(model, "supports_gradient_checkpointing", False):
        return hf_checkpointing(model)
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "set_activation_checkpointing"):
        raise ValueError(f"{type(model).__name__} supports neither the HF switch nor set_activation_checkpointing")
    # LLaDA's strategy enum lives in its (remote) modeling module; the name is LLaDA's own.
    strategy = sys.modules[type(inner).__module__].ActivationCheckpointingStrategy.whole_layer
    inner.set_activation_checkpointing(strategy)
    return "llada"


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if v is not None]
    return [int(value)]


def _dtype_kwarg() -> str:
    """`from_pretrained`'s dtype keyword: `dtype` from transformers 4.56, `torch_dtype` before (deprecated after)."""
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


@dataclass(frozen=True)
class Family:
    """One family's rules (see the module docstring). Subclass to change `resolve_spec` or `load_model`."""

    name: str
    model_types: tuple[str, ...] = ()  # config.model_type values (lower-cased) recognised as this family
    is_fallback: bool = False  # the family of every config no other family recognises (exactly one)
    mask_id_from_config: bool = False  # mask id: config `mask_token_id` first, then the tokenizer's mask token
    stop_tokens: tuple[str, ...] = STOP_TOKEN_STRINGS  # token strings that end a text, where in the vocabulary
    eot_tokens: tuple[str, ...] = EOT_TOKEN_STRINGS  # those of `stop_tokens` that end a chat turn
    shift_logits: bool = False  # the model's logits at i predict token i + 1; model_forward shifts them back
    padding: Callable[[Any], dict[str, Any]] = pad_mask_positions  # (B, L) mask -> forward keywords
    forward_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to every forward
    config_overrides: dict[str, Any] = field(default_factory=dict)  # set on the HF config before loading
    default_sampler: str = "llada"  # the harness's sampler when model_args give none
    checkpointing: Callable[[Any], str] = hf_checkpointing  # switches gradient checkpointing on; names it
    lora_blocks: str = r"(?:.*\.)?(?:layer|layers|blocks|h)\.\d+"  # regex: a transformer block's module name
    lora_targets: tuple[str, ...] = ("query", "key", "value", "dense")  # LoRA's default modules inside a block

    def resolve_spec(self, config: Any, tokenizer: Any, mask_id: int | None, name: str) -> FamilySpec:
        """Mask, stop and pad ids from the config and tokenizer (`mask_id` overrides); raise clearly when impossible."""
        vocab_size = int(getattr(config, "vocab_size", 0) or getattr(config, "embedding_size", 0) or 0)
        if mask_id is None and self.mask_id_from_config:
            mask_id = getattr(config, "mask_token_id", None)
        if mask_id is None:
            mask_id = getattr(tokenizer, "mask_token_id", None)
        if mask_id is None:
            raise ValueError(
                f"{name}: no mask token found (config has no `mask_token_id` and the tokenizer has no mask "
                f"token); pass the mask id explicitly, e.g. --model_args pretrained={name},mask_id=<id>"
            )
        mask_id = int(mask_id)
        tokenizer_size = len(tokenizer)
        if vocab_size and tokenizer_size > vocab_size:
            raise ValueError(
                f"{name}: tokenizer has {tokenizer_size} tokens but the model's vocabulary has {vocab_size}; "
                "the tokenizer does not belong to this checkpoint"
            )
        if vocab_size and not 0 <= mask_id < vocab_size:
            raise ValueError(f"{name}: mask_id {mask_id} is outside the vocabulary [0, {vocab_size})")

        eos_ids = _as_ids(getattr(tokenizer, "eos_token_id", None)) + _as_ids(getattr(config, "eos_token_id", None))
        vocab = tokenizer.get_vocab()
        eot_id = None
        for token in self.stop_tokens:
            if token in vocab:
                eos_ids.append(int(vocab[token]))
                if token in self.eot_tokens and eot_id is None:
                    eot_id = int(vocab[token])
        if not eos_ids and getattr(tokenizer, "sep_token_id", None) is not None:
            eos_ids.append(int(tokenizer.sep_token_id))  # BERT-style encoders end a text with [SEP]
        stop_ids = tuple(dict.fromkeys(i for i in eos_ids if i != mask_id))
        if not stop_ids:
            raise ValueError(f"{name}: neither the tokenizer nor the config defines an EOS token")
        eos_id = _as_ids(getattr(tokenizer, "eos_token_id", None)) or list(stop_ids)
        pad_candidates = _as_ids(getattr(tokenizer, "pad_token_id", None)) or _as_ids(
            getattr(config, "pad_token_id", None)
        )
        pad_id = pad_candidates[0] if pad_candidates else eos_id[0]
        return FamilySpec(
            family=self.name,
            mask_id=mask_id,
            stop_ids=stop_ids,
            pad_id=int(pad_id),
            shift_logits=self.shift_logits,
            vocab_size=vocab_size or tokenizer_size,
            eos_id=int(eos_id[0]),
            eot_id=eot_id,
        )

    def load_model(self, name: str, config: Any, *, trust_remote_code: bool, revision: str | None,
                   dtype: torch.dtype) -> Any:
        """The HF model of checkpoint `name` with `config` (after `config_overrides`), not yet moved or in eval mode."""
        from transformers import AutoModel, AutoModelForMaskedLM

        for key, value in self.config_overrides.items():
            setattr(config, key, value)
        # The class follows the checkpoint, not a forced family: remote-code checkpoints (LLaDA, Dream)
        # register their head under AutoModel, native encoders under AutoModelForMaskedLM.
        auto_map = getattr(config, "auto_map", None) or {}
        use_auto_model = "AutoModelForMaskedLM" not in auto_map and "AutoModel" in auto_map
        auto_cls = AutoModel if use_auto_model else AutoModelForMaskedLM
        return auto_cls.from_pretrained(name, config=config, trust_remote_code=trust_remote_code, revision=revision,
                                        **{_dtype_kwarg(): dtype})


LLADA = Family(
    name="llada",
    model_types=("llada",),
    mask_id_from_config=True,
    padding=pad_mask,
    forward_kwargs={"use_cache": False},
    config_overrides={"use_cache": False},  # LLaDA's remote code under transformers 4.57 needs this
    default_sampler="llada",
    checkpointing=llada_checkpointing,
    lora_blocks=r"(?:.*\.)?blocks\.\d+",  # model.transformer.blocks.<i>; the head model.transformer.ff_out is outside
    lora_targets=("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"),
)
DREAM = Family(
    name="dream",
    model_types=("dream",),
    mask_id_from_config=True,
    shift_logits=True,
    padding=pad_key_mask_4d_positions,
    default_sampler="dream",
    lora_blocks=r"(?:.*\.)?layers\.\d+",  # model.layers.<i>; lm_head is outside
    lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)
GENERIC = Family(name="generic", is_fallback=True)  # any AutoModelForMaskedLM: BERT, RoBERTa, ...

_registry: dict[str, Family] = {f.name: f for f in (LLADA, DREAM, GENERIC)}  # registration order


class FamilyNames(Sequence):
    """The registered family names, in registration order, as a live read-only sequence (like `dict.keys()`):
    every holder of `FAMILIES` (the harness's and the trainer config's allowed values) sees a family
    registered later. `("auto",) + FAMILIES` is live too."""

    def __init__(self, head: tuple[str, ...] = ()) -> None:
        self._head = head

    def _names(self) -> tuple[str, ...]:
        return self._head + tuple(_registry)

    def __getitem__(self, index):
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._head) + len(_registry)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._head or value in _registry

    def __radd__(self, other: tuple) -> FamilyNames:
        return FamilyNames(tuple(other) + self._head)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and tuple(self) == tuple(other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(self._names())


FAMILIES = FamilyNames()


def get_family(name: str) -> Family:
    """The registered family `name`; ValueError listing the registered ones otherwise."""
    if name not in _registry:
        raise ValueError(f"unknown family {name!r}; allowed: {', '.join(_registry)}")
    return _registry[name]


def detect_family(config: Any) -> str:
    """The name of the family that recognises a HF config's `model_type`, else the fallback family's."""
    model_type = str(getattr(config, "model_type", "")).lower()
    for family in _registry.values():
        if model_type in family.model_types:
            return family.name
    return next(f.name for f in _registry.values() if f.is_fallback)


def lora_target_pattern(family: Family, names: Sequence[str] = ()) -> str:
    r"""The regex (peft `target_modules`, matched against whole module names) of the modules named `names`
    (default: the family's `lora_targets`) inside the family's transformer blocks, e.g. LLaDA's
    `(?:.*\.)?blocks\.\d+\.(?:.*\.)?(?:q_proj|...|ff_out)`: a block's `ff_out`, never the head's."""
    names = tuple(names) or family.lora_targets
    if not names:
        raise ValueError(f"family {family.name!r} names no default LoRA modules; set lora.target_modules")
    return rf"{family.lora_blocks}\.(?:.*\.)?(?:{'|'.join(re.escape(n) for n in names)})"


def check_family(family: Family) -> None:
    """ValueError naming the field when `family` cannot join the registry as it stands."""
    from lm_eval_diffusion.sampler import SAMPLERS  # imports torch: only when a family is registered

    if not re.fullmatch(r"[a-z][a-z0-9_]*", family.name):
        raise ValueError(f"family name {family.name!r}: expected lowercase letters, digits or _ (a model_args value)")
    if family.default_sampler not in SAMPLERS:
        raise ValueError(f"family {family.name!r}: default_sampler {family.default_sampler!r} is not one of "
                         f"{', '.join(SAMPLERS)}")
    if family.model_types != tuple(t.lower() for t in family.model_types):
        raise ValueError(f"family {family.name!r}: model_types are matched lower-cased; got {family.model_types}")
    try:
        re.compile(lora_target_pattern(family)) if family.lora_targets else re.compile(family.lora_blocks)
    except re.error as err:
        raise ValueError(f"family {family.name!r}: lora_blocks is not a regex: {err}") from None
    if not set(family.eot_tokens) <= set(family.stop_tokens):
        raise ValueError(f"family {family.name!r}: eot_tokens must be among stop_tokens")
    replaced = _registry.get(family.name)
    if replaced is not None and replaced.is_fallback and not family.is_fallback:
        raise ValueError(f"family {family.name!r}: its replacement must stay the fallback (is_fallback=True)")
    for other in _registry.values():
        if other.name == family.name:
            continue
        claimed = set(other.model_types) & set(family.model_types)
        if claimed:
            raise ValueError(f"family {family.name!r}: model_type {sorted(claimed)[0]!r} is already "
                             f"recognised by family {other.name!r}")
        if other.is_fallback and family.is_fallback:
            raise ValueError(f"family {family.name!r}: family {other.name!r} is already the fallback")


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add `family` to the registry (after the built-ins); a name already registered needs `replace=True`."""
    if family.name in _registry and not replace:
        raise ValueError(f"family {family.name!r} is already registered; pass replace=True to replace it")
    check_family(family)
    _registry[family.name] = family
    return family

