"""Time the project's LLaDA sampler against a straightforward loop of LLaDA's reference algorithm.

    python benchmarks/bench_generate.py          # CPU, small random model, well under a minute
    python benchmarks/bench_generate.py --gpu    # CUDA, random 8B LLaDA-shaped model in bf16

Both samplers run on the same model and prompts in one process; the script asserts they produce the
same tokens, then prints seconds per sample for the reference, for ours, and for the forward-only bound
(the same number of forwards timed alone), with the ratios the project targets on a GPU:
batch 1: reference / ours >= 1.25; batch 8: bound / ours >= 0.95.

The reference follows LLaDA's generate.py as published: Gumbel noise and a softmax in float64 over
every canvas position at every step (the noise even at temperature 0, where it does not change the
argmax), and a `torch.topk` per row with a tensor `k`, which syncs with the host.

The model is random, so its masked positions all predict nearly the same distribution and confidence
rankings would be decided by rounding; a fixed random offset per position (part of the "model" for
all three timings) makes the two samplers' rankings well defined, so token equality is meaningful.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm_eval_diffusion.sampler import LladaSamplerConfig, llada_generate  # noqa: E402
from dllm_jepa_train.toy.remote.tiny_blocks import Encoder  # noqa: E402

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


CPU = Setting(d_model=128, n_layers=2, n_heads=4, vocab=4096, prompt_length=64, gen_length=32, steps=16,
              block_length=16, batch_sizes=(1, 8), dtype=torch.float32, device="cpu", warmup_runs=1, repeats=3)
# LLaDA-8B's shape (d_model 4096, 32 layers, 32 heads, vocabulary 126464); the MLP here is 4x wide GELU
# instead of LLaDA's SwiGLU, about 7.5B parameters in all.
GPU = Setting(d_model=4096, n_layers=32, n_heads=32, vocab=126464, prompt_length=768, gen_length=256, steps=128,
              block_length=128, batch_sizes=(1, 8), dtype=torch.bfloat16, device="cuda", warmup_runs=0, repeats=1)


class RandomMaskedLM(nn.Module):
    """A bidirectional transformer with random weights: ids (B, L) -> logits (B, L, V)."""

    def __init__(self, s: Setting) -> None:
        super().__init__()
        self.encoder = Encoder(s.vocab, s.d_model, s.n_layers, s.n_heads)
        self.head = nn.Linear(s.d_model, s.vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        hidden, _ = self.encoder(ids, positions, None)
        return self.head(hidden)


def build_logits_fn(s: Setting, seed: int = 0):
    """The random model plus a fixed per-position logit offset (see the module docstring)."""
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(s.dtype)  # create the 8B weights directly in bf16 on the device
    try:
        with torch.device(s.device):
            model = RandomMaskedLM(s).eval()
            offset = (2.0 * torch.randn(s.prompt_length + s.gen_length, s.vocab)).to(s.dtype)
    finally:
        torch.set_default_dtype(previous)

    @torch.inference_mode()
    def logits_fn(ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return model(ids) + offset[: ids.shape[1]]

    return logits_fn


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


def run(s: Setting) -> bool:
    """Benchmark every batch size of `s`; True when all token checks pass."""
    logits_fn = build_logits_fn(s)
    config = LladaSamplerConfig(steps=s.steps, gen_length=s.gen_length, block_length=s.block_length)
    generator = torch.Generator().manual_seed(1)
    print(f"device={s.device} dtype={s.dtype} d_model={s.d_model} layers={s.n_layers} vocab={s.vocab} "
          f"prompt={s.prompt_length} gen={s.gen_length} steps={s.steps} block={s.block_length}")
    ok = True
    for batch in s.batch_sizes:
        ids = torch.randint(4, s.vocab, (batch, s.prompt_length), generator=generator).to(s.device)
        canvas = torch.cat([ids, torch.full((batch, s.gen_length), MASK_ID, device=s.device)], dim=1)
        logits_fn(canvas)  # kernels and allocator warm-up
        t_ref, ref_out = timed(
            partial(reference_generate, logits_fn, ids, s.steps, s.gen_length, s.block_length, MASK_ID), s)
        t_ours, our_out = timed(partial(llada_generate, logits_fn, ids, config, mask_id=MASK_ID), s)
        t_bound, _ = timed(partial(forwards_only, logits_fn, canvas, s.steps), s)
        same = torch.equal(ref_out, our_out)
        ok &= same
        print(f"batch {batch}: reference {t_ref / batch:.4f} s/sample | ours {t_ours / batch:.4f} s/sample | "
              f"forward-only bound {t_bound / batch:.4f} s/sample | identical tokens: {same}")
        print(f"  reference/ours = {t_ref / t_ours:.2f}x (GPU target at batch 1: >= 1.25x) | "
              f"bound/ours = {t_bound / t_ours:.3f} (GPU target at batch 8: >= 0.95)")
    return ok


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
    args = parser.parse_args()
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    if not args.gpu:
        keep_freed_memory()
        # One thread: with two, OpenMP barriers spin whenever another process holds a core, and CPU
        # timings on a shared machine swung by 3x between runs.
        torch.set_num_threads(1)
    if not run(GPU if args.gpu else CPU):
        raise SystemExit("the samplers disagree on some tokens")


if __name__ == "__main__":
    main()
