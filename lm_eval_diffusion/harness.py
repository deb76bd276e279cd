"""lm-eval model `llada_diffusion` (alias `diffusion_lm`) for masked diffusion LMs (LLaDA, Dream, generic).

Smallest CPU run (tiny checkpoint from `dllm_jepa_train.toy.models`, task from the tests):

    lm_eval --model llada_diffusion --device cpu \
        --model_args pretrained=<tiny ckpt>,steps=8,gen_length=16,block_length=8 \
        --tasks tiny_echo --include_path tests/assets/tiny_task --limit 4

Data parallel: `accelerate launch -m lm_eval ...` or `torchrun --nproc_per_node N -m lm_eval ...`;
each process evaluates its shard and lm-eval gathers the scores through this class's collectives.

Requests are handled here on lm-eval's own machinery (`TemplateLM` encodes loglikelihood pairs,
`Collator` sorts, groups and restores generate_until's order); what is specific to a diffusion LM lives
beside it: `--model_args` in `model_args.py`, the algorithms in `sampler.py` (generation) and
`likelihood.py` (Monte-Carlo ELBO), stop cuts and the early-exit test in `stops.py`, the checkpoint
facts in `backbone.py`, the process group and collectives in `distributed.py` (shared with the trainer).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from functools import partial
from typing import Any, NamedTuple

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import Collator
from tqdm import tqdm

from lm_eval_diffusion import distributed
from lm_eval_diffusion.backbone import Backbone, adds_bos, encode_prompt, left_pad, load_backbone, resolve_device
from lm_eval_diffusion.compiled import CompiledLogits, evaluation_buckets
from lm_eval_diffusion.families import get_family
from lm_eval_diffusion.likelihood import fills_greedily, score_requests
from lm_eval_diffusion.model_args import DiffusionLMArgs, check_sampler_options, context_length, merge_cli
from lm_eval_diffusion.row_forwards import RowForwards
from lm_eval_diffusion.sampler import LladaSamplerConfig, dream_generate, llada_generate
from lm_eval_diffusion.stops import cut_text, until_exit_check, until_first

logger = logging.getLogger(__name__)

DEFAULT_GEN_LENGTH = 256  # lm-eval's own default max_gen_toks, for requests that do not set it
AUTO_BATCH_SIZE = {"cuda": 8, "cpu": 1}  # what batch_size=auto means; no memory probing is done


class _GenRequest(NamedTuple):
    """One generate_until request as the batching sees it."""

    index: int  # position in the caller's list
    prompt: list[int]
    until: list[str]
    gen_length: int  # canvas length
    seed: int  # of this request's sampling noise


def _longest_canvas_first(item: _GenRequest) -> tuple[int, int, int]:
    # The first batch shows the worst case (memory, time); ties keep the request order.
    return -item.gen_length, -len(item.prompt), item.index


class DiffusionLM(TemplateLM):
    """lm-eval adapter: generate_until through the iterative-unmasking sampler, loglikelihood as an ELBO."""

    def __init__(self, **model_args: Any) -> None:
        super().__init__()
        args, given = DiffusionLMArgs.from_kwargs(model_args)
        self.args = args
        self._warned: set[str] = set()
        dist_info, device = distributed.init_evaluation(resolve_device(args.device))
        self._rank, self._world_size, self._device = dist_info.rank, dist_info.world_size, device
        self.backbone: Backbone = load_backbone(
            args.pretrained,
            family=args.family,
            dtype=args.dtype,
            device=device,
            trust_remote_code=args.trust_remote_code,
            mask_id=args.mask_id,
            revision=args.revision,
            peft=args.peft,
        )
        self.tokenizer = self.backbone.tokenizer
        spec = self.backbone.spec
        self.sampler = args.sampler or get_family(spec.family).default_sampler
        check_sampler_options(self.sampler, given, args)
        self.batch_size = self._resolve_batch_size(args.batch_size)
        self.max_length = args.max_length or context_length(self.backbone.model.config, self.tokenizer)
        eot = {spec.eot_id} if spec.eot_id is not None else set()
        # EOS for logits_eos_inf means end of text (LLaDA's <|endoftext|>), not the chat end-of-turn.
        self.eos_ids = tuple(i for i in spec.stop_ids if i not in eot)
        self.eot_ids = tuple(eot)
        if args.gen_length is not None:
            args.sampler_config(self.sampler, self._gen_length(args.gen_length)).validate()
        if args.add_bos_token is None:
            args.add_bos_token = adds_bos(self.tokenizer)
        if args.add_bos_token and self.tokenizer.bos_token_id is None:
            raise ValueError(f"add_bos_token=True but the tokenizer of {args.pretrained} has no BOS token")
        self._row_forwards = RowForwards(args.early_exit, args.threshold, self._world_size)  # summed over ranks
        self._compiled = CompiledLogits(self.backbone, max_length=self.max_length, batch_buckets=evaluation_buckets(
            self.batch_size, args.mc_batch_size, args.cfg_scale)) if args.compile else None
        if self._rank == 0:
            logger.info(
                "llada_diffusion: %s family=%s sampler=%s batch_size=%d padding_honoured=%s world_size=%d",
                args.pretrained, spec.family, self.sampler, self.batch_size, self.backbone.honours_padding,
                self._world_size,
            )
            if "adapter" in self.backbone.extra:
                extra = self.backbone.extra
                logger.info("llada_diffusion: base %s + LoRA adapter %s, merged in %s (evaluated on the merged "
                            "weights)", extra["base"], extra["adapter"], self.backbone.dtype)

    # ---- construction from the CLI -------------------------------------------------------------------
    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> DiffusionLM:
        """From `--model_args k=v,...` plus lm-eval's `--batch_size/--device`; model_args win on conflict."""
        from lm_eval.utils import simple_parse_args_string

        return cls(**merge_cli(simple_parse_args_string(arg_string), additional_config))

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> DiffusionLM:
        """From a model_args dict plus lm-eval's `--batch_size/--device`; model_args win on conflict."""
        return cls(**merge_cli(dict(arg_dict), additional_config))

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
        """Concatenate `tensor` (flattened; 0-d becomes length 1) from every rank, in rank order."""
        if self._world_size == 1:
            return tensor
        return distributed.all_gather_rows(tensor.to(self._device).reshape(-1))

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        """Every rank's `obj` as a list on rank `dst`; None elsewhere."""
        return distributed.gather_object(obj, dst)

    def barrier(self) -> None:
        """Wait for every rank."""
        distributed.barrier()

    # ---- tokenisation ----------------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        """The checkpoint's EOS (lm-eval's name for it)."""
        return self.backbone.spec.eos_id

    @property
    def prefix_token_id(self) -> int:
        """Stands in for an empty context: BOS when the tokenizer has one, else EOS (lm-eval's convention)."""
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None else self.eot_token_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Token ids of `string` encoded as the trainer encodes prompts (`encode_prompt`), never with a
        trailing special token; BOS first when `add_special_tokens` is None and model_arg add_bos_token
        is set, or when it is True and the tokenizer has a BOS."""
        if add_special_tokens is None:
            add_bos = bool(self.args.add_bos_token)
        else:
            add_bos = add_special_tokens and self.tokenizer.bos_token_id is not None
        return encode_prompt(self.tokenizer, string, add_bos)

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
                "row_forwards": self._row_forwards.as_dict(),
                "compile": a.compile, "compiled_graphs": self._compiled.graphs if self._compiled else None}
        info.update(a.sampler_info(self.sampler))
        return info

    def _logits_fn(self):
        """The forward the samplers and the ELBO call: compiled (model_arg compile) or the backbone's."""
        return self._compiled if self._compiled is not None else self.backbone.logits

    def _log_compiled(self) -> None:
        if self._compiled is not None and self._rank == 0:  # graphs of this rank (each compiles its own)
            logger.info("llada_diffusion: %s", self._compiled.summary())

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
        ids, attention_mask = left_pad(prompts, spec.pad_id)
        P = ids.shape[1]
        if attention_mask is not None and not self.backbone.honours_padding:
            raise RuntimeError("internal: prompts of unequal length batched for a model that ignores padding")
        attention_mask = attention_mask.to(self._device) if attention_mask is not None else None
        seeds = seeds if seeds is not None else [self.args.seed] * len(prompts)
        generators = [torch.Generator(device=self._device).manual_seed(seed) for seed in seeds]
        row_forwards = torch.zeros(len(prompts), dtype=torch.long, device=self._device)
        exit_check = None
        if untils is not None and any(any(u) for u in untils):
            exit_check = partial(
                until_exit_check, untils, mask_id=spec.mask_id, stop_ids=spec.stop_ids, decode=self._decode,
                cleans_up_spaces=bool(getattr(self.tokenizer, "clean_up_tokenization_spaces", False)),
            )
        common = {"mask_id": spec.mask_id, "attention_mask": attention_mask, "stop_ids": spec.stop_ids,
                  "generator": generators, "exit_check": exit_check, "row_forwards": row_forwards}
        config = self.args.sampler_config(self.sampler, gen_length)
        if isinstance(config, LladaSamplerConfig):
            canvas = llada_generate(self._logits_fn(), ids.to(self._device), config, eos_ids=self.eos_ids,
                                    eot_ids=self.eot_ids, **common)
        else:
            canvas = dream_generate(self._logits_fn(), ids.to(self._device), config, **common)
        generated = [until_first(row, spec.mask_id) for row in canvas[:, P:].tolist()]
        return generated, row_forwards.tolist()

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _request_settings(self, gen_kwargs: dict[str, Any]) -> tuple[list[str], int]:
        """A request's stop strings and canvas length (see `DiffusionLMArgs.request_settings`)."""
        until, requested = self.args.request_settings(gen_kwargs, self._warn_once, DEFAULT_GEN_LENGTH)
        return until, self._gen_length(requested)

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
        return cut_text(self._decode(generated[:end]), until, self.tokenizer.all_special_tokens)

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
            items.append(_GenRequest(index, prompt, until, gen_length, seed))
        padding_ok = self.backbone.honours_padding
        # Collator runs its groups in first-appearance order, ascending within each: pre-sorted by the same
        # key, the longest canvas comes first. A model that ignores padding sees equal-length prompts only.
        ordered = sorted(items, key=_longest_canvas_first)
        collator = Collator(
            ordered, sort_fn=_longest_canvas_first, group_by="gen_kwargs",
            group_fn=lambda item: {"gen": item.gen_length, "prompt": 0 if padding_ok else len(item.prompt)},
        )
        texts: list[str] = []
        forwards: dict[str, Counter] = {}  # task -> requests, row-forwards, row-forwards of the full loop
        bar = tqdm(total=len(requests), desc="generate_until", disable=disable_tqdm or self._rank != 0)
        for batch in collator.get_batched(n=self.batch_size):
            generated, row_forwards = self._generate_token_ids(
                [item.prompt for item in batch], batch[0].gen_length, [item.until for item in batch],
                [item.seed for item in batch])
            full_loop = self.args.full_loop_row_forwards(self.sampler)
            for item, ids, spent in zip(batch, generated, row_forwards):
                texts.append(self.postprocess(ids, item.until))
                request = requests[item.index]
                self.cache_hook.add_partial("generate_until", request.args, texts[-1])
                task = getattr(request, "task_name", None) or "unnamed"
                forwards.setdefault(task, Counter()).update(requests=1, row_forwards=spent,
                                                           row_forwards_full_loop=full_loop)
            bar.update(len(batch))
        bar.close()
        self._row_forwards.add(forwards, self._rank == 0)
        self._log_compiled()
        # get_original undoes the collator's order (back to `ordered`); each item's index undoes the pre-sort.
        results: list[str] = [""] * len(requests)
        for item, text in zip(ordered, collator.get_original(texts)):
            results[item.index] = text
        return results

    # ---- likelihood ------------------------------------------------------------------------------
    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation ids, trailing context spaces moved to the continuation (lm-eval's rule).

        Differs from `TemplateLM._encode_pair` where a context is empty once its spaces have moved (" "
        before " dog"): that one asserts on it, here it is the prefix token as an empty context is, and
        the continuation is encoded alone, without the BOS that add_bos_token puts before a context.
        """
        spaces = len(context) - len(context.rstrip())
        if spaces:
            continuation = context[-spaces:] + continuation
            context = context[:-spaces]
        if not context:
            return [self.prefix_token_id], self.tok_encode(continuation, add_special_tokens=False)
        whole = self.tok_encode(context + continuation)
        prompt = self.tok_encode(context)
        return prompt, whole[len(prompt):]

    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(ELBO of the continuation, is_greedy) per request: `_encode_pair`, then `_loglikelihood_tokens`."""
        # Not TemplateLM.loglikelihood: it encodes an empty context on a path of its own that takes a
        # continuation's leading prefix token (e.g. "<|endoftext|> dog") as the context; here every
        # context goes through `_encode_pair`, so "" and " " are encoded alike and as they always were.
        pairs = [tuple(request.args) for request in requests]
        return self._loglikelihood_tokens([(pair, *self._encode_pair(*pair)) for pair in pairs], disable_tqdm)

    def _request_seed(self, prompt: list[int], continuation: list[int]) -> int:
        # From the content, not the position: any sharding or order gives each request the same masks.
        return zlib.crc32(json.dumps([self.args.seed, prompt, continuation]).encode())

    def _fit_request(self, continuation: str, prompt: list[int], cont: list[int]) -> list[int]:
        """The prompt of one loglikelihood request, left-truncated to fit; raises when nothing can be scored."""
        if not cont:
            raise ValueError(f"continuation {continuation!r} encodes to no tokens; nothing to score")
        if len(cont) >= self.max_length:
            raise ValueError(f"continuation of {len(cont)} tokens does not fit max_length={self.max_length}")
        if len(prompt) + len(cont) > self.max_length:
            self._warn_once("ll_truncate", "loglikelihood contexts are left-truncated to fit "
                                           f"max_length={self.max_length}")
            prompt = prompt[-(self.max_length - len(cont)):]
        return prompt

    def _loglikelihood_tokens(
        self, requests: list[tuple[tuple[str, str], list[int], list[int]]], disable_tqdm: bool = False, **kwargs: Any,
    ) -> list[tuple[float, bool]]:
        """(ELBO, is_greedy) of each ((context, continuation), context ids, continuation ids), the ELBO
        from `likelihood.score_requests` (one forward per prompt for one-token continuations)."""
        encoded = [(self._fit_request(pair[1], prompt, cont), cont) for pair, prompt, cont in requests]
        mask_id = self.backbone.spec.mask_id
        bar = tqdm(total=len(requests), desc="loglikelihood", disable=disable_tqdm or self._rank != 0)
        elbos = score_requests(
            self._logits_fn(), encoded, mask_id=mask_id, mc_num=self.args.mc_num,
            batch_size=self.args.mc_batch_size, seeds=[self._request_seed(*pair) for pair in encoded],
            device=self._device, cfg_scale=self.args.cfg_scale, on_scored=bar.update,
        )
        bar.close()
        out = []
        for (pair, _, _), (prompt, cont), value in zip(requests, encoded, elbos):
            is_greedy = self.args.greedy_check and fills_greedily(
                self._logits_fn(), torch.tensor(prompt, device=self._device), cont, mask_id=mask_id,
                cfg_scale=self.args.cfg_scale)
            result = (value, bool(is_greedy))
            self.cache_hook.add_partial("loglikelihood", pair, result)
            out.append(result)
        self._log_compiled()
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
