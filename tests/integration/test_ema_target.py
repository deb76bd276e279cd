"""The EMA target on its flat buffers: the target model's weights are views into them, and a checkpoint
written before the EMA moved into flat buffers resumes with today's code.

tests/assets/pre_flat_ema/ holds, from one run of the per-parameter EMA code (meta.json names the
commit and command): `step_2/` (a resumable checkpoint: engine state, fp32 `ema.safetensors`, RNG,
trainer state) and `final_step_3/` (the exported backbone and EMA after the run's third and last step).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dllm_jepa_train.build import build_trainer
from dllm_jepa_train.config import load_config
from dllm_jepa_train.jepa import EmaTarget, _drop_output_head

ROOT = Path(__file__).resolve().parents[2]
ASSET = ROOT / "tests" / "assets" / "pre_flat_ema"
FLAGS = ["--run.engine", "torch", "--tiny.hidden_size", "32", "--optim.max_steps", "3", "--run.save_every", "2"]


def test_pre_flat_checkpoint_resumes_and_finishes_bit_for_bit(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the asset was written with OMP_NUM_THREADS=1
    try:
        cfg = load_config(str(ROOT / "dllm_jepa_train" / "configs" / "tiny_jepa.yaml"),
                          [*FLAGS, "--run.output_dir", str(tmp_path / "run"), "--run.resume", str(ASSET / "step_2")])
        tr = build_trainer(cfg)
        saved = load_file(str(ASSET / "step_2" / "ema.safetensors"))
        assert any(not torch.equal(saved[n], p) for n, p in zip(tr.target.names, tr.target.parameters()))
        tr.resume(ASSET / "step_2")
        loaded = tr.target.state_dict()
        assert list(loaded) == tr.target.names and sorted(loaded) == sorted(saved)
        for name, tensor in saved.items():
            assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
        # The target forward runs on what was loaded (fp32 run: the model's weights are the master).
        model_params = dict(tr.target.model.named_parameters())
        assert all(torch.equal(model_params[n], saved[n]) for n in saved)
        final = tr.train()
    finally:
        torch.set_num_threads(threads)
    assert tr.global_step == 3
    meta = json.loads((ASSET / "meta.json").read_text())
    here = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if any(meta[k] != v for k, v in here.items()):
        pytest.skip(f"step 3 compared bit for bit only under the asset's float order: {meta} vs {here}")
    for rel, expected_file in (("jepa/ema.safetensors", "ema.safetensors"), ("model.safetensors", "model.safetensors")):
        got, expected = load_file(str(final / rel)), load_file(str(ASSET / "final_step_3" / expected_file))
        assert sorted(got) == sorted(expected), rel
        changed = [k for k in expected if not torch.equal(got[k], expected[k])]
        assert not changed, f"{rel}: {len(changed)} tensors differ after the resumed step 3, e.g. {changed[:3]}"


@pytest.mark.parametrize("family", ["generic", "llada"])
def test_target_model_runs_on_views_of_the_flat_ema(tiny_checkpoints, family):
    from lm_eval_diffusion.backbone import load_backbone

    online = load_backbone(str(tiny_checkpoints[family]), probe_padding=False).model
    old_copy = copy.deepcopy(online)  # how the target was built before: its names are the checkpoint's
    _drop_output_head(old_copy)
    for compute_dtype, shadow in ((torch.float32, True), (torch.bfloat16, True), (torch.bfloat16, False)):
        target = EmaTarget(online, None, 0.9, compute_dtype, shadow)
        assert target.names == [n for n, _ in old_copy.named_parameters()]
        use_shadow = shadow and compute_dtype != torch.float32
        (flat,) = (target.ema.flat_shadow if use_shadow else target.ema.flat_master).values()
        weights = list(target.model.parameters())
        assert len(weights) == len(target.names)
        assert all(w.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr() for w in weights)
        assert all(w.dtype == (compute_dtype if use_shadow else torch.float32) and not w.requires_grad
                   for w in weights)
        assert all(p.untyped_storage().data_ptr() != flat.untyped_storage().data_ptr() for p in online.parameters())
        with torch.no_grad():
            for p in online.parameters():
                p.mul_(1.5)
        target.update()  # what the target forward reads moves with the master
        assert all(torch.equal(w, m.to(w.dtype)) for w, m in zip(weights, target.master))
        assert not torch.equal(target.master[0], online.get_input_embeddings().weight)
