"""Training data -> (prompt, response) token rows -> a pure collator that pads and draws both views.

Sources (`data.source`):
- a registered task (gsm8k | spider | nlrx | django, or one from `data.task_modules`): the task suite's
  own loader and prompt text (`lm_eval_diffusion.task_data.load_docs`, `lm_eval_diffusion.prompts.training_pair`,
  both reading `lm_eval_diffusion.task_registry`), so training rows are exactly the zero-shot evaluation
  format; the task's own data options (Spider: `data.spider_db_dir`) go to its loader.
- jsonl: one object per line, either {"prompt", "response"} or chat {"messages": [{"role", "content"}...]}
  whose last message is the assistant's answer. With a tokenizer chat template the prompt is the
  template over the earlier messages plus the generation prompt, and the response is what the template
  adds for the last message (so it ends with the template's end-of-turn token). Without a template the
  plain join is `"{role}: {content}\\n"` per earlier message, then `"assistant:"`; response `" {content}"`.
- text: one document per line; the whole document is maskable (empty prompt), except that with
  shifted logits (Dream) its first token is context: the logit that would score position 0 is the
  one that predicts token 1, so position 0 has no logit of its own (`tokenize_examples`).

Token rows (LLaDA's SFT convention): prompt ids (with the tokenizer's own special tokens, e.g. BOS),
then response ids and one EOS. The collator pads each batch to its longest row (or `max_length`) with
EOS, and that fill counts as response: it is masked and scored, and no attention mask is passed. With
`use_attention_mask` the fill is real padding instead: never masked, never scored, hidden from attention.
Rows longer than `max_length` lose the end of their response (counted); rows whose prompt leaves no
room for a response token are dropped (counted).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dllm_jepa_train.objectives import draw_views, row_generator
from lm_eval_diffusion.backbone import adds_bos, encode_prompt

log = logging.getLogger(__name__)


def render_messages(messages: list[dict], tokenizer: Any) -> tuple[str, str, bool]:
    """Chat messages -> (prompt text, response text, prompt already holds special tokens)."""
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("a `messages` row must end with an assistant message (the response to train on)")
    history, answer = messages[:-1], messages[-1]["content"]
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the tokenizer's chat template does not extend the prompt with the answer; "
                             "give prompt/response rows instead")
        return prompt, full[len(prompt):], True
    prompt = "".join(f"{m['role']}: {m['content']}\n" for m in history) + "assistant:"
    return prompt, " " + answer, False


def load_examples(cfg, tokenizer: Any, data_dir: str | Path | None) -> list[tuple[str, str, bool]]:
    """(prompt, response, prompt_has_specials) triples of `cfg` (a DataConfig) from its source."""
    source = cfg.source
    if source == "jsonl":
        out = []
        with Path(cfg.path).open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if "messages" in record:
                    out.append(render_messages(record["messages"], tokenizer))
                elif "prompt" in record and "response" in record:
                    out.append((str(record["prompt"]), str(record["response"]), False))
                else:
                    raise ValueError(f"{cfg.path}:{number}: expected keys prompt/response or messages, "
                                     f"got {sorted(record)}")
        return out
    if source == "text":
        path = Path(cfg.path) if cfg.path else Path(data_dir) / "text" / _text_split(cfg.split)
        lines = path.read_text(encoding="utf-8").split("\n")
        return [("", line, False) for line in lines if line.strip()]
    from lm_eval_diffusion import task_registry
    from lm_eval_diffusion.prompts import training_pair
    from lm_eval_diffusion.task_data import load_docs

    task_registry.load_task_modules(cfg.task_modules)  # validation did; a run config read back has not
    options = {o.key: getattr(cfg, o.key) or None for o in task_registry.get_task(source).data_options}
    docs = load_docs(source, cfg.split, data_dir or None, **options)
    return [(*training_pair(source, doc), False) for doc in docs]


TEXT_FILES = {"train": "train.txt", "validation": "valid.txt"}  # the text/ layout of shared/data


def _text_split(split: str) -> str:
    if split not in TEXT_FILES:
        raise ValueError(f"data.split {split!r} has no text file; allowed for text: {', '.join(TEXT_FILES)}")
    return TEXT_FILES[split]


@dataclass
class TokenizedData:
    rows: list[dict]  # {"prompt_ids": list[int], "response_ids": list[int]}
    num_truncated: int  # rows whose response was cut at max_length
    num_dropped: int  # rows whose prompt alone filled max_length


def tokenize_examples(
    examples: list[tuple[str, str, bool]],
    tokenizer: Any,
    eos_id: int,
    max_length: int,
    shift_logits: bool = False,
) -> TokenizedData:
    """Token rows: prompt ids (`encode_prompt`; chat-rendered prompts as they are), response ids + EOS.

    `shift_logits` (Dream: the logit at i predicts token i + 1): a row without a prompt gets its first
    response token as its prompt, so position 0, which no logit predicts, is never masked or scored.
    """
    rows, truncated, dropped = [], 0, 0
    add_bos = adds_bos(tokenizer)  # once, not a probe encoding per row
    for prompt, response, has_specials in examples:
        # The same prompt encoding as the lm-eval adapter (BOS where the tokenizer adds one, no
        # trailing specials), so fine-tuned checkpoints see prompts exactly as they are evaluated.
        if not prompt:
            prompt_ids = []
        elif has_specials:
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        else:
            prompt_ids = encode_prompt(tokenizer, prompt, add_bos)
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [eos_id]
        if shift_logits and not prompt_ids:
            prompt_ids, response_ids = response_ids[:1], response_ids[1:]
        room = max_length - len(prompt_ids)
        if room < 1:
            dropped += 1
            continue
        if len(response_ids) > room:
            truncated += 1
            response_ids = response_ids[:room]
        rows.append({"prompt_ids": prompt_ids, "response_ids": response_ids})
    return TokenizedData(rows, truncated, dropped)


@dataclass
class DiffusionCollator:
    """Pads rows and draws the context (and target) view; pure: rows in, tensors out.

    Each row dict carries `prompt_ids`, `response_ids`, `index` (dataset row) and `epoch`; its views are
    drawn from `row_generator(seed, epoch, index)`, so they do not depend on the batch, the micro-batch
    split, the rank or a resume.

    Returns (B, L) input_ids (long), maskable, is_padding (bool), answer_length and index (B,) long,
    attention_mask (B, L) long with `use_attention_mask`, and per view (context; target unless
    `t_target` is None): <view>_ids, <view>_masked, <view>_t (B,) float, and <view>_keep (B, L) bool, the
    tokens the view shows its encoder (neither masked nor padding: what the embedding pools over).
    """

    mask_id: int
    eos_id: int
    pad_id: int
    t_context: tuple[float, float]
    t_target: tuple[float, float] | None  # None: no target view (lambda = 0)
    seed: int
    max_length: int
    pad_to_max_length: bool = False
    use_attention_mask: bool = False

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows]
        L = self.max_length if self.pad_to_max_length else max(lengths)
        fill_id = self.pad_id if self.use_attention_mask else self.eos_id
        input_ids = torch.full((len(rows), L), fill_id, dtype=torch.long)
        is_prompt = torch.zeros((len(rows), L), dtype=torch.bool)
        is_padding = torch.zeros((len(rows), L), dtype=torch.bool)
        for b, (row, n) in enumerate(zip(rows, lengths)):
            p = len(row["prompt_ids"])
            input_ids[b, :n] = torch.tensor(row["prompt_ids"] + row["response_ids"], dtype=torch.long)
            is_prompt[b, :p] = True
            is_padding[b, n:] = True
        maskable = ~is_prompt & ~is_padding if self.use_attention_mask else ~is_prompt
        generators = [row_generator(self.seed, int(r["epoch"]), int(r["index"])) for r in rows]
        batch = {
            "input_ids": input_ids,
            "maskable": maskable,
            "is_padding": is_padding,
            "answer_length": maskable.sum(dim=1),
            "index": torch.tensor([int(r["index"]) for r in rows], dtype=torch.long),
        }
        if self.use_attention_mask:
            batch["attention_mask"] = (~is_padding).long()
        batch.update(draw_views(input_ids, maskable, generators, self.mask_id, self.t_context, self.t_target))
        for view in ("context", "target") if self.t_target is not None else ("context",):
            batch[f"{view}_keep"] = ~batch[f"{view}_masked"] & ~is_padding
        return batch


# Length grouping sorts rows by length within windows of this many optimizer steps of the shuffled order.
GROUP_WINDOW_STEPS = 50


@dataclass
class StepPlan:
    """Which rows each optimizer step reads: epoch e shuffles with (seed, e); one step reads
    micro_batch_size * grad_accum * world_size rows, micro-batch m of rank r the slice (m * world + r).
    Rows that do not fill a whole step at the end of an epoch are skipped in that epoch.

    With `lengths` (row lengths in tokens; `data.group_by_length`), each window of GROUP_WINDOW_STEPS
    steps of the shuffled order is sorted by length, longest first, cut into steps, and the steps of the
    epoch are shuffled again: a step's rows have similar lengths, so a batch padded to its longest row
    wastes little (a mixture of short and long tasks otherwise pads most rows to the longest task's).
    An epoch still reads every row once, but for the few that do not fill a last step (with grouping,
    short rows of the last window rather than the last rows of the shuffle)."""

    num_rows: int
    micro_batch_size: int
    grad_accum: int
    world_size: int
    rank: int
    seed: int
    lengths: tuple[int, ...] | None = None
    # (epoch, order) of the last epoch asked for: every step of an epoch reads the same order.
    _epoch_order: tuple[int, torch.Tensor] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.lengths is not None and len(self.lengths) != self.num_rows:
            raise ValueError(f"{len(self.lengths)} lengths for {self.num_rows} rows")

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.world_size

    @property
    def steps_per_epoch(self) -> int:
        return self.num_rows // self.rows_per_step

    def order(self, epoch: int) -> torch.Tensor:
        """Row order of `epoch`: (num_rows,) long; computed once per epoch (callers must not modify it)."""
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            self._epoch_order = (epoch, self._compute_order(epoch))
        return self._epoch_order[1]

    def _compute_order(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.num_rows, generator=gen)
        if self.lengths is None:
            return order
        lengths = torch.tensor(self.lengths, dtype=torch.long)
        window = self.rows_per_step * GROUP_WINDOW_STEPS
        grouped = torch.cat([chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
                             for chunk in order.split(window)])
        used = self.steps_per_epoch * self.rows_per_step
        steps = grouped[:used].view(-1, self.rows_per_step)
        steps = steps[torch.randperm(len(steps), generator=gen)]
        return torch.cat([steps.flatten(), grouped[used:]])

    def micro_batches(self, epoch: int, step_in_epoch: int, order: torch.Tensor | None = None) -> list[list[int]]:
        """This rank's `grad_accum` lists of row indices for one optimizer step."""
        order = self.order(epoch) if order is None else order
        start = step_in_epoch * self.rows_per_step
        out = []
        for m in range(self.grad_accum):
            lo = start + (m * self.world_size + self.rank) * self.micro_batch_size
            out.append(order[lo : lo + self.micro_batch_size].tolist())
        return out


def dev_slice(num_docs: int, num_dev: int, seed: int) -> list[int]:
    """Sorted indices of a seeded slice of `num_dev` of `num_docs` documents (the dev split of a grid)."""
    if num_dev >= num_docs:
        raise ValueError(f"data.dev_rows {num_dev} leaves no training documents out of {num_docs}")
    gen = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_docs, generator=gen)[:num_dev].tolist())
