"""Generation speed: the project's LLaDA sampler against LLaDA's reference loop, then early exit and
parallel threshold decoding against the full loop on a GSM8K-shaped workload.

    python benchmarks/bench_generate.py          # CPU, a few minutes (1 thread): tiny models, trained here
    python benchmarks/bench_generate.py --gpu    # CUDA, random 8B LLaDA-shaped model in bf16

(`benchmarks/bench_gpu.py` runs this script's GPU parts, and compile, training and the EMA, in one
command of a few minutes.)

Part 1, reference vs ours (both samplers on the same random model and prompts in one process): asserts
they produce the same tokens, then prints seconds per sample for the reference, for ours, and for the
forward-only bound (the same number of forwards timed alone), with the ratio the project targets on a
GPU: bound / ours >= 0.95 at batch 1 and 8 (the reference cannot be beaten by much: on an H200 the
forward alone is ~94% of its time).
The reference follows LLaDA's generate.py as published: Gumbel noise and a softmax in float64 over
every canvas position at every step (the noise even at temperature 0, where it does not change the
argmax), and a `torch.topk` per row with a tensor `k`, which syncs with the host.
The model is random, so its masked positions all predict nearly the same distribution and confidence
rankings would be decided by rounding; a fixed random offset per position (part of the "model" for
all three timings) makes the two samplers' rankings well defined, so token equality is meaningful.

Part 2, early exit (CPU): a tiny LLaDA-like model is trained here for about a minute on GSM8K-shaped
arithmetic questions whose answers end in EOS or run on into the next "Question:" (as base models do
at 4-shot), then answers the same questions through the `llada_diffusion` harness with GSM8K's
`until: ["Question:"]`, generation 256 and 512, block 128, 128 steps, batch 1 and 8, in three modes:
the full loop (`early_exit=false`), early exit, and threshold 0.9 (with early exit). Printed per
setting: row-forwards and seconds per sample, whether every early-exit text equals the full loop's
(it must), threshold's agreement with the full loop and the strict `#### N` accuracy of both.
Target: early exit <= 0.6x the full loop's row-forwards.

Part 2 on the GPU (`--gpu`): random weights cannot end an answer, so the model's EOS logit is forced:
row r's answer has ANSWER_LENGTHS[r % 8] tokens (EOS -inf before, +30 from there on). The lengths are
GSM8K test reference solutions' octile midpoints in characters / 4 (30-134 tokens). Threshold decoding
is not timed there: with random weights no answer token reaches p(x0) > 0.9.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm_eval_diffusion.backbone import load_backbone  # noqa: E402
from lm_eval_diffusion.metrics.gsm8k import extract_strict  # noqa: E402
from lm_eval_diffusion.sampler import LladaSamplerConfig, llada_generate  # noqa: E402
from dllm_jepa_train.toy.models import LLADA_8B_SHAPE, build_tiny_checkpoint, build_tokenizer  # noqa: E402
from dllm_jepa_train.toy.remote.tiny_blocks import Encoder, key_mask  # noqa: E402

MASK_ID = 3  # this random model's mask token; any id in the vocabulary works


@dataclass(frozen=True)
class Setting:
    """Model shape and generation lengths of one benchmark mode."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab: int
    prompt_length: int
    gen_length: int
    steps: int
    block_length: int
    batch_sizes: tuple[int, ...]
    dtype: torch.dtype
    device: str
    warmup_runs: int  # untimed runs first: CPU allocators need them, a GPU is warmed by one forward
    repeats: int  # timings are the best of this many runs
    mlp_hidden_size: int | None = None  # None: the tiny blocks' 4x GELU MLP; an int: LLaDA's SwiGLU block


CPU = Setting(d_model=128, n_layers=2, n_heads=4, vocab=4096, prompt_length=64, gen_length=32, steps=16,
              block_length=16, batch_sizes=(1, 8), dtype=torch.float32, device="cpu", warmup_runs=1, repeats=3)
