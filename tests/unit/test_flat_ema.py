"""FlatEma: flat fp32 buffers, the one-pass update bit for bit against the foreach code it replaced,
an EMA of a parameter subset, and the compiled (CUDA) kernel to 1 fp32 ulp."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

from dllm_jepa_train.jepa import EMA_ALIGN, EMA_CPU_CHUNK, FlatEma, ema_bound_bytes

# Tails shorter than a vector, one element, a tensor crossing a CPU chunk boundary, an odd 3-d shape.
SHAPES = [(3,), (1,), (17, 5), (64, 64), (520, 513), (2, 3, 7)]
DECAY = 0.996


def online_tensors(dtype: torch.dtype, device: str = "cpu", seed: int = 0, shapes=SHAPES) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(device=device, dtype=dtype) for s in shapes]


def train_a_little(online: list[torch.Tensor], seed: int) -> None:
    """What an optimizer step does to the online weights, roughly: a small move of every element."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in online:
            p.add_((1e-2 * torch.randn(p.shape, generator=gen)).to(device=p.device, dtype=p.dtype))


def foreach_reference(master, online, shadow, decay: float) -> None:
    """The update before the flat buffers (jepa.py at a26cb13), verbatim."""
    torch._foreach_mul_(master, decay)
    torch._foreach_add_(master, [p.detach() for p in online], alpha=1.0 - decay)
    if shadow is not None:
        torch._foreach_copy_(shadow, master)


def ulp(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    return torch.nextafter(x, torch.full_like(x, float("inf"))) - x


@pytest.mark.parametrize("online_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shadow_dtype", [None, torch.bfloat16])
def test_cpu_update_is_bit_identical_to_the_foreach_update(online_dtype, shadow_dtype):
    online = online_tensors(online_dtype)
    assert max(p.numel() for p in online) > EMA_CPU_CHUNK  # a tensor the sweep splits into chunks
    ema = FlatEma([(f"p{i}", p) for i, p in enumerate(online)], DECAY, shadow_dtype)
    assert not ema.fused
    ref_master = [p.float().clone() for p in online]
    ref_shadow = [m.to(shadow_dtype) for m in ref_master] if shadow_dtype else None
    for step in range(3):
        train_a_little(online, seed=step)
        ema.update()
        foreach_reference(ref_master, online, ref_shadow, DECAY)
        for i, (got, ref) in enumerate(zip(ema.master, ref_master)):
            assert got.dtype == torch.float32 and torch.equal(got, ref), (step, SHAPES[i])
        if shadow_dtype is not None:
            assert all(s.dtype == shadow_dtype and torch.equal(s, r) for s, r in zip(ema.shadow, ref_shadow))
    assert not torch.equal(ema.master[3], online[3].float())  # the EMA lags the online weights


def test_flat_layout_follows_a_parameter_subset():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4)).to(torch.bfloat16)
    followed = [(n, p) for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2]
    ema = FlatEma(followed, 0.9, shadow_dtype=torch.bfloat16)
    assert list(ema.state_dict()) == ["0.weight", "2.weight"] and ema.num_parameters() == 8 * 16 + 16 * 4
    assert ema.bound_bytes() == ema_bound_bytes(8 * 16 + 16 * 4) == 12 * (8 * 16 + 16 * 4)
    # One fp32 buffer, views at aligned offsets (the second tensor starts after the first's padding).
    (flat,) = ema.flat_master.values()
    assert flat.numel() == 2 * EMA_ALIGN + 64 and flat.dtype == torch.float32
    assert [m.data_ptr() - flat.data_ptr() for m in ema.master] == [0, 2 * EMA_ALIGN * 4]
    others = {n: p.detach().clone() for n, p in model.named_parameters() if n not in ema.names}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    before = [m.clone() for m in ema.master]
    ema.update()
    for (_, p), m0, m in zip(followed, before, ema.master):
        expected = m0.clone()
        expected.mul_(0.9).add_(p.detach(), alpha=1.0 - 0.9)
        assert torch.equal(m, expected)
    assert all(torch.equal(s, m.bfloat16()) for s, m in zip(ema.shadow, ema.master))
    assert all(torch.equal(p, others[n] + 1.0) for n, p in model.named_parameters() if n in others)  # not touched
    # Loading refreshes the shadow and checks names and shapes.
    ema.load_state_dict({"0.weight": torch.zeros(16, 8), "2.weight": torch.ones(4, 16)})
    assert ema.shadow[0].abs().sum() == 0 and torch.equal(ema.shadow[1], torch.ones(4, 16, dtype=torch.bfloat16))
    with pytest.raises(KeyError, match="lacks 1 parameters"):
        ema.load_state_dict({"0.weight": torch.zeros(16, 8)})
    with pytest.raises(ValueError, match=r"2.weight has shape \(16, 4\)"):
        ema.load_state_dict({"0.weight": torch.zeros(16, 8), "2.weight": torch.zeros(16, 4)})


