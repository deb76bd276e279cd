"""Load a masked-diffusion checkpoint and expose logits and hidden states through one interface.

What differs between model families (LLaDA, Dream, any `AutoModelForMaskedLM`; how a config is
recognised, mask / stop / pad ids, logit shift, how padding is passed, loading) is each family's rule in
`lm_eval_diffusion.families`; this module asks that registry and names no family itself.

A LoRA checkpoint (a peft adapter folder: `adapter_config.json` and `adapter_model.safetensors`) loads as
its base with the adapter merged in (`resolve_checkpoint`, `load_backbone`), so every consumer sees a
plain HF model.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lm_eval_diffusion.families import FAMILIES, FamilySpec, detect_family, get_family  # noqa: F401 (re-exports)

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"  # peft's adapter folder marker; names the adapter's base model
# Any of these makes a folder's own tokenizer the one to load (else an adapter folder's base's is used).
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")


def model_forward(
    model: torch.nn.Module,
    spec: FamilySpec,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """Run `model` on (B, L) long ids; return logits aligned so that [:, i] predicts token i, and hidden states.

    `attention_mask` is (B, L) with 1 for real tokens (None: no padding). With padding, the family's
    `padding` convention turns it into the forward's keywords (e.g. Dream: a 4-D key mask and position
    ids, as in its own `diffusion_generate`); logits are shifted back where the family's are shifted.
    """
    family = get_family(spec.family)
    kwargs: dict[str, Any] = {"output_hidden_states": output_hidden_states, "return_dict": True}
    if attention_mask is not None and bool((attention_mask == 0).any()):  # .any() is a host-device sync
        kwargs.update(family.padding(attention_mask))
    kwargs.update(family.forward_kwargs)
    out = model(input_ids=input_ids, **kwargs)
    logits = out.logits
    if spec.shift_logits:
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    hidden = getattr(out, "hidden_states", None) if output_hidden_states else None
    return logits, hidden


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """'auto' -> bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU; else the named dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
             "fp16": torch.float16, "half": torch.float16, "float32": torch.float32, "fp32": torch.float32,
             "float": torch.float32}
    if dtype not in names:
        raise ValueError(f"dtype must be one of auto, {', '.join(names)}; got {dtype!r}")
    return names[dtype]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None -> cuda if available else cpu; a named CUDA device that does not exist raises."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} was asked for but CUDA is not available; use device=cpu")
    return device


@dataclass
class Backbone:
    """A loaded checkpoint: the HF model, its tokenizer, and its family facts."""

    model: torch.nn.Module
    tokenizer: Any
    spec: FamilySpec
    name: str
    honours_padding: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Aligned logits (B, L, V) and optional hidden states; see `model_forward`."""
        return model_forward(self.model, self.spec, input_ids, attention_mask, output_hidden_states)

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Aligned logits (B, L, V) for (B, L) long ids."""
        return self.forward(input_ids, attention_mask)[0]


@dataclass(frozen=True)
class CheckpointSource:
    """Where a checkpoint's parts come from: the base model (config, family, weights), the tokenizer
    folder, and the peft LoRA adapter folder merged into the base (None: a plain HF checkpoint)."""

    base: str
    tokenizer: str
    adapter: str | None = None

    @property
    def name(self) -> str:
        """What the checkpoint is called in logs and results: the adapter folder, else the checkpoint."""
        return self.adapter or self.base


def is_adapter_dir(path: str | Path) -> bool:
    """True for a local folder holding peft's `adapter_config.json` (a LoRA checkpoint)."""
    local = Path(path).expanduser()
    return local.is_dir() and (local / ADAPTER_CONFIG).is_file()


def has_tokenizer_files(path: str | Path) -> bool:
    """True when the local folder `path` holds a tokenizer of its own."""
    local = Path(path).expanduser()
    return local.is_dir() and any((local / name).is_file() for name in TOKENIZER_FILES)