# LLaDA-8B's shape (d_model 4096, 32 layers, 32 heads, SwiGLU 12,288, RMSNorm, vocabulary 126464): ~8.0B
# parameters, so a forward costs what LLaDA-8B's does.
GPU = Setting(d_model=LLADA_8B_SHAPE["d_model"], n_layers=LLADA_8B_SHAPE["n_layers"], n_heads=LLADA_8B_SHAPE["n_heads"],
              vocab=LLADA_8B_SHAPE["vocab_size"], prompt_length=768, gen_length=256, steps=128, block_length=128,
              batch_sizes=(1, 8), dtype=torch.bfloat16, device="cuda", warmup_runs=0, repeats=1,
              mlp_hidden_size=LLADA_8B_SHAPE["mlp_hidden_size"])


class RandomMaskedLM(nn.Module):
    """A bidirectional transformer with random weights: ids (B, L) -> logits (B, L, V); honours an
    optional (B, L) 0/1 attention mask."""

    def __init__(self, s: Setting) -> None:
        super().__init__()
        self.encoder = Encoder(s.vocab, s.d_model, s.n_layers, s.n_heads, s.mlp_hidden_size)
        self.head = nn.Linear(s.d_model, s.vocab, bias=False)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        hidden, _ = self.encoder(ids, positions, key_mask(attention_mask))
        return self.head(hidden)


def build_random_model(s: Setting, seed: int = 0) -> tuple[RandomMaskedLM, torch.Tensor]:
    """The random model and its fixed per-position logit offset, (prompt + gen, V) (module docstring)."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(s.dtype)  # create the 8B weights directly in bf16 on the device
    try:
        with torch.device(s.device):
            model = RandomMaskedLM(s).eval()
            offset = (2.0 * torch.randn(s.prompt_length + s.gen_length, s.vocab)).to(s.dtype)
    finally:
        torch.set_default_dtype(previous)
    return model, offset


def with_offset(model_fn, offset: torch.Tensor):
    """logits_fn(ids, attention_mask) = model_fn(ids, attention_mask) + offset[:L], under inference mode."""

    @torch.inference_mode()
    def logits_fn(ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return model_fn(ids, attention_mask) + offset[: ids.shape[1]]

    return logits_fn


def build_logits_fn(s: Setting, seed: int = 0):
    """The random model plus a fixed per-position logit offset (see the module docstring)."""
    model, offset = build_random_model(s, seed)
    return with_offset(model, offset)


def reference_step(logits_fn, x: torch.Tensor, block_end: int, k: torch.Tensor, mask_id: int) -> None:
    """One step of LLaDA's generate.py, in place on x; a function so its float64 temporaries die each step
    (the published loop keeps them alive into the next step, which at batch 8 and this vocabulary would
    not fit beside an 8B model on an 80 GB card)."""
    is_masked = x == mask_id
    logits = logits_fn(x)
    logits64 = logits.to(torch.float64)
    noise = torch.rand_like(logits64)
    x0 = (logits64.exp() / (-torch.log(noise)) ** 0.0).argmax(dim=-1)
    p = torch.softmax(logits.to(torch.float64), dim=-1)
    x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
    x0_p[:, block_end:] = float("-inf")
    x0 = torch.where(is_masked, x0, x)
    confidence = torch.where(is_masked, x0_p, torch.tensor(float("-inf"), device=x.device, dtype=x0_p.dtype))
    transfer = torch.zeros_like(x0, dtype=torch.bool)
    for row in range(confidence.shape[0]):
        _, chosen = torch.topk(confidence[row], k=int(k[row]))
        transfer[row, chosen] = True
    x[transfer] = x0[transfer]


@torch.inference_mode()
def reference_generate(logits_fn, prompt: torch.Tensor, steps: int, gen_length: int, block_length: int,
                       mask_id: int) -> torch.Tensor:
    """LLaDA's generate.py at temperature 0, low-confidence remasking, no CFG, written out as published."""
    x = torch.full((prompt.shape[0], prompt.shape[1] + gen_length), mask_id, dtype=torch.long, device=prompt.device)
    x[:, : prompt.shape[1]] = prompt
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    for block in range(num_blocks):
        start = prompt.shape[1] + block * block_length
        masked_count = (x[:, start: start + block_length] == mask_id).sum(dim=1, keepdim=True)
        schedule = masked_count // steps_per_block + torch.zeros(
            x.shape[0], steps_per_block, dtype=torch.long, device=x.device)
        for row in range(x.shape[0]):
            schedule[row, : int(masked_count[row] % steps_per_block)] += 1
        for i in range(steps_per_block):
            reference_step(logits_fn, x, start + block_length, schedule[:, i], mask_id)
    return x


