"""Load a masked-diffusion checkpoint and expose logits and hidden states through one interface.

Families (see DESIGN.md): LLaDA (`model_type` "llada", remote code), Dream (`model_type` "Dream",
remote code, logits shifted right by one), and any generic `AutoModelForMaskedLM`. Everything that
differs between them (mask id, stop ids, logit shift, how padding is passed) is decided here once.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lm_eval_diffusion import FAMILIES

logger = logging.getLogger(__name__)


def _dtype_kwarg() -> str:
    """`from_pretrained`'s dtype keyword: `dtype` from transformers 4.56, `torch_dtype` before (deprecated after)."""
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


# End-of-turn / end-of-text token *strings* used by the supported tokenizers. Their ids are looked up
# in each tokenizer, never hard-coded.
STOP_TOKEN_STRINGS = ("<|eot_id|>", "<|endoftext|>", "<|im_end|>", "<|end_of_text|>")


@dataclass(frozen=True)
class FamilySpec:
    """What the sampler, the ELBO and the trainer need to know about a checkpoint's family."""

    family: str
    mask_id: int
    stop_ids: tuple[int, ...]  # EOS and EOT ids: generation ends at the first of these
    pad_id: int
    shift_logits: bool  # Dream: the logits at position i predict token i + 1
    vocab_size: int
    eos_id: int = -1  # the id that pads a response to the batch length in training
    eot_id: int | None = None


def detect_family(config: Any) -> str:
    """Family name from a HF config's `model_type` (llada | dream | generic)."""
    model_type = str(getattr(config, "model_type", "")).lower()
    if model_type == "llada":
        return "llada"
    if model_type == "dream":
        return "dream"
    return "generic"


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if v is not None]
    return [int(value)]


def resolve_spec(config: Any, tokenizer: Any, family: str, mask_id: int | None, name: str) -> FamilySpec:
    """Work out mask, stop and pad ids from the config and tokenizer; raise clearly when impossible."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r} for {name}; allowed: {', '.join(FAMILIES)}")
    vocab_size = int(getattr(config, "vocab_size", 0) or getattr(config, "embedding_size", 0) or 0)
    if mask_id is None:
        if family in ("llada", "dream"):
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
    for token in STOP_TOKEN_STRINGS:
        if token in vocab:
            eos_ids.append(int(vocab[token]))
            if token in ("<|eot_id|>", "<|im_end|>") and eot_id is None:
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
        family=family,
        mask_id=mask_id,
        stop_ids=stop_ids,
        pad_id=int(pad_id),
        shift_logits=family == "dream",
        vocab_size=vocab_size or tokenizer_size,
        eos_id=int(eos_id[0]),
        eot_id=eot_id,
    )


def model_forward(
    model: torch.nn.Module,
    spec: FamilySpec,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """Run `model` on (B, L) long ids; return logits aligned so that [:, i] predicts token i, and hidden states.

    `attention_mask` is (B, L) with 1 for real tokens (None: no padding). With padding, generic and Dream
    models also get position ids that restart at the first real token, and Dream a 4-D key mask as in its
    own `diffusion_generate`.
    """
    kwargs: dict[str, Any] = {"output_hidden_states": output_hidden_states, "return_dict": True}
    has_padding = attention_mask is not None and bool((attention_mask == 0).any())
    if has_padding:
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        if spec.family == "dream":
            keep = attention_mask.bool()
            kwargs["attention_mask"] = keep[:, None, None, :].expand(-1, 1, keep.shape[1], -1)
            kwargs["position_ids"] = position_ids
        elif spec.family == "generic":
            kwargs["attention_mask"] = attention_mask
            kwargs["position_ids"] = position_ids
        else:
            kwargs["attention_mask"] = attention_mask
    if spec.family == "llada":
        kwargs["use_cache"] = False
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
    from transformers import AutoModel, AutoModelForMaskedLM

    name = str(pretrained)
    config, tokenizer = load_config_and_tokenizer(name, trust_remote_code, revision)
    detected = detect_family(config)
    family = family or detected
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(FAMILIES)}")
    if family != detected:
        warnings.warn(f"{name}: config says family {detected!r}, using {family!r} as asked", stacklevel=2)
    spec = resolve_spec(config, tokenizer, family, mask_id, name)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    if family == "llada":
        config.use_cache = False  # LLaDA's remote code under transformers 4.57 needs this
    # The loading class follows the checkpoint, not the family override: remote-code checkpoints
    # (LLaDA, Dream) register their head under AutoModel, native encoders under AutoModelForMaskedLM.
    auto_map = getattr(config, "auto_map", None) or {}
    use_auto_model = "AutoModelForMaskedLM" not in auto_map and "AutoModel" in auto_map
    auto_cls = AutoModel if use_auto_model else AutoModelForMaskedLM
    model = auto_cls.from_pretrained(
        name, config=config, trust_remote_code=trust_remote_code, revision=revision,
        **{_dtype_kwarg(): torch_dtype},
    )
    model.to(torch_device).eval()
    backbone = Backbone(model=model, tokenizer=tokenizer, spec=spec, name=name)
    if probe_padding:
        backbone.honours_padding = padding_probe(backbone)
        logger.info("%s: family=%s mask_id=%d stop_ids=%s padding honoured=%s",
                    name, family, spec.mask_id, spec.stop_ids, backbone.honours_padding)
    return backbone


def adds_bos(tokenizer: Any) -> bool:
    """True when the tokenizer's default encoding starts a text with its BOS token (LLaDA's does)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


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
