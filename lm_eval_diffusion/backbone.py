"""Load a masked-diffusion checkpoint and expose logits and hidden states through one interface.

What differs between model families (LLaDA, Dream, any `AutoModelForMaskedLM`; how a config is
recognised, mask / stop / pad ids, logit shift, how padding is passed, loading) is each family's rule in
`lm_eval_diffusion.families`; this module asks that registry and names no family itself.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lm_eval_diffusion.families import FAMILIES, FamilySpec, detect_family, get_family  # noqa: F401 (re-exports)

logger = logging.getLogger(__name__)


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


def load_config_and_tokenizer(pretrained: str, trust_remote_code: bool = True, revision: str | None = None):
    """Load a checkpoint's config and tokenizer (local dir or hub id) with a clear error when missing."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(pretrained, trust_remote_code=trust_remote_code, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(
            pretrained, trust_remote_code=trust_remote_code, revision=revision
        )
    except OSError as err:
        hint = "" if Path(pretrained).exists() else " (not a local directory; as a hub id it needs network access or a populated HF cache)"
        raise OSError(f"cannot load checkpoint {pretrained!r}{hint}: {err}") from err
    return config, tokenizer


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
) -> Backbone:
    """Load `pretrained` (local dir or hub id) as a Backbone in eval mode on `device`."""
    name = str(pretrained)
    config, tokenizer = load_config_and_tokenizer(name, trust_remote_code, revision)
    detected = detect_family(config)
    rules = get_family(family or detected)
    if rules.name != detected:
        warnings.warn(f"{name}: config says family {detected!r}, using {rules.name!r} as asked", stacklevel=2)
    spec = rules.resolve_spec(config, tokenizer, mask_id, name)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    model = rules.load_model(name, config, trust_remote_code=trust_remote_code, revision=revision, dtype=torch_dtype)
    model.to(torch_device).eval()
    backbone = Backbone(model=model, tokenizer=tokenizer, spec=spec, name=name)
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