def _hub_id_of_cache_path(path: Path) -> str | None:
    """'org/name' for a folder inside the HF cache (.../models--org--name/snapshots/<rev>), else None."""
    for part in path.parts:
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return None


def base_identity(name: str) -> str:
    """A base model's identity for comparison: a local folder's resolved path (or the hub id of the HF
    cache snapshot it lies in), else the hub id, case-folded as the hub treats it."""
    local = Path(name).expanduser()
    if local.exists():
        resolved = local.resolve()
        hub_id = _hub_id_of_cache_path(resolved)
        return hub_id.casefold() if hub_id else str(resolved)
    return name.strip().rstrip("/").casefold()


def resolve_checkpoint(pretrained: str, peft: str | None = None) -> CheckpointSource:
    """The parts of checkpoint `pretrained` (a HF checkpoint or a peft adapter folder), or of base
    `pretrained` with the adapter folder `peft`; ValueError naming both paths when the adapter was made
    for another base (`base_model_name_or_path` in its adapter_config.json, compared by `base_identity`)."""
    pretrained = str(pretrained)
    if peft is None and not is_adapter_dir(pretrained):
        return CheckpointSource(base=pretrained, tokenizer=pretrained)
    if peft is not None and is_adapter_dir(pretrained):
        raise ValueError(f"pretrained={pretrained} is itself a LoRA adapter folder ({ADAPTER_CONFIG}); pass either "
                         f"pretrained=<adapter dir> or pretrained=<base>,peft=<adapter dir>, not peft={peft} as well")
    adapter = str(peft) if peft is not None else pretrained
    config_file = Path(adapter).expanduser() / ADAPTER_CONFIG
    if not config_file.is_file():
        raise ValueError(f"peft={adapter}: no {ADAPTER_CONFIG} there (expected a peft adapter folder, e.g. a LoRA "
                         "run's <run_dir>/final)")
    try:
        recorded = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(f"{config_file} is not a peft adapter config: {err}") from None
    if not recorded:
        raise ValueError(f"{config_file} names no base model (base_model_name_or_path); pass "
                         f"pretrained=<base>,peft={adapter}")
    base = str(recorded)
    if peft is not None:
        if base_identity(pretrained) != base_identity(base):
            raise ValueError(
                f"LoRA adapter {adapter} was made for base {base} ({config_file}: base_model_name_or_path), "
                f"but the given base is {pretrained}; pass the adapter's base, or the adapter folder alone "
                f"(pretrained={adapter})")
        base = pretrained
    tokenizer = adapter if has_tokenizer_files(adapter) else base
    return CheckpointSource(base=base, tokenizer=tokenizer, adapter=adapter)


def load_config_and_tokenizer(pretrained: str, trust_remote_code: bool = True, revision: str | None = None,
                              peft: str | None = None):
    """Load a checkpoint's config and tokenizer (local dir or hub id) with a clear error when missing.

    For a LoRA adapter (`pretrained` an adapter folder, or `peft`; see `resolve_checkpoint`) the config is
    its base's and the tokenizer the adapter folder's where it has one, else the base's. `revision`
    applies to the base."""
    return _load_config_and_tokenizer(resolve_checkpoint(pretrained, peft), trust_remote_code, revision)


def _load_config_and_tokenizer(source: CheckpointSource, trust_remote_code: bool, revision: str | None):
    from transformers import AutoConfig, AutoTokenizer

    of = f" (base of LoRA adapter {source.adapter})" if source.adapter else ""
    try:
        config = AutoConfig.from_pretrained(source.base, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as err:
        moved = ""
        if source.adapter and Path(source.base).is_absolute() and not Path(source.base).exists():
            moved = (f" (if the base is elsewhere on this machine, set base_model_name_or_path in "
                     f"{Path(source.adapter) / ADAPTER_CONFIG} to it)")
        raise OSError(f"cannot load checkpoint {source.base!r}{of}{_hub_hint(source.base)}: {err}{moved}") from err
    tokenizer_revision = revision if source.tokenizer == source.base else None
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source.tokenizer, trust_remote_code=trust_remote_code, revision=tokenizer_revision
        )
    except OSError as err:
        of = of if source.tokenizer == source.base else f" (LoRA adapter on {source.base})"
        raise OSError(f"cannot load the tokenizer of {source.tokenizer!r}{of}{_hub_hint(source.tokenizer)}: "
                      f"{err}") from err
    return config, tokenizer


