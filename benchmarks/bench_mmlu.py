"""Forwards and seconds of `mmlu_500` on a tiny checkpoint: one forward per question vs Monte-Carlo per choice.

    python benchmarks/bench_mmlu.py                 # CPU, tiny LLaDA-like model, 57 generated subjects
    python benchmarks/bench_mmlu.py --limit 100     # fewer questions

Both runs evaluate the real `mmlu_500` task (lm-eval's `simple_evaluate`, 0-shot, the 500 questions
MMLU-500 selects from generated data in the release layout) with the same DiffusionLM. "per-choice MC"
is the estimator before one-token answers were special-cased: `elbo_mc` with mc_num masked copies
for each of the 4 choices, `mc_batch_size` per forward. "ours" is `DiffusionLM.loglikelihood`. The
script counts forwards (rows and calls) and wall time of each, checks the per-choice log-likelihoods
agree (one-token ELBO: every Monte-Carlo copy is the same masked input), and prints the ratio.
The tiny tokenizer is trained with "Answer: A".."Answer: D" in its corpus, so " A".." D" are one token
each, as in LLaDA's and Dream's tokenizers.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lm_eval_diffusion import tasks_dir  # noqa: E402
from lm_eval_diffusion.harness import DiffusionLM  # noqa: E402
from lm_eval_diffusion.likelihood import elbo_mc  # noqa: E402
from dllm_jepa_train.toy.models import DEFAULT_CORPUS, build_tiny_checkpoint, build_tokenizer  # noqa: E402

NUM_SUBJECTS = 57
QUESTIONS_PER_SUBJECT = 20


def write_mmlu(root: Path) -> None:
    """57 generated subjects in the MMLU release layout: mmlu/test/<subject>_test.csv (no header)."""
    folder = root / "mmlu" / "test"
    folder.mkdir(parents=True)
    for s in range(NUM_SUBJECTS):
        with (folder / f"subject_{s:02d}_test.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            for i in range(QUESTIONS_PER_SUBJECT):
                question = f"Tom has {s} apples and buys {i} more. How many apples does he have?"
                writer.writerow([question, str(s + i), str(s + i + 1), str(s), str(i), "ABCD"[i % 4]])


class Counting:
    """Wraps a logits function; counts calls (forwards) and rows (masked copies)."""

    def __init__(self, fn) -> None:
        self.fn, self.calls, self.rows = fn, 0, 0

    def __call__(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        self.rows += ids.shape[0]
        return self.fn(ids, attention_mask)


def per_choice_mc(lm: DiffusionLM, requests: list, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
    """The previous estimator: elbo_mc per request, whatever the continuation length."""
    out = []
    for request in requests:
        prompt, cont = lm._encode_pair(*request.args)
        prompt = lm._fit_request(request.args[1], prompt, cont)
        generator = torch.Generator().manual_seed(lm._request_seed(prompt, cont))
        value = elbo_mc(lm.backbone.logits, torch.tensor(prompt, device=lm.device), torch.tensor(cont, device=lm.device),
                        mask_id=lm.backbone.spec.mask_id, mc_num=lm.args.mc_num, batch_size=lm.args.mc_batch_size,
                        generator=generator, cfg_scale=lm.args.cfg_scale)
        out.append((float(value), False))
    return out


def run(lm: DiffusionLM, limit: int | None, data_dir: Path) -> tuple[dict, float, list[float]]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata={"data_dir": str(data_dir)})
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=["mmlu_500"], limit=limit, task_manager=manager, log_samples=True)
    seconds = time.perf_counter() - start
    # Each sample's `resps`: one [(loglikelihood, is_greedy)] per choice, in choice order.
    samples = sorted(out["samples"]["mmlu_500"], key=lambda sample: sample["doc_id"])
    scores = [float(resp[0][0]) for sample in samples for resp in sample["resps"]]
    return out["results"]["mmlu_500"], seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="questions (default: all 500)")
    parser.add_argument("--mc-num", type=int, default=128)
    parser.add_argument("--mc-batch-size", type=int, default=32)
    args = parser.parse_args()
    logging.getLogger("lm-eval").setLevel(logging.WARNING)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_mmlu(root / "data")
        corpus = list(DEFAULT_CORPUS) + [f"Answer: {letter}" for letter in "ABCD"] * 5
        tokenizer = build_tokenizer(corpus)
        checkpoint = build_tiny_checkpoint(root / "ckpt", "llada", tokenizer, seed=0)
        assert all(len(tokenizer(f" {c}", add_special_tokens=False)["input_ids"]) == 1 for c in "ABCD")
        lm = DiffusionLM(pretrained=str(checkpoint), device="cpu", mc_num=args.mc_num,
                         mc_batch_size=args.mc_batch_size)
        counting = Counting(lm.backbone.logits)
        lm.backbone.logits = counting

        results = {}
        for name in ("per-choice MC", "ours"):
            counting.calls = counting.rows = 0
            lm.loglikelihood = (lambda requests, disable_tqdm=False: per_choice_mc(lm, requests)) \
                if name == "per-choice MC" else DiffusionLM.loglikelihood.__get__(lm)
            metrics, seconds, scores = run(lm, args.limit, root / "data")
            results[name] = (metrics["acc,none"], seconds, counting.calls, counting.rows, scores)

    reference, ours = results["per-choice MC"], results["ours"]
    num_questions = len(ours[4]) // 4
    worst = max(abs(a - b) for a, b in zip(reference[4], ours[4]))
    assert worst < 1e-4, f"log-likelihoods differ by {worst}"
    print(f"mmlu_500 on a tiny LLaDA-like checkpoint (CPU, 1 thread), {num_questions} questions, "
          f"mc_num={args.mc_num}, mc_batch_size={args.mc_batch_size}")
    print(f"{'estimator':<15} {'acc':>6} {'seconds':>8} {'forwards':>9} {'rows':>8}")
    for name, (acc, seconds, calls, rows, _) in results.items():
        print(f"{name:<15} {acc:>6.3f} {seconds:>8.2f} {calls:>9d} {rows:>8d}")
    print(f"speed-up: {reference[1] / ours[1]:.1f}x in time, {reference[2] / ours[2]:.0f}x fewer forwards, "
          f"{reference[3] / ours[3]:.0f}x fewer masked copies; max |delta loglik| = {worst:.2e}")


if __name__ == "__main__":
    main()