def forwards_only(logits_fn, canvas: torch.Tensor, steps: int) -> None:
    """The forward passes a generation makes, and nothing else: the bound for any sampler."""
    for _ in range(steps):
        logits_fn(canvas)


def timed(fn, s: Setting) -> tuple[float, object]:
    """Best wall seconds of fn() over s.repeats runs after s.warmup_runs (device drained around each)."""
    for _ in range(s.warmup_runs):
        fn()
    best, result = float("inf"), None
    for _ in range(s.repeats):
        if s.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if s.device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def random_prompts(s: Setting, batch: int, generator: torch.Generator) -> torch.Tensor:
    """(batch, prompt_length) long random prompt ids on s.device (no special id of this model)."""
    return torch.randint(4, s.vocab, (batch, s.prompt_length), generator=generator).to(s.device)


def compare_with_reference(logits_fn, s: Setting, prompts: torch.Tensor) -> dict:
    """Reference loop, ours (full loop) and the forward-only bound on the same prompts, each timed as
    `timed` says: {"reference", "ours", "bound": seconds, "identical": bool, "tokens": our (B, P + G)}."""
    config = LladaSamplerConfig(steps=s.steps, gen_length=s.gen_length, block_length=s.block_length)
    batch = prompts.shape[0]
    canvas = torch.cat([prompts, torch.full((batch, s.gen_length), MASK_ID, device=s.device)], dim=1)
    logits_fn(canvas)  # kernels and allocator warm-up
    t_ref, ref_out = timed(
        partial(reference_generate, logits_fn, prompts, s.steps, s.gen_length, s.block_length, MASK_ID), s)
    t_ours, our_out = timed(partial(llada_generate, logits_fn, prompts, config, mask_id=MASK_ID), s)
    t_bound, _ = timed(partial(forwards_only, logits_fn, canvas, s.steps), s)
    return {"reference": t_ref, "ours": t_ours, "bound": t_bound, "identical": torch.equal(ref_out, our_out),
            "tokens": our_out}


def run_reference_comparison(s: Setting) -> bool:
    """Part 1: every batch size of `s`; True when all token checks pass."""
    logits_fn = build_logits_fn(s)
    generator = torch.Generator().manual_seed(1)
    print(f"device={s.device} dtype={s.dtype} d_model={s.d_model} layers={s.n_layers} vocab={s.vocab} "
          f"prompt={s.prompt_length} gen={s.gen_length} steps={s.steps} block={s.block_length}")
    ok = True
    for batch in s.batch_sizes:
        r = compare_with_reference(logits_fn, s, random_prompts(s, batch, generator))
        ok &= r["identical"]
        print(f"batch {batch}: reference {r['reference'] / batch:.4f} s/sample | ours {r['ours'] / batch:.4f} "
              f"s/sample | forward-only bound {r['bound'] / batch:.4f} s/sample | identical tokens: {r['identical']}")
        print(f"  reference/ours = {r['reference'] / r['ours']:.2f}x | "
              f"bound/ours = {r['bound'] / r['ours']:.3f} (GPU target at batch 1 and 8: >= 0.95)")
    return ok


