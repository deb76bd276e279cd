"""`--model_args` of the `llada_diffusion` lm-eval model: the fields, their parsing and validation.

    DiffusionLMArgs.from_kwargs({"pretrained": "<ckpt>", "steps": "8"})  # -> (args, keys given)

Each option is documented once, as a comment on its field; `validate` names a bad key and its allowed
values; `merge_cli` folds lm-eval's `--batch_size` / `--device` in; `check_sampler_options` rejects
options of the sampler a run does not use. The harness (`harness.py`) reads nothing else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, get_type_hints

import torch

from lm_eval_diffusion.backbone import FAMILIES
from lm_eval_diffusion.coerce import CoercionError, coerce
from lm_eval_diffusion.sampler import DREAM_ALGS, REMASKING, SAMPLERS, DreamSamplerConfig, LladaSamplerConfig
from lm_eval_diffusion.stops import parse_until

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 4096  # when neither the config nor the tokenizer states a context length


@dataclass
class DiffusionLMArgs:
    """`--model_args` of DiffusionLM; values may arrive as strings and are parsed by `from_kwargs`."""

    pretrained: str = ""  # checkpoint directory or hub id (required); a LoRA adapter folder loads its base + adapter
    peft: str | None = None  # LoRA adapter folder (peft) merged into pretrained, which is then its base; None: none
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float16 | float32
    device: str | None = None  # None: cuda if available, else cpu; under data parallel cuda:LOCAL_RANK
    trust_remote_code: bool = True  # LLaDA and Dream ship their modeling code with the checkpoint
    revision: str | None = None
    family: str | None = None  # llada | dream | generic; None: from the config's model_type
    mask_id: int | None = None  # None: config `mask_token_id`, else the tokenizer's mask token
    sampler: str | None = None  # llada | dream; None: dream for Dream checkpoints, llada otherwise
    steps: int = 128  # forward passes per generation (all blocks together)
    gen_length: int | None = None  # None: each request's max_gen_toks (256 if unset); llada rounds up to blocks
    block_length: int = 128  # llada sampler only
    temperature: float = 0.0  # 0: greedy; request kwargs cannot change it (see generate_until)
    remasking: str = "low_confidence"  # llada sampler: low_confidence | random
    alg: str = "entropy"  # dream sampler: origin | maskgit_plus | topk_margin | entropy (Dream's eval default)
    alg_temp: float | None = None  # dream sampler: None/0 deterministic top-k (Dream's eval uses 0)
    eps: float = 1e-3  # dream sampler: end of the time grid
    cfg_scale: float = 0.0  # unsupervised classifier-free guidance (llada sampler and the ELBO)
    logits_eos_inf: bool = False  # llada sampler: never generate EOS
    confidence_eos_eot_inf: bool = False  # llada sampler: EOS/EOT get no confidence
    early_exit: bool = True  # drop a row from the batch once its returned text is decided (exact; see sampler.py)
    threshold: float | None = None  # parallel threshold decoding (Fast-dLLM), not the paper's protocol; None: off
    mc_num: int = 128  # Monte-Carlo samples per loglikelihood request
    mc_batch_size: int = 32  # masked copies per forward in loglikelihood
    greedy_check: bool = False  # loglikelihood's is_greedy: fill the continuation greedily and compare
    max_length: int | None = None  # prompt + generation cap; None: from the config/tokenizer, else 4096
    batch_size: int | str = 1  # prompts per forward in generate_until; auto: 8 on CUDA, 1 on CPU
    max_batch_size: int | None = None  # accepted from the CLI; unused (no auto-tuning)
    add_bos_token: bool | None = None  # prepend BOS to every context; None: where the tokenizer's default adds it (as in training)
    seed: int = 1234  # seeds sampling noise and, per request, the ELBO masks
    compile: bool = False  # forwards through torch.compile with bucketed shapes (compiled.py; docs/evaluation.md)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> tuple[DiffusionLMArgs, set[str]]:
        """Parse `kwargs` (strings allowed) into the dataclass; return it and the keys that were given."""
        hints = get_type_hints(cls)
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown model_args {', '.join(unknown)} for llada_diffusion; allowed: {', '.join(allowed)}"
            )
        if isinstance(kwargs.get("batch_size"), str):
            kwargs = {**kwargs, "batch_size": kwargs["batch_size"].strip().lower()}  # AUTO, Auto:4 -> auto
        try:
            parsed = {name: coerce(value, hints[name], f"model_args {name}") for name, value in kwargs.items()}
        except CoercionError as err:
            raise ValueError(str(err)) from None
        args = cls(**parsed)
        args.validate()
        return args, set(kwargs)

    def validate(self) -> None:
        """Raise ValueError naming the bad key and the allowed values."""
        if not self.pretrained:
            raise ValueError("model_args must include pretrained=<checkpoint dir or hub id>")
        choices = {"family": FAMILIES, "sampler": SAMPLERS, "remasking": REMASKING, "alg": DREAM_ALGS}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        positive = ("steps", "block_length", "mc_num", "mc_batch_size")
        for name in positive + ("gen_length", "max_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if isinstance(self.batch_size, str) and not self.batch_size.startswith("auto"):
            raise ValueError(f"batch_size must be an integer or 'auto', got {self.batch_size!r}")
        if isinstance(self.batch_size, int) and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def sampler_config(self, sampler: str, gen_length: int) -> LladaSamplerConfig | DreamSamplerConfig:
        """The settings `sampler` (llada | dream) runs a canvas of `gen_length` tokens with."""
        if sampler == "llada":
            return LladaSamplerConfig(
                steps=self.steps, gen_length=gen_length, block_length=self.block_length,
                temperature=self.temperature, remasking=self.remasking, cfg_scale=self.cfg_scale,
                logits_eos_inf=self.logits_eos_inf, confidence_eos_eot_inf=self.confidence_eos_eot_inf,
                early_exit=self.early_exit, threshold=self.threshold,
            )
        return DreamSamplerConfig(
            steps=self.steps, gen_length=gen_length, temperature=self.temperature, alg=self.alg,
            alg_temp=self.alg_temp, eps=self.eps, early_exit=self.early_exit, threshold=self.threshold,
        )

    def request_settings(self, gen_kwargs: dict[str, Any] | None, warn_once: Callable[[str, str], None],
                         default_gen_length: int) -> tuple[list[str], int]:
        """A generate_until request's stop strings and requested generation length (before the sampler's
        rounding); `warn_once(key, message)` reports, once per key, kwargs this model cannot honour."""
        kwargs = dict(gen_kwargs or {})
        until = parse_until(kwargs.pop("until", None))
        max_gen_toks = kwargs.pop("max_gen_toks", None)
        do_sample = kwargs.pop("do_sample", None)
        temperature = kwargs.pop("temperature", None)
        # Sampling settings come from --model_args only: tasks mostly hard-code greedy kwargs, and one
        # run should not mix two samplers. A disagreeing request is reported once.
        is_sampling = self.temperature > 0
        if do_sample is not None and bool(do_sample) != is_sampling:
            warn_once("do_sample", f"request do_sample={do_sample} ignored: --model_args temperature="
                                   f"{self.temperature} decides (set it there to change sampling)")
        if temperature is not None and float(temperature) != self.temperature:
            warn_once("temperature", f"request temperature={temperature} ignored: the sampler uses "
                                     f"temperature={self.temperature} from --model_args")
        for key in sorted(kwargs):
            warn_once(f"kwarg:{key}", f"generation kwarg {key}={kwargs[key]!r} is not supported by "
                                      "the diffusion sampler and is ignored")
        if self.gen_length is not None:
            return until, self.gen_length
        return until, int(max_gen_toks) if max_gen_toks is not None else default_gen_length

    def full_loop_row_forwards(self, sampler: str) -> int:
        """Row-forwards one request costs in the fixed-schedule loop without early exit."""
        return self.steps * (2 if sampler == "llada" and self.cfg_scale > 0 else 1)

    def sampler_info(self, sampler: str) -> dict[str, Any]:
        """The options of `sampler` a results file records (the end of lm-eval's model info)."""
        info: dict[str, Any] = {}
        if sampler == "dream" and self.early_exit:
            info["exit_check_every"] = DreamSamplerConfig.exit_check_every
        if sampler == "llada":
            info.update(block_length=self.block_length, remasking=self.remasking,
                        logits_eos_inf=self.logits_eos_inf, confidence_eos_eot_inf=self.confidence_eos_eot_inf)
        else:
            info.update(alg=self.alg, alg_temp=self.alg_temp, eps=self.eps)
        return info


def merge_cli(model_args: dict[str, Any], cli: dict[str, Any] | None) -> dict[str, Any]:
    """`--batch_size`/`--device`/`--max_batch_size` under model_args, which win when both are set."""
    merged = {k: v for k, v in (cli or {}).items() if v is not None}
    is_rank0 = int(os.environ.get("RANK", "0")) == 0
    for key, value in model_args.items():
        if key in merged and str(merged[key]) != str(value) and is_rank0:
            logger.warning("%s=%s in --model_args overrides --%s %s", key, value, key, merged[key])
    if "device" in merged and "device" not in model_args:
        wanted = str(merged["device"])
        # lm-eval's CLI passes device=cuda:0 when --device is not given at all.
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            if is_rank0:
                logger.warning("--device %s asked for but CUDA is not available: running on cpu", wanted)
            merged["device"] = "cpu"
    merged.update(model_args)
    return merged


def check_sampler_options(sampler: str, given: set[str], args: DiffusionLMArgs) -> None:
    """Options of the other sampler are an error, not silently ignored."""
    only = {
        "llada": {"block_length", "remasking", "logits_eos_inf", "confidence_eos_eot_inf"},
        "dream": {"alg", "alg_temp", "eps"},
    }
    other = "dream" if sampler == "llada" else "llada"
    wrong = sorted(given & only[other])
    if wrong:
        raise ValueError(
            f"model_args {', '.join(wrong)} apply to sampler={other} only; this run uses sampler={sampler}"
        )
    if sampler == "dream" and args.cfg_scale > 0:
        raise ValueError("cfg_scale > 0 is supported by sampler=llada (and the ELBO), not by sampler=dream")


def context_length(config: Any, tokenizer: Any) -> int:
    """The default max_length: the context length the model config, then the tokenizer, states, else
    DEFAULT_MAX_LENGTH."""
    for name in ("max_sequence_length", "max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return DEFAULT_MAX_LENGTH
