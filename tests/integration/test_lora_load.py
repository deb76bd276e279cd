"""LoRA adapter checkpoints on the loading side (issue 22, ask 3): load_backbone, the harness and the analysis
commands on an export shaped like the trainer's (<run>/final: peft's adapter files + tokenizer, final/jepa/
with the adapters' EMA; <run>/final_merged: base + adapters merged; <run>/config.yaml)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from dllm_jepa_train.analysis import AnalysisError
from lm_eval_diffusion.backbone import base_identity, load_backbone, model_forward, resolve_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = ["The quick brown fox jumps over the lazy dog. 0123456789", "SELECT count(*) FROM singer WHERE age > 20",
        "lines containing the word dog followed by a number", "baz = foo ( bar )",
        "call the function foo with an argument bar, substitute the result for baz."]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def fp32_cpu(path, **kwargs):
    return load_backbone(str(path), dtype="float32", device="cpu", probe_padding=False, **kwargs)


def peft_logits(peft_model, spec, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model_forward(peft_model, spec, ids)[0]


def copy_adapter(source: Path, out: Path, base: str | None = None, weights: dict | None = None) -> Path:
    """The adapter files of `source` alone (no tokenizer, no jepa/) in `out`; optionally another base or weights."""
    out.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy(source / name, out / name)
    if base is not None:
        config = json.loads((out / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base
        (out / "adapter_config.json").write_text(json.dumps(config))
    if weights is not None:
        from safetensors.torch import save_file

        save_file(weights, str(out / "adapter_model.safetensors"))
    return out


@pytest.fixture(scope="module")
def lora(tmp_path_factory, tiny_checkpoints, tiny_tokenizer):
    """A LoRA export of the tiny LLaDA-like base: its run folder, the peft model it came from, the EMA weights."""
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoModel

    from dllm_jepa_train.config import TrainConfig, save_config
    from dllm_jepa_train.toy import register_tiny_lora_targets
    from lm_eval_diffusion import families

    saved_registry = dict(families._registry)
    register_tiny_lora_targets()
    base = tiny_checkpoints["llada"]
    run = tmp_path_factory.mktemp("lora_run")
    torch.manual_seed(0)
    model = AutoModel.from_pretrained(base, trust_remote_code=True, dtype=torch.float32)
    pattern = families.lora_target_pattern(families.get_family("llada"))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=pattern))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero, which would make the adapter a no-op
                param.normal_(0.0, 0.2)
    peft_model.eval()
    final = run / "final"
    peft_model.save_pretrained(final)
    tiny_tokenizer.save_pretrained(final)
    online = get_peft_model_state_dict(peft_model)
    ema = {k: v + 0.1 * torch.randn_like(v) for k, v in online.items()}
    (final / "jepa").mkdir()
    save_file(ema, str(final / "jepa" / "ema_adapter.safetensors"))
    lora_meta = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "target_modules": pattern, "base": str(base)}
    (final / "jepa" / "config.json").write_text(json.dumps({"lora": lora_meta}))
    # final_merged: a plain HF checkpoint (remote code and tokenizer from the base), jepa/ without EMA.
    merged_dir = run / "final_merged"
    shutil.copytree(base, merged_dir)
    merged = get_peft_model(AutoModel.from_pretrained(base, trust_remote_code=True, dtype=torch.float32),
                            LoraConfig(r=4, lora_alpha=8, target_modules=pattern))
    merged.load_state_dict(peft_model.state_dict())
    merged.merge_and_unload().save_pretrained(merged_dir)
    (merged_dir / "jepa").mkdir()
    (merged_dir / "jepa" / "config.json").write_text(json.dumps({"lora": lora_meta}))
    cfg = TrainConfig()
    cfg.run.seed, cfg.run.output_dir, cfg.model.pretrained = 3, str(run), str(base)
    cfg.lora.enabled, cfg.lora.rank, cfg.lora.alpha = True, 4, 8.0
    cfg.jepa.lambda_ = 1.0
    save_config(cfg, run / "config.yaml")
    yield {"run": run, "final": final, "merged": merged_dir, "base": base, "peft": peft_model, "ema": ema}
    families._registry.clear()
    families._registry.update(saved_registry)


@pytest.fixture(scope="module")
def ids(tiny_tokenizer) -> torch.Tensor:
    return torch.tensor([tiny_tokenizer(DOCS[0], add_special_tokens=False)["input_ids"][:12]])


# ---- load_backbone -------------------------------------------------------------------------------------
def test_adapter_folder_and_peft_form_load_the_merged_model_of_the_peft_logits(lora, ids):
    from peft import PeftModel

    bb = fp32_cpu(lora["final"])
    expected = peft_logits(lora["peft"], bb.spec, ids)
    with torch.no_grad():
        got = bb.logits(ids)
        base_logits = fp32_cpu(lora["base"]).logits(ids)
    assert not isinstance(bb.model, PeftModel) and not any("lora_" in n for n, _ in bb.model.named_parameters())
    assert (expected - base_logits).abs().max() > 1e-2  # the adapter changes the logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert bb.name == str(lora["final"]) and bb.spec.family == "llada"
    assert bb.extra == {"base": str(lora["base"]), "adapter": str(lora["final"])}
    with torch.no_grad():
        peft_form = fp32_cpu(lora["base"], peft=str(lora["final"])).logits(ids)
        merged = fp32_cpu(lora["merged"]).logits(ids)
    torch.testing.assert_close(peft_form, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(merged, expected, rtol=1e-5, atol=1e-5)  # final_merged holds the same model


def test_a_dream_adapter_takes_the_family_and_logit_shift_from_its_base(lora, tiny_checkpoints, ids, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    from lm_eval_diffusion import families

    torch.manual_seed(1)
    model = AutoModel.from_pretrained(tiny_checkpoints["dream"], trust_remote_code=True, dtype=torch.float32)
    pattern = families.lora_target_pattern(families.get_family("dream"))  # the fixture registered the tiny names
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=pattern))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2)
    peft_model.eval().save_pretrained(tmp_path / "dream_adapter")
    bb = fp32_cpu(tmp_path / "dream_adapter")
    assert bb.spec.family == "dream" and bb.spec.shift_logits
    with torch.no_grad():
        torch.testing.assert_close(bb.logits(ids), peft_logits(peft_model, bb.spec, ids), rtol=1e-5, atol=1e-5)


def test_base_mismatch_names_both_paths_and_equal_spellings_of_the_base_pass(lora, tiny_checkpoints, tmp_path):
    other = tiny_checkpoints["llada_nopad"]
    with pytest.raises(ValueError, match="was made for base") as err:
        fp32_cpu(other, peft=str(lora["final"]))
    assert str(lora["base"]) in str(err.value) and str(other) in str(err.value) and str(lora["final"]) in str(err.value)
    respelled = f"{lora['base']}/../{lora['base'].name}/"
    assert resolve_checkpoint(respelled, str(lora["final"])).adapter == str(lora["final"])
    moved = copy_adapter(lora["final"], tmp_path / "moved", base=str(tmp_path / "gone" / "base"))
    with pytest.raises(OSError, match="base of LoRA adapter") as err:
        fp32_cpu(moved)
    assert str(moved) in str(err.value) and str(tmp_path / "gone" / "base") in str(err.value)
    with pytest.raises(ValueError, match="is itself a LoRA adapter folder"):
        resolve_checkpoint(str(lora["final"]), str(lora["final"]))
    with pytest.raises(ValueError, match="no adapter_config.json"):
        resolve_checkpoint(str(lora["base"]), str(lora["base"]))


def test_base_identity_resolves_local_paths_hub_ids_and_cache_snapshots(tmp_path):
    snapshot = tmp_path / "hub" / "models--GSAI-ML--LLaDA-8B-Instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert base_identity("GSAI-ML/LLaDA-8B-Instruct") == base_identity("gsai-ml/llada-8b-instruct/")
    assert base_identity(str(snapshot)) == base_identity("GSAI-ML/LLaDA-8B-Instruct")
    assert base_identity(str(tmp_path / "hub" / ".." / "hub")) == str((tmp_path / "hub").resolve())
    assert base_identity("GSAI-ML/LLaDA-8B-Base") != base_identity("GSAI-ML/LLaDA-8B-Instruct")


def test_an_adapted_module_of_another_shape_is_a_clear_error(lora, tiny_tokenizer, tmp_path):
    from dllm_jepa_train.toy.models import build_tiny_checkpoint

    small = build_tiny_checkpoint(tmp_path / "small", "llada", tiny_tokenizer, hidden_size=32, num_heads=4)
    adapter = copy_adapter(lora["final"], tmp_path / "adapter", base=str(small))
    with pytest.raises(ValueError, match="does not fit base") as err:
        fp32_cpu(adapter)
    assert str(adapter) in str(err.value) and str(small) in str(err.value) and "size mismatch" in str(err.value)


def test_tokenizer_comes_from_the_base_when_the_adapter_folder_has_none(lora, ids, tmp_path):
    bare = copy_adapter(lora["final"], tmp_path / "bare")
    assert resolve_checkpoint(str(bare)).tokenizer == str(lora["base"])
    assert resolve_checkpoint(str(lora["final"])).tokenizer == str(lora["final"])
    bb = fp32_cpu(bare)
    assert bb.tokenizer.get_vocab() == fp32_cpu(lora["base"]).tokenizer.get_vocab()
    with torch.no_grad():
        torch.testing.assert_close(bb.logits(ids), peft_logits(lora["peft"], bb.spec, ids), rtol=1e-5, atol=1e-5)


# ---- the harness ---------------------------------------------------------------------------------------
def test_harness_scores_the_adapter_folder_as_its_merged_checkpoint(lora, caplog):
    from lm_eval_diffusion.harness import DiffusionLM

    class Request:
        def __init__(self, *args):
            self.args = args

    requests = [Request("Tom has 3 apples", " and 4 more"), Request("SELECT count(*)", " FROM singer")]
    settings = {"device": "cpu", "dtype": "float32", "mc_num": 4, "mc_batch_size": 4}
    with caplog.at_level(logging.INFO, logger="lm_eval_diffusion.harness"):
        lm = DiffusionLM(pretrained=str(lora["final"]), **settings)
    assert f"base {lora['base']} + LoRA adapter {lora['final']}" in caplog.text
    merged = DiffusionLM(pretrained=str(lora["merged"]), **settings)
    got, expected = lm.loglikelihood(requests), merged.loglikelihood(requests)
    assert [g[0] for g in got] == pytest.approx([e[0] for e in expected], rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError, match="was made for base"):
        DiffusionLM(pretrained=str(lora["merged"]), peft=str(lora["final"]), **settings)


# ---- analysis ------------------------------------------------------------------------------------------
def test_run_identification_accepts_adapter_exports_and_final_merged(lora, tmp_path):
    from dllm_jepa_train.analysis.common import run_identity
    from dllm_jepa_train.analysis.runs import Labels, RunTable, is_checkpoint_dir

    assert is_checkpoint_dir(lora["final"]) and is_checkpoint_dir(lora["merged"])
    assert not is_checkpoint_dir(lora["run"])  # config.yaml, neither config.json nor adapter_config.json
    for export in (lora["final"], lora["merged"]):
        identity = run_identity(str(export))
        assert identity is not None and identity.config == lora["run"] / "config.yaml"
        assert identity.method == "jepa" and identity.seed == 3 and dict(identity.cell)["lora.enabled"] is True
    # An lm-eval results file of pretrained=<base>,peft=<adapter> belongs to the adapter's run.
    results = tmp_path / "results_x.json"
    results.write_text(json.dumps({"results": {"gsm8k": {"exact_match,flexible-extract": 0.5}},
                                   "config": {"model_args": f"pretrained={lora['base']},peft={lora['final']}"}}))
    table = RunTable()
    table.add_results(results, Labels())
    (run,) = table.runs.values()
    assert run.checkpoint == str(lora["final"].resolve()) and run.seed == 3


def test_probe_and_drift_load_adapters_like_their_merged_checkpoints(lora, tmp_path):
    from dllm_jepa_train.analysis.drift import DriftSettings, run_drift
    from dllm_jepa_train.analysis.probe import ProbeSettings, run_probe

    text = tmp_path / "docs.txt"
    text.write_text("\n".join(DOCS) + "\n")
    bare = copy_adapter(lora["final"], tmp_path / "bare")  # tokenizer from the base
    probe = run_probe(str(lora["base"]), [str(bare), str(lora["merged"])],
                      ProbeSettings(text_file=str(text), num_docs=5, device="cpu", dtype="float32"))
    adapter, merged = probe["finetunes"]
    assert adapter["loss"] == pytest.approx(merged["loss"], rel=1e-5) and abs(adapter["delta"]) > 1e-4
    drift = run_drift(str(lora["base"]), [str(lora["final"]), str(lora["merged"])],
                      DriftSettings(text_file=str(text), num_samples=5, device="cpu", dtype="float32"))
    adapter, merged = drift["finetunes"]
    assert adapter["per_layer"] == pytest.approx(merged["per_layer"], abs=1e-6) and adapter["mean"] > 0


def test_collapse_target_ema_merges_the_ema_adapter(lora, tmp_path):
    from dllm_jepa_train.analysis.collapse import CollapseSettings, run_collapse

    text = tmp_path / "docs.txt"
    text.write_text("\n".join(DOCS) + "\n")

    def collapse(checkpoint: Path, target: str) -> dict:
        settings = CollapseSettings(config=str(lora["run"] / "config.yaml"), text_file=str(text), num_samples=5,
                                    num_pairs=50, target=target, device="cpu", dtype="float32", max_length=32)
        return run_collapse(str(checkpoint), settings)

    online, ema = collapse(lora["final"], "online"), collapse(lora["final"], "ema")
    assert ema["z_context"] == online["z_context"]  # z_L always from the online weights
    assert ema["z_target"]["effective_rank"] != pytest.approx(online["z_target"]["effective_rank"], rel=1e-6)
    # The EMA target is the base with the EMA weights as the adapter: the same as an adapter made of them.
    ema_adapter = copy_adapter(lora["final"], tmp_path / "ema_as_adapter", weights=lora["ema"])
    built = collapse(ema_adapter, "online")
    for key, value in ema["z_target"].items():
        assert built["z_target"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    with pytest.raises(AnalysisError, match="merged LoRA export, which holds no EMA") as err:
        collapse(lora["merged"], "ema")
    assert str(lora["run"] / "final") in str(err.value)
    with pytest.raises(AnalysisError, match="ema_adapter.safetensors does not exist"):
        collapse(copy_adapter(lora["final"], tmp_path / "no_ema"), "ema")  # e.g. a LoRA baseline run's export
