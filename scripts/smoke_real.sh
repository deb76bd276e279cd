#!/usr/bin/env bash
# Smoke test on the real checkpoints, for users: run it once on an 8-GPU node with Hugging Face hub
# access before trusting this toolkit with LLaDA-8B or Dream-7B. NOT run in CI, and never run by the
# authors: no machine this toolkit was built on had a GPU or network (see README, "Real checkpoints").
#
#   bash scripts/smoke_real.sh [OUT_DIR]          # default OUT_DIR: smoke_real_out; about 30-60 min
#
# Why 8 GPUs: one ZeRO-2 step of an 8B model with AdamW and the fp32 EMA needs about 175 GB over the
# node (the trainer prints its per-rank estimate at start), more than a smaller node holds.
#
# What it checks, in order (each step prints PASS or stops the script with FAIL):
#   1. both checkpoints load through lm_eval_diffusion.backbone (family, mask id, stop ids, padding probe);
#   2. generation on 2 GSM8K test docs: our LLaDA sampler vs LLaDA's reference loop
#      (benchmarks/bench_generate.py: reference_generate), and our Dream sampler vs Dream's own
#      `diffusion_generate`, token for token (greedy, 32 steps, 64 tokens, block 32);
#   3. one ZeRO-2 optimizer step of each method (baseline, JEPA, L2 anchor) on LLaDA-8B, and JEPA on
#      Dream-7B (the dream7b.yaml override set), 8 ranks, global batch 32, then the export loads;
#   4. a 5-doc `lm_eval` run of each checkpoint on gsm8k_dllm through llada_diffusion.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-smoke_real_out}"
mkdir -p "$OUT"
NUM_GPUS="${NUM_GPUS:-8}"
LLADA="${LLADA:-GSAI-ML/LLaDA-8B-Base}"
DREAM="${DREAM:-Dream-org/Dream-v0-Base-7B}"
CONFIGS=dllm_jepa_train/configs

echo "== 1-2. load both checkpoints, generate 2 GSM8K docs, compare with the reference samplers"
LLADA="$LLADA" DREAM="$DREAM" python - <<'EOF'
import os
import sys

import torch

sys.path.insert(0, "benchmarks")
from bench_generate import reference_generate  # LLaDA's generate.py as published

from lm_eval_diffusion.backbone import load_backbone
from lm_eval_diffusion.prompts import doc_to_text
from lm_eval_diffusion.sampler import DreamSamplerConfig, LladaSamplerConfig, dream_generate, llada_generate
from lm_eval_diffusion.task_data import load_docs

docs = load_docs("gsm8k", "test", None)[:2]
STEPS, GEN, BLOCK = 32, 64, 32
for name, family in ((os.environ["LLADA"], "llada"), (os.environ["DREAM"], "dream")):
    bb = load_backbone(name, dtype="bfloat16", device="cuda")
    assert bb.spec.family == family, (name, bb.spec.family)
    print(f"PASS load {name}: family {bb.spec.family}, mask id {bb.spec.mask_id}, EOS {bb.spec.eos_id}")
    for doc in docs:
        prompt = torch.tensor([bb.tokenizer(doc_to_text("gsm8k", doc))["input_ids"]], device="cuda")
        if family == "llada":
            ours = llada_generate(bb.logits, prompt, LladaSamplerConfig(steps=STEPS, gen_length=GEN, block_length=BLOCK),
                                  mask_id=bb.spec.mask_id)
            reference = reference_generate(bb.logits, prompt, STEPS, GEN, BLOCK, bb.spec.mask_id)
        else:
            ours = dream_generate(bb.logits, prompt, DreamSamplerConfig(steps=STEPS, gen_length=GEN, alg="entropy"),
                                  mask_id=bb.spec.mask_id)
            reference = bb.model.diffusion_generate(prompt, max_new_tokens=GEN, steps=STEPS, temperature=0.0,
                                                    alg="entropy", alg_temp=0.0, output_history=False,
                                                    return_dict_in_generate=True).sequences
        same = torch.equal(ours.cpu(), reference.cpu())
        print(f"{'PASS' if same else 'FAIL'} {family} generation == reference: "
              f"{bb.tokenizer.decode(ours[0, prompt.shape[1]:], skip_special_tokens=True)[:80]!r}")
        if not same:
            sys.exit(1)
    del bb
    torch.cuda.empty_cache()
EOF

echo "== 3. one ZeRO-2 step of each method on $NUM_GPUS GPUs"
step() {  # name, then config files and overrides
    local name="$1"; shift
    deepspeed --num_gpus "$NUM_GPUS" dllm_jepa_train/main.py "$@" --optim.max_steps 1 --run.save_every 0 \
        --run.output_dir "$OUT/train_$name"
    python -c "from lm_eval_diffusion.backbone import load_backbone as l; l('$OUT/train_$name/final', probe_padding=False)"
    echo "PASS one step + export: $name ($(grep -h 'step 1/1' "$OUT/train_$name/train.log" | tail -1))"
}
step llada_baseline --config $CONFIGS/gsm8k_baseline.yaml --model.pretrained "$LLADA"
step llada_jepa --config $CONFIGS/gsm8k_jepa.yaml --model.pretrained "$LLADA"
step llada_anchor --config $CONFIGS/gsm8k_widet_l2anchor.yaml --model.pretrained "$LLADA"
step dream_jepa --config $CONFIGS/gsm8k_jepa.yaml --config $CONFIGS/dream7b.yaml --model.pretrained "$DREAM"

echo "== 4. 5-doc lm_eval of each exported checkpoint"
for name in llada_baseline llada_jepa llada_anchor dream_jepa; do
    accelerate launch --num_processes "$NUM_GPUS" -m lm_eval --model llada_diffusion \
        --model_args "pretrained=$OUT/train_$name/final" --tasks gsm8k_dllm --limit 5 --batch_size 1 \
        --output_path "$OUT/eval_$name"
    echo "PASS lm_eval: $name"
done
echo "all smoke checks passed; outputs in $OUT"
