"""The trainer in-process (torch engine, tiny checkpoints): updates, lambda = 0, accumulation, EMA, anchor,
non-finite loss, export, remote-code families, and resume after SIGKILL (plain-python script path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import flags, write_jsonl

from dllm_jepa_train.build import build_trainer
from dllm_jepa_train.config import load_config
from dllm_jepa_train.engines import cosine_lr
from dllm_jepa_train.jepa import EmaTarget, NoHead
from dllm_jepa_train.trainer import NonFiniteLossError

PROJECT = Path(__file__).resolve().parents[2]
MAIN = PROJECT / "dllm_jepa_train" / "main.py"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl")


def trainer(ckpt, jsonl, out, *extra):
    return build_trainer(load_config(None, flags(ckpt, jsonl, out, *extra)))


def clone_params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize("family", ["generic", "llada", "dream"])
def test_two_steps_change_every_trainable_parameter(tmp_path, tiny_checkpoints, jsonl, family):
    tr = trainer(tiny_checkpoints[family], jsonl, tmp_path / "run")
    module = tr.engine.module
    before = clone_params(module)
    assert any(n.startswith("predictor.") for n in before) and any(n.startswith("backbone.") for n in before)
    ema_before = [p.clone() for p in tr.target.parameters()]
    tr.train()
    unchanged = [n for n, p in module.named_parameters() if torch.equal(p, before[n])]
    assert unchanged == []
    assert all(not torch.equal(a, b) for a, b in zip(ema_before, tr.target.parameters()))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2]
    for r in lines:
        for key in ("loss_diff", "loss_jepa", "cosine", "lr", "grad_norm", "tokens_per_s", "seconds_per_step",
                    "peak_memory_gb"):
            assert isinstance(r[key], float) and r[key] == r[key], key
        assert set(r["collapse"]) == {"window", "ranks", "z_context", "z_target"} and r["collapse"]["ranks"] == 1
        assert set(r["collapse"]["z_target"]) == {"per_dim_std_mean", "effective_rank", "cosine_diversity",
                                                  "centred_effective_rank", "centred_cosine_diversity"}
    assert [r["collapse"]["window"] for r in lines] == [4, 8]  # 2 x 2 rows per step, rolling
    assert (tmp_path / "run" / "config.yaml").is_file()


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_lambda_zero_builds_no_predictor_or_ema_and_runs_no_target_forward(tmp_path, tiny_checkpoints, jsonl):
    base = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "base", "--jepa.lambda", "0")
    assert base.target is None and base.engine.module.predictor is None and base.collator.t_target is None
    assert "target_ids" not in base.step_batches(0)[1][0]
    online = _count_calls(base.engine.module.backbone)
    final = base.train()
    assert online[0] == 2 * 2  # steps x micro-batches: the context forward only
    assert not (final / "jepa" / "ema.safetensors").exists() and not (final / "jepa" / "predictor.safetensors").exists()

    jepa = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "jepa", "--jepa.lambda", "1")
    online, target = _count_calls(jepa.engine.module.backbone), _count_calls(jepa.target.model)
    jepa.train()
    assert online[0] == 4 and target[0] == 4


@pytest.mark.parametrize("norm", ["row_mean", "masked_mean", "llada"])
def test_micro_batch_4_by_1_equals_2_by_2(tmp_path, tiny_checkpoints, jsonl, norm):
    runs = []
    for micro, accum in ((4, 1), (2, 2)):
        tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / f"{micro}x{accum}", "--optim.micro_batch_size",
                     str(micro), "--optim.grad_accum", str(accum), "--data.pad_to_max_length", "true",
                     "--diffusion.loss_norm", norm, "--anchor.l2_lambda", "0.5")
        module, grads = tr.engine.module, []
        tr.engine.optimizer.register_step_pre_hook(
            lambda *_, module=module, grads=grads: grads.append(
                {n: p.grad.clone() for n, p in module.named_parameters()}))
        tr.train()
        runs.append((grads, clone_params(module), tr.target.state_dict()))
    (grads_a, a, ema_a), (grads_b, b, ema_b) = runs
    # Step 1: the summed gradient the optimizer sees is the same up to float rounding.
    for name in grads_a[0]:
        torch.testing.assert_close(grads_a[0][name], grads_b[0][name], rtol=1e-5, atol=1e-7, msg=name)
    # Step 2 adds the anchor term (once per step, not per micro-batch: 0.5 * |theta - theta_base| ~ 5e-4
    # would show); its weights differ only by Adam-amplified rounding, so compare at a fraction of lr.
    for name in grads_a[1]:
        torch.testing.assert_close(grads_a[1][name], grads_b[1][name], rtol=1e-3, atol=1e-5, msg=name)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=5e-5, msg=name)
    for name in ema_a:
        torch.testing.assert_close(ema_a[name], ema_b[name], rtol=0, atol=5e-5, msg=name)


def test_ema_step_is_exact_fp32_and_never_gets_gradients(tmp_path, tiny_checkpoints, jsonl):
    tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--optim.max_steps", "1", "--jepa.ema_decay", "0.9")
    before = [p.clone() for p in tr.target.parameters()]
    tr.train()
    assert isinstance(tr.target.model.model.lm_head, NoHead)  # the target never computes logits
    for e0, e, online in zip(before, tr.target.parameters(), tr.target.online_params):
        assert e.dtype == torch.float32 and not e.requires_grad and e.grad is None
        torch.testing.assert_close(e, 0.9 * e0 + 0.1 * online.detach(), rtol=0, atol=2e-7)
        assert not torch.equal(e, e0) and not torch.equal(e, online)


def test_bf16_ema_keeps_fp32_master_and_a_bf16_shadow(tiny_checkpoints):
    from lm_eval_diffusion.backbone import load_backbone

    bb = load_backbone(str(tiny_checkpoints["llada"]), probe_padding=False)
    ema = EmaTarget(bb.model, bb.spec, 0.996, torch.bfloat16, shadow=True)
    with torch.no_grad():
        for p in bb.model.parameters():
            p.add_(1e-3)
    ema.update()
    for master, shadow in zip(ema.master, ema.shadow):
        assert master.dtype == torch.float32 and shadow.dtype == torch.bfloat16
        assert torch.equal(shadow, master.bfloat16())
    # Why fp32: the same update applied to bf16 weights is lost to rounding.
    w = torch.full((100,), 0.02, dtype=torch.bfloat16)
    assert torch.equal(w * 0.996 + (w + 1e-3) * 0.004, w)
    assert not torch.equal(ema.master[0], load_backbone(str(tiny_checkpoints["llada"]), probe_padding=False)
                           .model.get_input_embeddings().weight)
    ids = torch.tensor([[5, 6, bb.spec.mask_id, 7]])
    z = ema.encode(ids, ids != bb.spec.mask_id)
    assert z.dtype == torch.float32 and z.shape == (1, 64)


@pytest.mark.parametrize("family", ["generic", "llada", "dream"])
def test_target_without_head_pools_the_same_hidden_state_as_the_full_model(tiny_checkpoints, family):
    from dllm_jepa_train.objectives import pool_embeddings
    from lm_eval_diffusion.backbone import load_backbone, model_forward

    bb = load_backbone(str(tiny_checkpoints[family]), probe_padding=False)
    ema = EmaTarget(bb.model, bb.spec, 0.996, torch.float32)
    ids = torch.tensor([[5, 6, bb.spec.mask_id, 7, 8], [9, bb.spec.mask_id, bb.spec.mask_id, 10, 11]])
    keep = ids != bb.spec.mask_id
    _, hidden = model_forward(bb.model, bb.spec, ids, None, output_hidden_states=True)
    torch.testing.assert_close(ema.encode(ids, keep), pool_embeddings(hidden[-1], keep))
    assert ema.has_head == (family == "generic")  # BERT ties its decoder to the input embedding


def _anchored_step(tmp_path, ckpt, jsonl, strength: float):
    tr = trainer(ckpt, jsonl, tmp_path / f"anchor{strength}", "--anchor.l2_lambda", str(strength),
                 "--optim.grad_clip", "0", "--optim.max_steps", "1")
    module = tr.engine.module
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move theta away from theta_base so the anchor term is not zero
        for p in module.backbone.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
    before = clone_params(module)
    grads: dict[str, torch.Tensor] = {}
    tr.engine.optimizer.register_step_pre_hook(
        lambda *_: grads.update({n: p.grad.clone() for n, p in module.named_parameters()}))
    tr.train()
    return tr, before, grads


def test_l2_anchor_update_is_adamw_on_g_plus_lambda_theta_minus_base(tmp_path, tiny_checkpoints, jsonl):
    strength = 0.5
    tr, before, g_anchor = _anchored_step(tmp_path, tiny_checkpoints["llada"], jsonl, strength)
    _, _, g_plain = _anchored_step(tmp_path, tiny_checkpoints["llada"], jsonl, 0.0)
    module = tr.engine.module
    backbone_names = [f"backbone.{n}" for n, _ in module.backbone.named_parameters()]
    expected = dict(g_plain)
    for name, base in zip(backbone_names, tr.anchor.base):
        expected[name] = g_plain[name] + strength * (before[name] - base)
    for name in g_anchor:
        torch.testing.assert_close(g_anchor[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)
    # The update equals torch AdamW applied to g + lambda (theta - theta_base), from the same weights.
    ref = {n: torch.nn.Parameter(before[n].clone()) for n in before}
    for n, p in ref.items():
        p.grad = expected[n].clone()
    cfg = tr.cfg.optim
    groups = [{"params": [p for p in ref.values() if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in ref.values() if p.ndim < 2], "weight_decay": 0.0}]
    torch.optim.AdamW(groups, lr=cfg.lr * cosine_lr(0, 1, 0.0), betas=cfg.betas, eps=cfg.eps).step()
    for name, p in module.named_parameters():
        torch.testing.assert_close(p.detach(), ref[name].detach(), rtol=1e-5, atol=1e-7, msg=name)


def test_non_finite_loss_names_the_step_and_keeps_the_last_checkpoint(tmp_path, tiny_checkpoints, jsonl):
    out = tmp_path / "run"
    tr = trainer(tiny_checkpoints["llada"], jsonl, out, "--run.save_every", "1", "--optim.max_steps", "4",
                 "--run.debug_nan_at_step", "3")
    with pytest.raises(NonFiniteLossError, match=r"optimizer step 3 \(epoch 0, micro-batch 0, rows \[\d+, \d+\].*"
                                                 r"last good checkpoint: .*step_2"):
        tr.train()
    assert all(torch.isfinite(p).all() for p in tr.engine.module.parameters())
    root = out / "checkpoints"
    assert (root / "latest").read_text() == "step_2"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_1", "step_2"]
    assert not (out / "final").exists()
    resumed = trainer(tiny_checkpoints["llada"], jsonl, out, "--run.save_every", "1", "--optim.max_steps", "4",
                      "--run.resume", "auto")
    resumed.train()
    assert resumed.global_step == 4 and (out / "final" / "model.safetensors").is_file()


def test_export_loads_in_the_eval_backbone_and_generates(tmp_path, tiny_checkpoints, jsonl):
    from lm_eval_diffusion.backbone import load_backbone
    from lm_eval_diffusion.sampler import LladaSamplerConfig, llada_generate

    tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--optim.max_steps", "1")
    final = tr.train()
    bb = load_backbone(str(final))
    assert bb.spec.family == "llada" and bb.honours_padding
    trained = tr.engine.module.backbone.state_dict()
    for name, value in bb.model.state_dict().items():
        assert torch.equal(value, trained[name]), name
    prompt = torch.tensor([bb.tokenizer("Tom has 3 apples")["input_ids"]])
    out = llada_generate(lambda ids, mask: bb.logits(ids, mask), prompt,
                         LladaSamplerConfig(steps=4, gen_length=8, block_length=8), mask_id=bb.spec.mask_id)
    assert out.shape == (1, prompt.shape[1] + 8) and not (out == bb.spec.mask_id).any()
    assert torch.equal(out[:, : prompt.shape[1]], prompt)
    predictor = load_file(str(final / "jepa" / "predictor.safetensors"))
    for name, value in tr.engine.module.predictor.state_dict().items():
        assert torch.equal(predictor[name], value)
    assert set(load_file(str(final / "jepa" / "ema.safetensors"))) == set(tr.target.names)
    assert json.loads((final / "jepa" / "config.json").read_text())["step"] == 1


@pytest.mark.parametrize("family, switch", [("llada", "llada"), ("dream", "hf")])
def test_remote_code_models_train_with_checkpointing_and_export_their_code(tmp_path, tiny_checkpoints, jsonl,
                                                                           family, switch):
    from lm_eval_diffusion.backbone import load_backbone

    source = tiny_checkpoints[family]
    results = {}
    for checkpointing in ("true", "false"):
        tr = trainer(source, jsonl, tmp_path / checkpointing, "--model.gradient_checkpointing", checkpointing,
                     "--optim.max_steps", "1")
        backbone = tr.engine.module.backbone
        encoder = backbone.model.encoder if family == "llada" else backbone.model
        assert encoder.use_checkpointing == (checkpointing == "true")
        assert tr.checkpointing == (switch if checkpointing == "true" else "off")
        final = tr.train()
        results[checkpointing] = clone_params(tr.engine.module)
    for name, value in results["true"].items():  # checkpointing changes memory, not the math
        torch.testing.assert_close(value, results["false"][name], rtol=1e-5, atol=1e-6)
    code = sorted(p.name for p in source.glob("*.py"))
    assert code and sorted(p.name for p in final.glob("*.py")) == code
    for name in code:
        assert (final / name).read_bytes() == (source / name).read_bytes()
    src_cfg, out_cfg = (json.loads((d / "config.json").read_text()) for d in (source, final))
    assert out_cfg["auto_map"] == src_cfg["auto_map"]
    assert load_backbone(str(final), probe_padding=False).spec.family == family


@pytest.mark.subprocess
def test_resume_after_sigkill_reaches_the_same_weights(tmp_path, tiny_checkpoints, jsonl):
    common = ["--optim.max_steps", "5", "--run.save_every", "2", "--optim.grad_accum", "2"]
    reference = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "reference", *common).train()

    out = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    # Plain python on the script path, from another folder: main.py must find the project itself.
    proc = subprocess.run([sys.executable, str(MAIN), *flags(tiny_checkpoints["llada"], jsonl, out, *common),
                           "--run.debug_sigkill_at_step", "3"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert (out / "checkpoints" / "latest").read_text() == "step_2" and not (out / "final").exists()

    resumed = trainer(tiny_checkpoints["llada"], jsonl, out, *common, "--run.resume", "auto")
    assert resumed.global_step == 0
    final = resumed.train()
    for name in ("model.safetensors", "jepa/predictor.safetensors", "jepa/ema.safetensors"):
        want, got = load_file(str(reference / name)), load_file(str(final / name))
        assert set(want) == set(got)
        for key in want:
            assert torch.equal(want[key], got[key]), f"{name}:{key}"
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_tensorboard_request_without_tensorboard_warns(tmp_path, tiny_checkpoints, jsonl):
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.warns(UserWarning, match="tensorboard is not installed"):
            tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--run.tensorboard", "true")
        assert tr.tensorboard is None
    else:
        tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--run.tensorboard", "true")
        assert tr.tensorboard is not None


def test_start_of_run_memory_estimate_counts_this_runs_parameters_and_activations(tmp_path, tiny_checkpoints, jsonl):
    # The formulas are unit-tested in tests/unit/test_memory.py; here: the trainer feeds them its own counts.
    tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--optim.micro_batch_size", "2")
    n = sum(p.numel() for p in tr.engine.module.parameters())
    est = tr.memory
    # torch engine, fp32: weights, grads 4 B each, Adam m, v 8 B, no master; EMA fp32 without a shadow
    assert est["weights_trainable"] == pytest.approx(4 * n / 1e9) and est["weights_frozen"] == 0
    assert est["gradients"] == pytest.approx(4 * n / 1e9) and est["optimizer"] == pytest.approx(8 * n / 1e9)
    assert est["ema"] == pytest.approx(4 * tr.target.num_parameters() / 1e9) and est["zero_buckets"] == 0
    # tiny LLaDA: D 64, 2 layers, MLP 4 D, V 384; 2 x 48 tokens, checkpointing on, t_L 0.2, fp32
    tokens, D, F, V = 2 * 48, 64, 256, 384
    assert tr.checkpointing != "off"
    assert est["activations"] == pytest.approx((2 * tokens * D + tokens * (10 * D + 4 * F)) * 4 / 1e9)
    assert est["logits"] == pytest.approx((tokens * V * 4 + 8 * 0.2 * tokens * V) / 1e9)
    assert est["target_forward"] == pytest.approx((3 * tokens * D + tokens * (10 * D + 4 * F)) * 4 / 1e9)
    assert est["total"] == pytest.approx(sum(v for k, v in est.items() if k != "total"))
    line = next(x for x in (tmp_path / "run" / "train.log").read_text().splitlines() if "memory estimate" in x)
    assert "torch engine, fp32" in line and "activations included" in line and "2 x 48 tokens" in line, line


def test_warmup_then_cosine_schedule():
    assert cosine_lr(0, 100, 0.05) == pytest.approx(0.2)
    assert cosine_lr(4, 100, 0.05) == pytest.approx(1.0)
    assert cosine_lr(52, 100, 0.05) == pytest.approx(0.5, abs=0.02)
    assert cosine_lr(100, 100, 0.05) == pytest.approx(0.0)


def test_predictor_depth_zero_is_the_identity_and_the_loss_is_the_two_view_cosine(tmp_path, tiny_checkpoints, jsonl):
    from dllm_jepa_train.jepa import IdentityPredictor

    tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--jepa.predictor_depth", "0")
    module = tr.engine.module
    assert isinstance(module.predictor, IdentityPredictor) and list(module.predictor.parameters()) == []
    _, batches = tr.step_batches(0)
    batch = batches[0]
    with torch.no_grad():
        _, z_context, prediction = module(batch["context_ids"], batch["context_keep"])
        z_target = tr.target.encode(batch["target_ids"], batch["target_keep"])
    assert torch.equal(prediction, z_context)
    by_hand = 1 - torch.nn.functional.cosine_similarity(z_context, z_target, dim=-1)
    from dllm_jepa_train.objectives import jepa_loss

    torch.testing.assert_close(jepa_loss(prediction, z_target), by_hand)
    before = clone_params(module)
    final = tr.train()
    assert all(not torch.equal(p, before[n]) for n, p in module.named_parameters())  # the cosine trains the backbone
    assert load_file(str(final / "jepa" / "predictor.safetensors")) == {}
    assert json.loads((final / "jepa" / "config.json").read_text())["predictor_depth"] == 0


def test_symmetric_views_draw_independent_masks_at_the_same_rate(tmp_path, tiny_checkpoints, jsonl):
    tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--diffusion.t_context", "0.3",
                 "--jepa.t_target", "0.3")
    batch = tr.step_batches(0)[1][0]
    assert torch.equal(batch["context_t"], batch["target_t"]) and float(batch["context_t"][0]) == pytest.approx(0.3)
    assert not torch.equal(batch["context_masked"], batch["target_masked"])  # two draws, not one view twice
    tr.train()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["loss_jepa"] <= 2.0 for r in lines)


def test_dream_override_set_trains_the_tiny_dream_model(tmp_path, tiny_checkpoints, jsonl):
    configs = PROJECT / "dllm_jepa_train" / "configs"
    cfg = load_config([configs / "tiny_jepa.yaml", configs / "dream7b.yaml"],
                      flags(tiny_checkpoints["dream"], jsonl, tmp_path / "run"))
    assert cfg.model.family == "dream"
    tr = build_trainer(cfg)
    assert tr.spec.family == "dream" and tr.checkpointing == "hf"
    before = clone_params(tr.engine.module)
    final = tr.train()
    assert all(not torch.equal(p, before[n]) for n, p in tr.engine.module.named_parameters())
    from lm_eval_diffusion.backbone import load_backbone

    assert load_backbone(str(final), probe_padding=False).spec.family == "dream"


def test_collapse_log_rolls_a_window_of_pooled_vectors_over_steps(tmp_path, tiny_checkpoints, jsonl):
    """collapse_every 3, window 8, 4 rows per step: a log step needs its own and the previous step's rows;
    the buffer keeps the last 8 (step 5's rows push out step 2's)."""
    tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--jepa.collapse_every", "3",
                 "--jepa.collapse_window", "8", "--optim.max_steps", "5")
    snapshots = {}
    original = tr._collapse

    def spy(step, z_context, z_target):
        out = original(step, z_context, z_target)
        snapshots[step] = tr.collapse_buffer["z_target"].clone()
        return out

    tr._collapse = spy
    tr.train()
    # steps 1 and 4 lie outside the next log step's window (2 steps x 4 rows = 8): they gather nothing
    assert [snapshots[s].shape[0] for s in range(1, 6)] == [0, 4, 8, 8, 8]
    assert torch.equal(snapshots[3][:4], snapshots[2])  # step 2's rows, then step 3's
    assert torch.equal(snapshots[4], snapshots[3])
    assert not torch.equal(snapshots[5], snapshots[4])  # step 5 is inside it
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert ["collapse" in r for r in lines] == [False, False, True, False, False]
    collapse = lines[2]["collapse"]
    assert collapse["window"] == 8
    from dllm_jepa_train.objectives import collapse_stats

    stats, centred = collapse_stats(snapshots[3], seed=3), collapse_stats(snapshots[3], seed=3, center=True)
    assert collapse["z_target"]["effective_rank"] == pytest.approx(stats["effective_rank"])
    assert collapse["z_target"]["centred_effective_rank"] == pytest.approx(centred["effective_rank"])
    log = (tmp_path / "run" / "train.log").read_text()  # the trainer's logger does not propagate
    assert "collapse z_L (window 8 vectors, 1 rank(s)): per-dim std" in log and "| centred: effective rank" in log


def test_centred_collapse_stats_see_through_a_shared_mean_direction():
    """Rows = a large common offset + small independent noise: uncentred they look collapsed, centred not."""
    gen = torch.Generator().manual_seed(0)
    z = 10.0 * torch.ones(64, 16) + 0.1 * torch.randn(64, 16, generator=gen)
    from dllm_jepa_train.objectives import collapse_stats

    uncentred, centred = collapse_stats(z), collapse_stats(z, center=True)
    assert uncentred["effective_rank"] < 1.1 and uncentred["cosine_diversity"] < 0.01
    assert centred["effective_rank"] > 10 and centred["cosine_diversity"] > 0.5
    assert centred["per_dim_std_mean"] == pytest.approx(uncentred["per_dim_std_mean"])


def test_gsm8k_dev_slice_is_held_out_of_training_and_readable_as_a_task_split(tmp_path, tiny_checkpoints):
    from dllm_jepa_train.data import dev_slice
    from lm_eval_diffusion.task_data import load_docs

    docs = [{"question": f"Tom has {i} apples. How many?", "answer": f"He has {i}.\n#### {i}"} for i in range(30)]
    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    held = dev_slice(30, 6, seed=5)
    assert len(held) == 6 and held != dev_slice(30, 6, seed=6)
    args = ["--model.pretrained", str(tiny_checkpoints["llada"]), "--data.source", "gsm8k", "--data.data_dir",
            str(tmp_path / "data"), "--data.max_length", "64", "--data.dev_rows", "6", "--data.dev_seed", "5",
            "--run.engine", "torch", "--run.precision", "fp32", "--optim.max_steps", "1"]
    for seed in (1, 2):  # the slice follows data.dev_seed, not run.seed: every run of a grid shares it
        out = tmp_path / f"run{seed}"
        tr = build_trainer(load_config(None, [*args, "--run.seed", str(seed), "--run.output_dir", str(out)]))
        assert len(tr.rows) == 24
        assert load_docs("gsm8k", "test", out / "dev_data") == [docs[i] for i in held]
        trained = {tr.tokenizer.decode(r["prompt_ids"], skip_special_tokens=True) for r in tr.rows}
        assert not any(docs[i]["question"] in text for i in held for text in trained)
        assert sum(docs[i]["question"] in text for i in range(30) for text in trained) == 24
    with pytest.raises(Exception, match="data.dev_rows: only for data.source gsm8k"):
        load_config(None, ["--data.source", "nlrx", "--data.dev_rows", "5"])


@pytest.mark.parametrize("setting,fused", [("auto", False), ("true", True), ("false", False)])
def test_ema_fused_setting_reaches_the_ema(tmp_path, tiny_checkpoints, jsonl, setting, fused):
    """jepa.ema_fused: auto compiles the update on CUDA only (so not here), true always, false never."""
    tr = trainer(tiny_checkpoints["llada"], jsonl, tmp_path / "out", "--jepa.ema_fused", setting)
    assert tr.target.ema.fused is fused