# ---- part 2: early exit and threshold decoding --------------------------------------------------------
NAMES = ("Tom", "Ann", "Bob", "Eve", "Sam", "Mia")
ITEMS = ("apples", "pens", "books", "coins", "cards")
UNTIL = ["Question:"]  # GSM8K's stop string after the protocol change (EOS/EOT are always stops)
GEN_SETTINGS = ((256, 128), (512, 128))  # (generation length, block length); 128 steps each
STEPS = 128
# GSM8K test reference solutions, octile midpoints of their length in characters / 4 (~tokens).
ANSWER_LENGTHS = (30, 42, 52, 62, 72, 83, 100, 134)


def arithmetic_question(rng: random.Random) -> tuple[str, str, int]:
    """(question prompt, answer ending in '#### N', N) in GSM8K's 0-shot layout."""
    a, b = rng.randint(2, 49), rng.randint(2, 49)
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    question = f"Question: {name} has {a} {item} and gets {b} more. How many {item} does {name} have?\nAnswer:"
    return question, f" {name} has {a} + {b} = {a + b} {item}.\n#### {a + b}", a + b


def train_answerer(out_dir: Path, seconds: float = 60.0, gen_length: int = 256, seed: int = 0,
                   family: str = "llada", max_steps: int | None = None) -> Path:
    """A tiny LLaDA-like (or Dream-like) checkpoint in `out_dir`, trained for `seconds` (or `max_steps`
    steps, whichever comes first; the learning rate decays over the first) to answer arithmetic questions and
    end: half the answers are followed by EOS to the end of the canvas, half by the next question and
    its answer first (so both EOS and the `until` check end rows). LLaDA's SFT loss: per row t ~ U(0.05, 1),
    each answer/EOS position masked with probability t, cross-entropy on masked positions weighted 1/t."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    corpus = ["".join(arithmetic_question(rng)[:2]) for _ in range(400)]
    tokenizer = build_tokenizer(corpus, vocab_size=384)
    build_tiny_checkpoint(out_dir, family, tokenizer, hidden_size=64, num_layers=2, num_heads=4, seed=seed)
    config_text = (out_dir / "config.json").read_text()  # save_pretrained rewrites it without auto_map
    backbone = load_backbone(str(out_dir), device="cpu", probe_padding=False)
    model, spec = backbone.model, backbone.spec
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < seconds and (max_steps is None or step < max_steps):
        rows = []
        for _ in range(8):
            question, answer, _ = arithmetic_question(rng)
            if rng.random() < 0.5:
                answer += "\n\n" + "".join(arithmetic_question(rng)[:2])
            response = encode(answer)[:gen_length]
            rows.append((encode(question), response + [spec.eos_id] * (gen_length - len(response))))
        P = max(len(q) for q, _ in rows)
        ids = torch.tensor([[spec.pad_id] * (P - len(q)) + q + r for q, r in rows])
        attention = torch.tensor([[0] * (P - len(q)) + [1] * (len(q) + gen_length) for q, _ in rows])
        t = torch.rand(len(rows), 1).clamp_min(0.05)
        is_masked = torch.rand(ids.shape) < t
        is_masked[:, :P] = False
        logits = backbone.forward(ids.masked_fill(is_masked, spec.mask_id), attention)[0]
        ce = F.cross_entropy(logits.transpose(1, 2), ids, reduction="none")
        loss = (ce * is_masked / t).sum() / (len(rows) * gen_length)
        progress = step / max_steps if max_steps is not None else (time.perf_counter() - start) / seconds
        for group in optimizer.param_groups:  # cosine decay over the budget
            group["lr"] = 3e-3 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "config.json").write_text(config_text)
    print(f"trained {out_dir.name}: {step} steps in {time.perf_counter() - start:.0f} s, last loss {loss.item():.3f}")
    return out_dir


class Request:
    """The part of lm-eval's Instance that the harness reads."""

    def __init__(self, context: str, gen_kwargs: dict, task_name: str) -> None:
        self.args = (context, gen_kwargs)
        self.task_name = task_name