def _hub_hint(name: str) -> str:
    if Path(name).expanduser().exists():
        return ""
    return " (not a local directory; as a hub id it needs network access or a populated HF cache)"


def merge_adapter(model: torch.nn.Module, source: CheckpointSource,
                  adapter_weights: str | Path | dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """`model` (the base, as loaded) with `source.adapter` merged into its weights: a plain HF model again.

    `adapter_weights` (a safetensors file or a state dict with the key names of the adapter's
    adapter_model.safetensors) replaces the adapter's weights before merging, e.g. a LoRA run's EMA
    (jepa/ema_adapter.safetensors). The merged weights are in the base's load dtype: peft keeps the
    adapter in fp32 and adds its product B A (times alpha / r) to each weight in the weight's dtype; a
    non-finite merged weight is an error (peft's safe merge)."""
    from peft import PeftModel
    from peft.utils import set_peft_model_state_dict

    def size_mismatch(err: RuntimeError, weights: str) -> ValueError:
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        return ValueError(f"LoRA adapter {weights} does not fit base {source.base}: an adapted module's shape "
                          f"differs ({detail}); the adapter was made for a base of another size")

    try:
        peft_model = PeftModel.from_pretrained(model, source.adapter)
    except RuntimeError as err:
        if "size mismatch" not in str(err):
            raise
        raise size_mismatch(err, source.adapter) from None
    if adapter_weights is not None:
        what = "the replacement adapter weights" if isinstance(adapter_weights, dict) else str(adapter_weights)
        if not isinstance(adapter_weights, dict):
            from safetensors.torch import load_file

            adapter_weights = load_file(str(adapter_weights))
        expected = set(_adapter_keys(source.adapter))
        missing = sorted(expected - set(adapter_weights))
        unexpected = sorted(set(adapter_weights) - expected)
        if missing or unexpected:
            raise ValueError(f"{what} do not match LoRA adapter {source.adapter}'s weights: missing {missing[:3]} "
                             f"({len(missing)} in all), unexpected {unexpected[:3]} ({len(unexpected)} in all)")
        try:
            set_peft_model_state_dict(peft_model, adapter_weights)
        except RuntimeError as err:
            if "size mismatch" not in str(err):
                raise
            raise size_mismatch(err, what) from None
    return peft_model.merge_and_unload(safe_merge=True)


def _adapter_keys(adapter: str) -> list[str]:
    """The tensor names of an adapter folder's weights (adapter_model.safetensors, else .bin)."""
    folder = Path(adapter).expanduser()
    safetensors_file = folder / "adapter_model.safetensors"
    if safetensors_file.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors_file), framework="pt") as f:
            return list(f.keys())
    return list(torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True))


def padding_probe(backbone: Backbone) -> bool:
    """True when left padding plus the attention mask leaves the real tokens' logits unchanged."""
    spec = backbone.spec
    ids = [i for i in range(backbone.spec.vocab_size) if i != spec.mask_id and i not in spec.stop_ids][:6]
    prompt = torch.tensor([ids + [spec.mask_id] * 4], device=backbone.device)
    pad = torch.full((1, 5), spec.pad_id, device=backbone.device, dtype=prompt.dtype)
    padded = torch.cat([pad, prompt], dim=1)
    mask = torch.cat([torch.zeros_like(pad), torch.ones_like(prompt)], dim=1)
    with torch.no_grad():
        plain = backbone.logits(prompt).float()
        with_pad = backbone.logits(padded, mask).float()[:, pad.shape[1]:]
    # Position 0 is skipped: with shifted logits (Dream) it reads the output of the token before it,
    # which is a pad; no sampler ever predicts the first prompt token.
    plain, with_pad = plain[:, 1:], with_pad[:, 1:]
    tol = 1e-4 if backbone.dtype == torch.float32 else 3e-2
    scale = plain.abs().max().clamp(min=1.0)
    return bool(((plain - with_pad).abs().max() / scale) <= tol)


