"""LoRA training in-process on the torch engine (issue 22): what is frozen, what the EMA target is, what is saved.

The launcher runs (DeepSpeed ZeRO-2, resume after SIGKILL) and the evaluation of a LoRA export are in
tests/e2e/test_lora_run.py.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import flags, write_jsonl

from dllm_jepa_train.build import build_trainer
from dllm_jepa_train.config import load_config
from dllm_jepa_train.lora import AdapterEmaTarget, apply_lora, target_pattern
from lm_eval_diffusion.backbone import load_backbone, model_forward
from lm_eval_diffusion.families import get_family, lora_target_pattern

pytestmark = pytest.mark.usefixtures("one_thread")

LORA = ["--lora.enabled", "true", "--lora.rank", "4", "--lora.alpha", "8"]


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory, tiny_checkpoints):
    """A LoRA baseline (lambda 0) with the L2 anchor and a merged export: (trainer, run dir, base checkpoint)."""
    root = tmp_path_factory.mktemp("lora_baseline")
    data = write_jsonl(root / "train.jsonl")
    cfg = load_config(None, flags(tiny_checkpoints["llada"], data, root / "run", *LORA, "--jepa.lambda", "0",
                                  "--optim.max_steps", "3", "--anchor.l2_lambda", "0.5",
                                  "--lora.export_merged", "true"))
    trainer = build_trainer(cfg)
    trainer.train()
    return trainer, root / "run", tiny_checkpoints["llada"]


def test_the_default_targets_stay_inside_the_blocks():
    llada = lora_target_pattern(get_family("llada"))
    assert re.fullmatch(llada, "model.transformer.blocks.31.ff_out")
    assert not re.fullmatch(llada, "model.transformer.ff_out")  # LLaDA's head has the blocks' MLP name
    dream = lora_target_pattern(get_family("dream"))
    assert re.fullmatch(dream, "model.layers.0.mlp.down_proj") and not re.fullmatch(dream, "lm_head")


def test_targets_that_match_nothing_name_what_the_blocks_hold(tiny_checkpoints):
    model = load_backbone(str(tiny_checkpoints["llada"]), probe_padding=False).model
    with pytest.raises(ValueError, match=r"lora.target_modules: wq, wk match no Linear module .* blocks hold: "
                                         r"mlp.0, mlp.2, proj, qkv"):
        target_pattern(model, "llada", ("wq", "wk"))


def test_lora_baseline_trains_the_adapters_only_and_exports_them(baseline_run):
    trainer, run, base_dir = baseline_run
    base = load_file(str(base_dir / "model.safetensors"))
    final = run / "final"
    config = json.loads((final / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir.resolve())
    saved = load_file(str(final / "adapter_model.safetensors"))
    assert saved and all(".lora_" in k and ".default." not in k for k in saved)
    assert any(k.endswith("lora_B.weight") and v.abs().max() > 0 for k, v in saved.items())  # they moved
    assert not (final / "model.safetensors").exists() and not (final / "jepa" / "ema.safetensors").exists()
    meta = json.loads((final / "jepa" / "config.json").read_text())
    assert meta["lora"]["rank"] == 4 and meta["lora"]["base"] == str(base_dir.resolve())
    # The anchor hooks the adapters alone (the online model was merged in place for final_merged/ since).
    assert sorted(t.shape for t in trainer.anchor.base) == sorted(v.shape for v in saved.values())
    merged = load_file(str(run / "final_merged" / "model.safetensors"))
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert changed and all(re.search(r"blocks\.\d+\.(qkv|proj|mlp\.[02])\.weight$", k) for k in changed)


def test_the_export_loads_with_peft_and_gives_the_online_logits(baseline_run, tiny_checkpoints):
    from peft import PeftModel

    _, run, base_dir = baseline_run
    bb = load_backbone(str(base_dir), probe_padding=False)
    model = PeftModel.from_pretrained(bb.model, str(run / "final")).eval()
    merged = load_backbone(str(run / "final_merged"), probe_padding=False)
    ids = torch.tensor([[5, 9, 13, bb.spec.mask_id, bb.spec.mask_id, 21]])
    with torch.no_grad():
        want = model_forward(merged.model, merged.spec, ids)[0]
        got = model_forward(model, bb.spec, ids)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture
def lora_model(tiny_checkpoints):
    bb = load_backbone(str(tiny_checkpoints["llada"]), probe_padding=False)
    lora = load_config(None, ["--model.pretrained", "x", *LORA, "--lora.dropout", "0.5"]).lora
    model = apply_lora(bb.model, lora, "llada", str(tiny_checkpoints["llada"]), seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model.train(), bb.spec


def test_the_target_runs_the_ema_adapters_without_dropout_and_restores_the_online_ones(lora_model):
    model, spec = lora_model
    target = AdapterEmaTarget(model, spec, decay=0.5, autocast_dtype=None)
    params = [p for p in model.parameters() if p.requires_grad]
    online = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(1.0)  # the online adapters move; the EMA still holds the old values
    target.update()  # ema = 0.5 * old + 0.5 * (old + 1) = old + 0.5
    for master, p0 in zip(target.ema.master, online):
        torch.testing.assert_close(master, p0 + 0.5, rtol=0, atol=1e-6)
    ids = torch.tensor([[5, 9, 13, spec.mask_id, spec.mask_id, 21], [7, 7, spec.mask_id, 3, 4, 5]])
    keep = ids != spec.mask_id
    z = target.encode(ids, keep)
    assert torch.equal(z, target.encode(ids, keep))  # dropout 0.5 is off in the target forward
    assert model.training and all(torch.equal(p, p0 + 1.0) for p, p0 in zip(params, online))
    with torch.no_grad():  # the same model with the EMA values written in, in eval mode
        for p, master in zip(params, target.ema.master):
            p.copy_(master)
        model.eval()
        hidden = model_forward(model, spec, ids, output_hidden_states=True)[1][-1]
    from dllm_jepa_train.objectives import pool_embeddings

    assert torch.equal(z, pool_embeddings(hidden, keep))


def test_checkpointing_still_reaches_the_first_blocks_adapters(tiny_checkpoints):
    """The frozen embedding feeds the first checkpointed block an input without grad; the families'
    non-reentrant checkpoints must still give its adapters a gradient."""
    from lm_eval_diffusion.families import get_family as family

    bb = load_backbone(str(tiny_checkpoints["llada"]), probe_padding=False)
    assert family("llada").checkpointing(bb.model) == "llada"
    lora = load_config(None, ["--model.pretrained", "x", *LORA]).lora
    model = apply_lora(bb.model, lora, "llada", str(tiny_checkpoints["llada"]), seed=0).train()
    ids = torch.tensor([[5, 9, 13, bb.spec.mask_id, 21]])
    model_forward(model, bb.spec, ids)[0].square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad and "blocks.0." in n}
    assert grads and all(g is not None and g.abs().max() > 0 for n, g in grads.items() if "lora_B" in n)  # A: 0 while B = 0


def test_a_lora_checkpoint_holds_the_adapters_and_refuses_a_full_run(tiny_checkpoints, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl")
    out = tmp_path / "run"
    base = flags(tiny_checkpoints["llada"], data, out, "--optim.max_steps", "2", "--run.save_every", "1")
    build_trainer(load_config(None, base + LORA)).train()
    step = out / "checkpoints" / "step_1"
    state = torch.load(step / "engine" / "state.pt", weights_only=False)
    assert state["module"] and all(".lora_" in k or k.startswith("predictor.") for k in state["module"])
    assert json.loads((step / "trainer_state.json").read_text())["lora_base"] == str(tiny_checkpoints["llada"].resolve())
    ema = load_file(str(step / "ema.safetensors"))
    assert set(ema) == {k.removeprefix("backbone.") for k in state["module"] if ".lora_" in k}
    full = build_trainer(load_config(None, base + ["--run.resume", str(step)]))
    with pytest.raises(ValueError, match=r"holds adapters of base .*; this run trains every weight"):
        full.resume(step)