def harness_run(checkpoint: Path, questions: list[str], gen_length: int, block_length: int, batch_size: int,
                **mode) -> tuple[list[str], int, float]:
    """(texts, row-forwards, seconds) of the questions through the `llada_diffusion` harness."""
    from lm_eval_diffusion.harness import DiffusionLM

    lm = DiffusionLM(pretrained=str(checkpoint), device="cpu", batch_size=batch_size, steps=STEPS,
                     gen_length=gen_length, block_length=block_length, **mode)
    requests = [Request(q, {"until": UNTIL}, "gsm8k_shaped") for q in questions]
    start = time.perf_counter()
    texts = lm.generate_until(requests, disable_tqdm=True)
    seconds = time.perf_counter() - start
    return texts, lm.get_model_info()["row_forwards"]["gsm8k_shaped"]["row_forwards"], seconds


def run_early_exit_cpu(num_requests: int = 8, train_seconds: float = 60.0) -> bool:
    """Part 2 on the CPU; True when every early-exit text equals the full loop's."""
    rng = random.Random(1234)
    workload = [arithmetic_question(rng) for _ in range(num_requests)]
    questions = [q for q, _, _ in workload]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = train_answerer(Path(tmp) / "answerer", seconds=train_seconds)
        print(f"GSM8K-shaped workload: {num_requests} questions, until={UNTIL}, {STEPS} steps")
        print("| gen / block | batch | mode | row-forwards | vs full | s/sample | texts = full loop | strict acc |")
        print("|---|---|---|---|---|---|---|---|")
        ok, summary = True, {}
        for gen_length, block_length in GEN_SETTINGS:
            for batch in (1, 8):
                runs = {}
                modes = {"full loop": {"early_exit": False}, "early exit": {"early_exit": True},
                         "threshold 0.9": {"early_exit": True, "threshold": 0.9}}
                for name, mode in modes.items():
                    runs[name] = harness_run(checkpoint, questions, gen_length, block_length, batch, **mode)
                full_texts, full_forwards, _ = runs["full loop"]
                for name, (texts, forwards, seconds) in runs.items():
                    same = sum(a == b for a, b in zip(texts, full_texts))
                    correct = sum(extract_strict(t) == str(n) for t, (_, _, n) in zip(texts, workload))
                    if name == "early exit":
                        ok &= same == len(texts)
                        summary.setdefault(gen_length, []).append(forwards / full_forwards)
                    print(f"| {gen_length} / {block_length} | {batch} | {name} | {forwards} | "
                          f"{forwards / full_forwards:.2f}x | {seconds / len(questions):.3f} | "
                          f"{same}/{len(texts)} | {correct}/{len(texts)} |")
        ratios = [r for values in summary.values() for r in values]
        print(f"early exit / full loop row-forwards: {min(ratios):.2f}-{max(ratios):.2f}x (target <= 0.6x); "
              f"early-exit texts identical to the full loop on every request: {ok}")
        return ok


