"""lm-eval model `llada_diffusion` (alias `diffusion_lm`) for masked diffusion LMs (LLaDA, Dream, generic).

Smallest CPU run (tiny checkpoint from `dllm_jepa_train.toy.models`, task from the tests):

    lm_eval --model llada_diffusion --device cpu \
        --model_args pretrained=<tiny ckpt>,steps=8,gen_length=16,block_length=8 \
        --tasks tiny_echo --include_path tests/assets/tiny_task --limit 4

Data parallel: `accelerate launch -m lm_eval ...` or `torchrun --nproc_per_node N -m lm_eval ...`;
each process evaluates its shard and lm-eval gathers the scores through this class's collectives.

Requests are handled here (batching, stops, truncation, ranks); the algorithms live in `sampler.py`
(generation) and `likelihood.py` (Monte-Carlo ELBO), the checkpoint facts in `backbone.py`.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, get_type_hints

import torch
from lm_eval.api.model import LM
from tqdm import tqdm

from lm_eval_diffusion.backbone import FAMILIES, Backbone, adds_bos, encode_prompt, load_backbone, resolve_device
from lm_eval_diffusion.coerce import CoercionError, coerce
from lm_eval_diffusion.families import get_family
from lm_eval_diffusion.likelihood import elbo, single_token_logprobs
from lm_eval_diffusion.sampler import (
    DREAM_ALGS,
    REMASKING,
    SAMPLERS,
    DreamSamplerConfig,
    LladaSamplerConfig,
    dream_generate,
    llada_generate,
)

logger = logging.getLogger(__name__)

DEFAULT_GEN_LENGTH = 256  # lm-eval's own default max_gen_toks, for requests that do not set it
AUTO_BATCH_SIZE = {"cuda": 8, "cpu": 1}  # what batch_size=auto means; no memory probing is done
DEFAULT_MAX_LENGTH = 4096  # when neither the config nor the tokenizer states a context length


@dataclass
class DiffusionLMArgs:
    """`--model_args` of DiffusionLM; values may arrive as strings and are parsed by `from_kwargs`."""

    pretrained: str = ""  # checkpoint directory or hub id (required)
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


def _merge_cli(model_args: dict[str, Any], cli: dict[str, Any] | None) -> dict[str, Any]:
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


class DiffusionLM(LM):
    """lm-eval adapter: generate_until through the iterative-unmasking sampler, loglikelihood as an ELBO."""

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        args, given = DiffusionLMArgs.from_kwargs(model_args)
        self.args = args
        self._warned: set[str] = set()
        self._rank, self._world_size, device = _setup_distributed(args.device)
        self._device = device
        self.backbone: Backbone = load_backbone(
            args.pretrained,
            family=args.family,
            dtype=args.dtype,
            device=device,
            trust_remote_code=args.trust_remote_code,
            mask_id=args.mask_id,
            revision=args.revision,
        )
        self.tokenizer = self.backbone.tokenizer
        spec = self.backbone.spec
        self.sampler = args.sampler or get_family(spec.family).default_sampler
        _check_sampler_options(self.sampler, given, args)
        self.batch_size = self._resolve_batch_size(args.batch_size)
        self.max_length = args.max_length or _context_length(self.backbone)
        eot = {spec.eot_id} if spec.eot_id is not None else set()
        # EOS for logits_eos_inf means end of text (LLaDA's <|endoftext|>), not the chat end-of-turn.
        self.eos_ids = tuple(i for i in spec.stop_ids if i not in eot)
        self.eot_ids = tuple(eot)
        if args.gen_length is not None:
            self._sampler_config(self._gen_length(args.gen_length)).validate()
        if args.add_bos_token is None:
            args.add_bos_token = adds_bos(self.tokenizer)
        if args.add_bos_token and self.tokenizer.bos_token_id is None:
            raise ValueError(f"add_bos_token=True but the tokenizer of {args.pretrained} has no BOS token")
        self._row_forwards: dict[str, dict[str, int]] = {}  # task -> counts, summed over ranks (rank 0)
        if self._rank == 0:
            logger.info(
                "llada_diffusion: %s family=%s sampler=%s batch_size=%d padding_honoured=%s world_size=%d",
                args.pretrained, spec.family, self.sampler, self.batch_size, self.backbone.honours_padding,
                self._world_size,
            )

    # ---- construction from the CLI -------------------------------------------------------------------
    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> DiffusionLM:
        """From `--model_args k=v,...` plus lm-eval's `--batch_size/--device`; model_args win on conflict."""
        from lm_eval.utils import simple_parse_args_string

        return cls(**_merge_cli(simple_parse_args_string(arg_string), additional_config))

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> DiffusionLM:
        """From a model_args dict plus lm-eval's `--batch_size/--device`; model_args win on conflict."""
        return cls(**_merge_cli(dict(arg_dict), additional_config))

    def _resolve_batch_size(self, batch_size: int | str) -> int:
        if isinstance(batch_size, int):
            return batch_size
        chosen = AUTO_BATCH_SIZE["cuda" if self._device.type == "cuda" else "cpu"]
        self._warn_once("auto", f"batch_size={batch_size}: no memory probing, using batch_size={chosen} "
                                f"on {self._device.type}")
        return chosen

    # ---- distributed collectives used by lm-eval's evaluator ------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate `tensor` (0-d tensors become length 1) from every rank, in rank order."""
        if self._world_size == 1:
            return tensor
        import torch.distributed as dist

        local = tensor.to(self._device).reshape(-1)
        parts = [torch.empty_like(local) for _ in range(self._world_size)]
        dist.all_gather(parts, local)
        return torch.cat(parts)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """Every rank's `obj` as a list on rank `dst`; None elsewhere."""
        if self._world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self._world_size if self._rank == dst else None
        dist.gather_object(obj, out, dst=dst)
        return out

    def barrier(self) -> None:
        """Wait for every rank."""
        if self._world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # ---- tokenisation ----------------------------------------------------------------------------
    @property
    def prefix_token_id(self) -> int:
        """Stands in for an empty context: BOS when the tokenizer has one, else EOS (lm-eval's convention)."""
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None else self.backbone.spec.eos_id

    def tok_encode(self, text: str) -> list[int]:
        """Token ids of `text` encoded as the trainer encodes prompts (`encode_prompt`)."""
        return encode_prompt(self.tokenizer, text, bool(self.args.add_bos_token))

    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        if not chat_template:
            return None
        return chat_template if isinstance(chat_template, str) else self.tokenizer.chat_template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The tokenizer's chat template applied to `chat_history`, as text."""
        if not self.tokenizer.chat_template:
            raise ValueError(f"--apply_chat_template: the tokenizer of {self.args.pretrained} has no chat template")
        return self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def get_model_info(self) -> dict[str, Any]:
        """Recorded in lm-eval's results config."""
        spec = self.backbone.spec
        a = self.args
        info = {"family": spec.family, "mask_id": spec.mask_id, "sampler": self.sampler, "steps": a.steps,
                "gen_length": a.gen_length, "temperature": a.temperature, "cfg_scale": a.cfg_scale,
                "mc_num": a.mc_num, "padding_honoured": self.backbone.honours_padding,
                "early_exit": a.early_exit, "threshold": a.threshold,
                "decoding": "paper (fixed schedule)" if a.threshold is None else
                            f"parallel threshold {a.threshold} (Fast-dLLM; not the paper's protocol)",
                "row_forwards": {task: dict(counts) for task, counts in sorted(self._row_forwards.items())}}
        if self.sampler == "dream" and a.early_exit:
            info["exit_check_every"] = DreamSamplerConfig.exit_check_every
        if self.sampler == "llada":
            info.update(block_length=a.block_length, remasking=a.remasking, logits_eos_inf=a.logits_eos_inf,
                        confidence_eos_eot_inf=a.confidence_eos_eot_inf)
        else:
            info.update(alg=a.alg, alg_temp=a.alg_temp, eps=a.eps)
        return info

    # ---- generation ------------------------------------------------------------------------------
    def _gen_length(self, requested: int) -> int:
        """The canvas length for a request: llada rounds up to a multiple of block_length (with a warning)."""
        if self.sampler != "llada":
            return requested
        block = self.args.block_length
        rounded = -(-requested // block) * block
        if rounded != requested:
            self._warn_once(
                f"round{requested}",
                f"gen_length {requested} rounded up to {rounded}, a multiple of block_length={block}",
            )
        return rounded

    def _sampler_config(self, gen_length: int) -> LladaSamplerConfig | DreamSamplerConfig:
        a = self.args
        if self.sampler == "llada":
            return LladaSamplerConfig(
                steps=a.steps, gen_length=gen_length, block_length=a.block_length, temperature=a.temperature,
                remasking=a.remasking, cfg_scale=a.cfg_scale, logits_eos_inf=a.logits_eos_inf,
                confidence_eos_eot_inf=a.confidence_eos_eot_inf, early_exit=a.early_exit, threshold=a.threshold,
            )
        return DreamSamplerConfig(
            steps=a.steps, gen_length=gen_length, temperature=a.temperature, alg=a.alg, alg_temp=a.alg_temp, eps=a.eps,
            early_exit=a.early_exit, threshold=a.threshold,
        )

    def _generate_token_ids(
        self, prompts: list[list[int]], gen_length: int, untils: list[list[str]] | None = None,
        seeds: list[int] | None = None,
    ) -> tuple[list[list[int]], list[int]]:
        """Generated ids of one batch of prompts (stops not yet cut) and each row's row-forwards.

        A row that exited early (see `sampler.py`) is cut at its first never-committed position: its
        text is decided by the ids before it. Prompts of unequal length are left-padded with an
        attention mask, which the caller only does when the backbone honours padding. Row r draws its
        random numbers from a generator seeded with `seeds[r]` (None: the run's seed), so seeded
        sampling does not depend on the batch size, nor on which rows exit early.
        """
        spec = self.backbone.spec
        lengths = [len(p) for p in prompts]
        P = max(lengths)
        ids = torch.full((len(prompts), P), spec.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), P), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, P - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attention_mask[row, P - len(prompt):] = 1
        is_padded = len(set(lengths)) > 1
        if is_padded and not self.backbone.honours_padding:
            raise RuntimeError("internal: prompts of unequal length batched for a model that ignores padding")
        attention_mask = attention_mask.to(self._device) if is_padded else None
        seeds = seeds if seeds is not None else [self.args.seed] * len(prompts)
        generators = [torch.Generator(device=self._device).manual_seed(seed) for seed in seeds]
        row_forwards = torch.zeros(len(prompts), dtype=torch.long, device=self._device)
        exit_check = None
        if untils is not None and any(any(u) for u in untils):
            exit_check = partial(self._until_exit_check, untils)
        common = {"mask_id": spec.mask_id, "attention_mask": attention_mask, "stop_ids": spec.stop_ids,
                  "generator": generators, "exit_check": exit_check, "row_forwards": row_forwards}
        config = self._sampler_config(gen_length)
        if isinstance(config, LladaSamplerConfig):
            canvas = llada_generate(self.backbone.logits, ids.to(self._device), config, eos_ids=self.eos_ids,
                                    eot_ids=self.eot_ids, **common)
        else:
            canvas = dream_generate(self.backbone.logits, ids.to(self._device), config, **common)
        generated = [_until_first(row, spec.mask_id) for row in canvas[:, P:].tolist()]
        return generated, row_forwards.tolist()

    def _until_exit_check(self, untils: list[list[str]], rows: torch.Tensor, generated: torch.Tensor,
                          is_done: torch.Tensor) -> torch.Tensor:
        """`exit_check` for the sampler: also done, a row whose committed prefix is cut by its `until`."""
        mask_id = self.backbone.spec.mask_id
        stop_ids = set(self.backbone.spec.stop_ids)
        done = is_done.tolist()  # host sync: the `until` strings are text
        for r, (row, ids) in enumerate(zip(rows.tolist(), generated.tolist())):
            if done[r] or not any(untils[row]):
                continue
            prefix = _until_first(ids, mask_id)
            if not any(tok in stop_ids for tok in prefix):
                done[r] = self._until_decides(prefix, untils[row])
        return torch.tensor(done, dtype=torch.bool, device=is_done.device)

    def _until_decides(self, prefix: list[int], until: list[str]) -> bool:
        """True when `postprocess` returns the same text for `prefix` (ids, no stop id) and for every
        continuation of it: an `until` cut inside the text that no later token can move.

        Decoding is taken to be prefix-stable except at the boundary: the text of all tokens but the
        last (less trailing U+FFFD of a split UTF-8 character, and one more character when the tokenizer
        cleans up spaces, which can delete the space before a boundary) must begin the text of any
        continuation; it is checked against the text of `prefix` itself.
        """
        if len(prefix) < 2:
            return False
        decode = partial(self.tokenizer.decode, skip_special_tokens=False)
        stable = decode(prefix[:-1]).rstrip("\ufffd")
        if getattr(self.tokenizer, "clean_up_tokenization_spaces", False):
            stable = stable[:-1]
        return decode(prefix).startswith(stable) and until_cut_if_decided(stable, until) is not None

    def _request_settings(self, gen_kwargs: dict[str, Any]) -> tuple[list[str], int]:
        """A request's stop strings and generation length; warns once about kwargs it cannot honour."""
        kwargs = dict(gen_kwargs or {})
        until = kwargs.pop("until", None)
        if isinstance(until, str):
            until = [until]
        elif until is None:
            until = []
        elif not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
            raise ValueError(f"generation kwarg `until` must be a string or a list of strings, got {until!r}")
        max_gen_toks = kwargs.pop("max_gen_toks", None)
        do_sample = kwargs.pop("do_sample", None)
        temperature = kwargs.pop("temperature", None)
        # Sampling settings come from --model_args only: tasks mostly hard-code greedy kwargs, and one
        # run should not mix two samplers. A disagreeing request is reported once.
        is_sampling = self.args.temperature > 0
        if do_sample is not None and bool(do_sample) != is_sampling:
            self._warn_once("do_sample", f"request do_sample={do_sample} ignored: --model_args temperature="
                                         f"{self.args.temperature} decides (set it there to change sampling)")
        if temperature is not None and float(temperature) != self.args.temperature:
            self._warn_once("temperature", f"request temperature={temperature} ignored: the sampler uses "
                                           f"temperature={self.args.temperature} from --model_args")
        for key in sorted(kwargs):
            self._warn_once(f"kwarg:{key}", f"generation kwarg {key}={kwargs[key]!r} is not supported by "
                                            "the diffusion sampler and is ignored")
        if self.args.gen_length is not None:
            requested = self.args.gen_length
        else:
            requested = int(max_gen_toks) if max_gen_toks is not None else DEFAULT_GEN_LENGTH
        return list(until), self._gen_length(requested)

    def _fit_prompt(self, ids: list[int], room: int) -> list[int]:
        if room < 1:
            raise ValueError(f"max_length={self.max_length} leaves no room for a prompt; raise max_length")
        if not ids:
            return [self.prefix_token_id]
        if len(ids) > room:
            self._warn_once("truncate", f"prompts longer than max_length - generation = {room} tokens are "
                                        f"left-truncated (first case: {len(ids)} tokens)")
            return ids[-room:]
        return ids

    def postprocess(self, generated: list[int], until: list[str]) -> str:
        """Cut at the first stop id, decode, cut at the earliest `until` string, drop special tokens."""
        stop_ids = set(self.backbone.spec.stop_ids)
        end = next((i for i, tok in enumerate(generated) if tok in stop_ids), len(generated))
        text = self.tokenizer.decode(generated[:end], skip_special_tokens=False)
        for stop in until:
            if stop:
                text = text.split(stop, 1)[0]
        for token in self.tokenizer.all_special_tokens:
            text = text.replace(token, "")
        return text

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """Generated text per request, in request order; see `postprocess` for stop handling.

        Batches hold requests of one generation length (the only generation kwarg that shapes the
        canvas; each request keeps its own `until`) and, for models that ignore padding, one prompt length.
        """
        items = []
        occurrences: dict[str, int] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args
            until, gen_length = self._request_settings(gen_kwargs)
            prompt = self._fit_prompt(self.tok_encode(context), self.max_length - gen_length)
            # Sampling noise per request, from its content and how often it came before (lm-eval's
            # repeats), never its batch: outputs do not depend on the batch size or on early exit.
            key = json.dumps([context, gen_length])
            occurrences[key] = occurrences.get(key, -1) + 1
            seed = zlib.crc32(json.dumps([self.args.seed, prompt, gen_length, occurrences[key]]).encode())
            items.append((index, prompt, until, gen_length, seed))
        padding_ok = self.backbone.honours_padding

        def group_key(item: tuple) -> tuple[int, int]:
            # A model that ignores padding only ever sees batches of equal-length prompts.
            return item[3], 0 if padding_ok else len(item[1])

        # Longest canvas first, so the first batch shows the worst case (memory, time); this order also
        # keeps every group contiguous.
        items.sort(key=lambda item: (-item[3], -len(item[1]), item[0]))
        results: list[str | None] = [None] * len(requests)
        forwards: dict[str, list[int]] = {}  # task -> [requests, row-forwards, row-forwards of the full loop]
        bar = tqdm(total=len(requests), desc="generate_until", disable=disable_tqdm or self._rank != 0)
        start = 0
        while start < len(items):
            end = start
            key = group_key(items[start])
            while end < len(items) and end - start < self.batch_size and group_key(items[end]) == key:
                end += 1
            batch = items[start:end]
            generated, row_forwards = self._generate_token_ids(
                [item[1] for item in batch], batch[0][3], [item[2] for item in batch], [item[4] for item in batch])
            full_loop = self._full_loop_row_forwards()
            for (index, _, until, _, _), ids, spent in zip(batch, generated, row_forwards):
                results[index] = self.postprocess(ids, until)
                self.cache_hook.add_partial("generate_until", requests[index].args, results[index])
                counts = forwards.setdefault(getattr(requests[index], "task_name", None) or "unnamed", [0, 0, 0])
                counts[0] += 1
                counts[1] += spent
                counts[2] += full_loop
            bar.update(len(batch))
            start = end
        bar.close()
        self._report_row_forwards(forwards)
        return results

    def _full_loop_row_forwards(self) -> int:
        """Row-forwards one request costs in the fixed-schedule loop without early exit."""
        return self.args.steps * (2 if self.sampler == "llada" and self.args.cfg_scale > 0 else 1)

    def _report_row_forwards(self, forwards: dict[str, list[int]]) -> None:
        """Sum this call's per-task row-forwards over ranks, add them to the totals, log them on rank 0.

        Every rank calls generate_until once per lm-eval run (lm-eval pads uneven shards), so the
        gather here is matched on every rank.
        """
        gathered = [forwards]
        if self._world_size > 1:
            import torch.distributed as dist

            gathered = [None] * self._world_size
            dist.all_gather_object(gathered, forwards)
        for part in gathered:
            for task, (num_requests, spent, full_loop) in part.items():
                total = self._row_forwards.setdefault(task, {"requests": 0, "row_forwards": 0,
                                                             "row_forwards_full_loop": 0})
                total["requests"] += num_requests
                total["row_forwards"] += spent
                total["row_forwards_full_loop"] += full_loop
        if self._rank == 0:
            for task in sorted({t for part in gathered for t in part}):
                total = self._row_forwards[task]
                logger.info(
                    "llada_diffusion: %s: %d row-forwards for %d requests over %d rank(s), %.3f of the %d "
                    "the full loop takes (early_exit=%s, threshold=%s)", task, total["row_forwards"],
                    total["requests"], self._world_size,
                    total["row_forwards"] / max(total["row_forwards_full_loop"], 1),
                    total["row_forwards_full_loop"], self.args.early_exit, self.args.threshold,
                )

    # ---- likelihood ------------------------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation ids, trailing context spaces moved to the continuation (lm-eval's rule)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            continuation = context[-spaces:] + continuation
            context = context[:-spaces]
        if not context:
            return [self.prefix_token_id], self.tok_encode(continuation)[int(self.args.add_bos_token):]
        whole = self.tok_encode(context + continuation)
        prompt = self.tok_encode(context)
        return prompt, whole[len(prompt):]

    def _request_seed(self, prompt: list[int], continuation: list[int]) -> int:
        # From the content, not the position: any sharding or order gives each request the same masks.
        return zlib.crc32(json.dumps([self.args.seed, prompt, continuation]).encode())

    def _is_greedy(self, prompt: list[int], continuation: list[int]) -> bool:
        """Fill all continuation masks one most-confident token per step (LLaDA's suffix_greedy_prediction)."""
        L = len(continuation)
        config = LladaSamplerConfig(steps=L, gen_length=L, block_length=L, cfg_scale=self.args.cfg_scale)
        canvas = llada_generate(
            self.backbone.logits, torch.tensor([prompt], device=self._device), config,
            mask_id=self.backbone.spec.mask_id,
        )
        return canvas[0, len(prompt):].tolist() == continuation

    def _encode_request(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(prompt ids, continuation ids) of one loglikelihood request, the prompt left-truncated to fit."""
        prompt, cont = self._encode_pair(context, continuation)
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens; nothing to score")
        if len(cont) >= self.max_length:
            raise ValueError(f"continuation of {len(cont)} tokens does not fit max_length={self.max_length}")
        if len(prompt) + len(cont) > self.max_length:
            self._warn_once("ll_truncate", "loglikelihood contexts are left-truncated to fit "
                                           f"max_length={self.max_length}")
            prompt = prompt[-(self.max_length - len(cont)):]
        return prompt, cont

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(ELBO of the continuation, is_greedy) per request; see likelihood.py for the estimators.

        One-token continuations are exact and share one forward per prompt (a multiple-choice question
        with answers " A".." D" costs one forward, not 4 x mc_num masked copies); longer ones are exact
        when 2^L - 1 <= mc_num, else the stratified Monte-Carlo estimate.
        """
        encoded = [self._encode_request(*request.args) for request in requests]
        spec = self.backbone.spec
        single: dict[tuple[int, ...], list[int]] = {}  # prompt -> indices of its one-token requests
        for index, (prompt, cont) in enumerate(encoded):
            if len(cont) == 1:
                single.setdefault(tuple(prompt), []).append(index)
        elbos: list[float | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc="loglikelihood", disable=disable_tqdm or self._rank != 0)
        for prompt, indices in single.items():
            candidates = torch.tensor([encoded[i][1][0] for i in indices], device=self._device)
            logprobs = single_token_logprobs(
                self.backbone.logits, torch.tensor(prompt, device=self._device), candidates,
                mask_id=spec.mask_id, cfg_scale=self.args.cfg_scale,
            )
            for i, value in zip(indices, logprobs.tolist()):
                elbos[i] = value
            bar.update(len(indices))
        for index, (prompt, cont) in enumerate(encoded):
            if elbos[index] is not None:
                continue
            generator = torch.Generator().manual_seed(self._request_seed(prompt, cont))
            elbos[index] = float(elbo(
                self.backbone.logits,
                torch.tensor(prompt, device=self._device),
                torch.tensor(cont, device=self._device),
                mask_id=spec.mask_id,
                mc_num=self.args.mc_num,
                batch_size=self.args.mc_batch_size,
                generator=generator,
                cfg_scale=self.args.cfg_scale,
            ))
            bar.update(1)
        bar.close()
        out = []
        for request, (prompt, cont), value in zip(requests, encoded, elbos):
            is_greedy = self._is_greedy(prompt, cont) if self.args.greedy_check else False
            result = (float(value), bool(is_greedy))
            self.cache_hook.add_partial("loglikelihood", request.args, result)
            out.append(result)
        return out

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        raise NotImplementedError(
            "llada_diffusion does not support loglikelihood_rolling (perplexity tasks such as wikitext): a "
            "masked diffusion LM has no left-to-right factorisation, so per-token rolling log-likelihoods "
            "are not defined. The ELBO of whole documents is available through the project's held-out "
            "diffusion-loss probe (dllm_jepa_train.analysis)."
        )

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        if self._rank == 0:
            logger.warning(message)


def _until_first(ids: list[int], token: int) -> list[int]:
    """`ids` up to (not including) the first `token`; all of them when it does not occur."""
    return ids[: ids.index(token)] if token in ids else ids


def until_cut_if_decided(stable: str, until: list[str]) -> str | None:
    """What `postprocess`'s `until` loop leaves of every text that begins with `stable`, or None when the
    rest of the text could still change it.

    The loop cuts the text at the first occurrence of each stop string in turn. An occurrence found
    entirely inside `stable` is the first one in any longer text too (an earlier one would end earlier),
    and cuts it to a known string; a stop not found there may still occur across the end of `stable`,
    starting where the rest of `stable` begins the stop, which then stays a known prefix only up to there.
    """
    known = None  # None: `stable` followed by characters not yet generated
    for stop in until:
        if not stop:
            continue
        if known is not None:
            known = known.split(stop, 1)[0]
        elif stop in stable:
            known = stable[: stable.index(stop)]
        else:
            first = max(len(stable) - len(stop) + 1, 0)
            stable = stable[: next((p for p in range(first, len(stable)) if stop.startswith(stable[p:])), len(stable))]
    return known


def _check_sampler_options(sampler: str, given: set[str], args: DiffusionLMArgs) -> None:
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


def _context_length(backbone: Backbone) -> int:
    """The checkpoint's stated context length (config, then tokenizer), else DEFAULT_MAX_LENGTH."""
    config = backbone.model.config
    for name in ("max_sequence_length", "max_position_embeddings", "n_positions"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(backbone.tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10**7:
        return value
    return DEFAULT_MAX_LENGTH


def _setup_distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group only when WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_arg)
    if world_size <= 1:
        return 0, 1, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device