def _fused_matches_the_cpu_formula(device: str, shapes: list[tuple[int, ...]]) -> None:
    """One fused update from the same start as the CPU update: within 1 fp32 ulp of the larger of the
    result and master * decay (the two roundings the CPU code makes); the shadow is the master rounded."""
    online = online_tensors(torch.bfloat16, device, seed=1, shapes=shapes)
    start = [p.float() + 0.05 * torch.randn_like(p.float()) for p in online]  # the EMA lags: master != online
    fused = FlatEma([(f"p{i}", p) for i, p in enumerate(online)], DECAY, torch.bfloat16, fused=True)
    fused.load_state_dict({f"p{i}": s for i, s in enumerate(start)})
    graphs = counters["stats"]["unique_graphs"]
    fused.update()
    # One graph for every size, not one per tensor (size 1 is specialised: a second one).
    assert counters["stats"]["unique_graphs"] - graphs <= 1 + any(torch.Size(s).numel() == 1 for s in shapes)
    ref = [s.cpu().clone() for s in start]
    foreach_reference(ref, [p.cpu() for p in online], None, DECAY)
    for got, expected, s0, shape in zip(fused.master, ref, start, shapes):
        got = got.cpu()
        tol = ulp(torch.maximum(expected.abs(), (s0.cpu() * DECAY).abs()))
        worst = ((got - expected).abs() / tol).max().item()
        assert worst <= 1.0, f"{shape}: {worst:.2f} ulp from the CPU update"
    assert all(torch.equal(s, m.bfloat16()) for s, m in zip(fused.shadow, fused.master))


def test_compiled_update_matches_the_cpu_formula_on_cpu():
    """The kernel CUDA uses, compiled for the CPU here so the tests cover its code (size 1 left out: it
    compiles a second graph, 0/1 specialization; the GPU test keeps it)."""
    _fused_matches_the_cpu_formula("cpu", [s for s in SHAPES if s != (1,)])


@pytest.mark.gpu
def test_fused_cuda_update_matches_the_cpu_formula():
    assert FlatEma([("w", torch.zeros(3, device="cuda"))], DECAY).fused  # CUDA picks the fused kernel
    _fused_matches_the_cpu_formula("cuda", SHAPES)


def test_config_switch_reaches_the_ema_and_a_failing_fused_update_names_it(monkeypatch):
    """jepa.ema_fused: auto -> compiled on CUDA only; false -> the foreach passes; a failing compiled update
    names the switch, while an out-of-memory error passes through unchanged (bench_gpu retries on that type)."""
    from dllm_jepa_train import jepa as jepa_module
    from dllm_jepa_train.config import ConfigError, load_config

    flags = ["--model.pretrained", "x", "--data.source", "jsonl", "--data.path", "x.jsonl"]
    assert load_config(None, flags).jepa.ema_fused == "auto"
    with pytest.raises(ConfigError, match=r"jepa\.ema_fused: 'maybe' is not allowed; allowed values: auto, true, false"):
        load_config(None, [*flags, "--jepa.ema_fused", "maybe"])
    online = [torch.randn(5, 3)]
    ema = FlatEma([("w", online[0])], DECAY, None, fused=True)

    def broken(*_):
        raise ValueError("no Triton here")

    monkeypatch.setattr(jepa_module, "_fused_ema_step", lambda: broken)
    with pytest.raises(RuntimeError, match=r"failed: no Triton here; set jepa\.ema_fused false"):
        ema.update()

    def out_of_memory(*_):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(jepa_module, "_fused_ema_step", lambda: out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        ema.update()