def load_backbone(
    pretrained: str,
    *,
    family: str | None = None,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = None,
    trust_remote_code: bool = True,
    mask_id: int | None = None,
    revision: str | None = None,
    probe_padding: bool = True,
    peft: str | None = None,
    adapter_weights: str | Path | dict[str, torch.Tensor] | None = None,
) -> Backbone:
    """Load `pretrained` (local dir or hub id) as a Backbone in eval mode on `device`.

    A LoRA checkpoint loads as base + adapter: `pretrained` a peft adapter folder (its base from
    adapter_config.json), or `pretrained=<base>` with `peft=<adapter folder>`. Family, mask ids and
    config come from the base, the tokenizer from the adapter folder where it has one (else the base).
    The base loads through its family's `load_model` in `dtype`, then the adapter (`adapter_weights`
    in place of its own weights, if given) is merged into it (`merge_adapter`): evaluation and analysis
    run on the merged weights, merged in the load dtype, through a plain HF model. `Backbone.name` is
    the adapter folder; `extra` holds "base" and "adapter".
    """
    source = resolve_checkpoint(str(pretrained), peft)
    if adapter_weights is not None and source.adapter is None:
        raise ValueError(f"adapter_weights given, but {source.name} is not a LoRA adapter folder ({ADAPTER_CONFIG})")
    name = source.name
    config, tokenizer = _load_config_and_tokenizer(source, trust_remote_code, revision)
    detected = detect_family(config)
    rules = get_family(family or detected)
    if rules.name != detected:
        warnings.warn(f"{name}: config says family {detected!r}, using {rules.name!r} as asked", stacklevel=2)
    spec = rules.resolve_spec(config, tokenizer, mask_id, name)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model = rules.load_model(source.base, config, trust_remote_code=trust_remote_code, revision=revision,
                             dtype=torch_dtype)
    model.to(torch_device)  # before the merge: peft puts the adapter beside its module, the merge runs there
    if source.adapter is not None:
        model = merge_adapter(model, source, adapter_weights)
    model.eval()
    backbone = Backbone(model=model, tokenizer=tokenizer, spec=spec, name=name)
    if source.adapter is not None:
        backbone.extra.update(base=source.base, adapter=source.adapter)
    if probe_padding:
        backbone.honours_padding = padding_probe(backbone)
        logger.info("%s: family=%s mask_id=%d stop_ids=%s padding honoured=%s",
                    name, spec.family, spec.mask_id, spec.stop_ids, backbone.honours_padding)
    return backbone


def adds_bos(tokenizer: Any) -> bool:
    """True when the tokenizer's default encoding starts a text with its BOS token (LLaDA's does)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prompts as one left-padded (B, P) long batch and its (B, P) attention mask (1 = token), P the longest
    prompt; the mask is None when every prompt has length P (nothing padded)."""
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), P), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, P - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, P - len(prompt):] = 1
    return ids, attention_mask if len({len(p) for p in prompts}) > 1 else None


def encode_prompt(tokenizer: Any, text: str, add_bos: bool | None = None) -> list[int]:
    """Prompt ids as training, evaluation and the probe all see them: the text's tokens, after BOS
    when `add_bos` (None: when the tokenizer's own default adds it). Never trailing specials such as
    BERT's [SEP], which would sit between a prompt and its answer."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if add_bos is None:
        add_bos = adds_bos(tokenizer)
    if add_bos:
        bos = getattr(tokenizer, "bos_token_id", None)
        if bos is None:
            raise ValueError("add_bos=True but the tokenizer has no BOS token")
        ids = [int(bos)] + ids
    return ids