def early_exit_forced(logits_fn, s: Setting, gen_length: int, block_length: int, batch: int,
                      generator: torch.Generator, answer_lengths: tuple[int, ...] = ANSWER_LENGTHS) -> dict:
    """The full loop and early exit (s.steps steps) on random prompts, row r's EOS forced after
    answer_lengths[r % 8] answer tokens (module docstring). `logits_fn` must cover prompt_length + gen_length positions.
    {"full", "early_exit": seconds, "full_row_forwards", "exit_row_forwards": int, "identical": rows
    whose answer and first EOS agree}. Identity is reported, not enforced: in bf16 a smaller batch can
    flip a near-tie, as a different --batch_size can."""
    eos_id = MASK_ID + 1
    prompts = torch.randint(MASK_ID + 2, s.vocab, (batch, s.prompt_length), generator=generator)
    prompts[:, 0] = torch.arange(batch) + MASK_ID + 2  # row r's answer length is looked up from it
    prompts = prompts.to(s.device)
    lengths = torch.tensor([answer_lengths[r % len(answer_lengths)] for r in range(batch)], device=s.device)

    def forced(ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = logits_fn(ids, attention_mask)
        answer = lengths[ids[:, 0] - MASK_ID - 2]  # the rows still in the canvas
        position = torch.arange(ids.shape[1], device=ids.device) - s.prompt_length
        is_tail = position[None, :] >= answer[:, None]
        logits[..., eos_id] = torch.where(is_tail, 30.0, float("-inf")).to(logits.dtype)
        return logits

    results = {}
    for early_exit in (False, True):
        config = LladaSamplerConfig(steps=s.steps, gen_length=gen_length, block_length=block_length,
                                    early_exit=early_exit)
        row_forwards = torch.zeros(batch, dtype=torch.long, device=s.device)
        seconds, out = timed(partial(llada_generate, forced, prompts, config, mask_id=MASK_ID,
                                     stop_ids=[eos_id], row_forwards=row_forwards), s)
        results[early_exit] = (seconds, out, int(row_forwards.sum()))
    full_out, exit_out = results[False][1], results[True][1]
    cut = [int(n) + s.prompt_length for n in lengths]
    same = sum(torch.equal(full_out[r, :cut[r] + 1], exit_out[r, :cut[r] + 1]) for r in range(batch))
    return {"full": results[False][0], "early_exit": results[True][0], "full_row_forwards": results[False][2],
            "exit_row_forwards": results[True][2], "identical": same}


def run_early_exit_gpu(s: Setting) -> None:
    """Part 2 on the 8B shape with forced answer lengths."""
    logits_fn = build_logits_fn(replace(s, gen_length=max(gen for gen, _ in GEN_SETTINGS)))
    generator = torch.Generator().manual_seed(2)
    print(f"forced answer lengths per row: {ANSWER_LENGTHS}")
    for gen_length, block_length in GEN_SETTINGS:
        for batch in (1, 8):
            r = early_exit_forced(logits_fn, s, gen_length, block_length, batch, generator)
            full_rf, exit_rf = r["full_row_forwards"], r["exit_row_forwards"]
            print(f"gen {gen_length} / block {block_length}, batch {batch}: full loop {r['full'] / batch:.3f} "
                  f"s/sample, {full_rf} row-forwards | early exit {r['early_exit'] / batch:.3f} s/sample, "
                  f"{exit_rf} row-forwards ({exit_rf / full_rf:.2f}x) | answers identical: {r['identical']}/{batch}")


def keep_freed_memory() -> None:
    """Stop glibc from returning each freed logits buffer to the OS (CPU mode only).

    With its default thresholds every multi-MB tensor is a fresh mmap, zeroed page by page on first
    touch: on a busy 2-core machine that made CPU timings swing by 10x and run 4x longer.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_mmap_threshold, 1 << 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="CUDA, random 8B LLaDA-shaped model, prompt 768 + gen 256")
    parser.add_argument("--train-seconds", type=float, default=60.0, help="CPU part 2: training time of the tiny model")
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    if not args.gpu:
        keep_freed_memory()
        # One thread: with two, OpenMP barriers spin whenever another process holds a core, and CPU
        # timings on a shared machine swung by 3x between runs.
        torch.set_num_threads(1)
    if not run_reference_comparison(GPU if args.gpu else CPU):
        raise SystemExit("the samplers disagree on some tokens")
    if args.gpu:
        run_early_exit_gpu(GPU)
    elif not run_early_exit_cpu(train_seconds=args.train_seconds):
        raise SystemExit("early exit changed some returned text")


if __name__ == "__main__":
    main()
