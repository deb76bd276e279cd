"""The engines that run backward and the optimizer step, and what they are built from: AdamW parameter
groups, the LR schedule, the gradient-checkpointing switch, the L2-to-base anchor, peak memory (the
start-of-run estimate is in `memory.py`).

Engines: `DeepSpeedEngine` (ZeRO 0-2, bf16) and `TorchEngine` (one process, fp32 or bf16 autocast),
with the same semantics: the loss handed to `backward` is the step-normalised loss, and the gradient
the optimizer sees is its sum over micro-batches (and ranks). DeepSpeed divides each micro-batch
loss by the accumulation steps and averages gradients over ranks; `DeepSpeedEngine.backward` passes
`scale_wrt_gas=False` and multiplies by the world size to undo both. `build_engine` makes either from
the config: torch AdamW (decay on matrices only) and a warmup + cosine `LambdaLR` in both;
`deepspeed_config` writes the DeepSpeed JSON from the same config. `compile_forward` (`model.compile`)
runs a model's forward through torch.compile under either engine and turns a dynamo / inductor
failure into a `CompileError` that names the model, its checkpointing and the switch.

L2-to-base anchor (`anchor.l2_lambda`): a hook on every backbone parameter adds
l2_lambda * (theta - theta_base) to the gradient of the last micro-batch of each step only, so the
optimizer sees g + l2_lambda * (theta - theta_base) once per step. Tensor hooks run before the
gradient is accumulated, i.e. before ZeRO-2's own hooks copy and free `.grad`; every rank adds the
same term and DeepSpeed's rank average leaves it unchanged. theta_base is a copy of the initial
weights in the parameter dtype (+2 B/param under bf16). Gradient clipping sees the sum.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import resource
from pathlib import Path

import torch

from dllm_jepa_train.config import ConfigError, TrainConfig
from lm_eval_diffusion.compiled import require_compile_support
from lm_eval_diffusion.families import get_family


def cosine_lr(step: int, total_steps: int, warmup_ratio: float) -> float:
    """LR multiplier of optimizer step `step` (0-based): linear warmup, then cosine to 0 at `total_steps`.

    Warmup is (step + 1) / warmup_steps, so the first step already moves the weights.
    """
    warmup = math.ceil(warmup_ratio * total_steps) if warmup_ratio > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on biases and norm weights (every 1-D parameter)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def enable_gradient_checkpointing(model: torch.nn.Module, family: str) -> str:
    """Turn on activation checkpointing the way the registry's `family` does; name the switch used."""
    try:
        return get_family(family).checkpointing(model)
    except ValueError as err:
        raise ValueError(f"model.gradient_checkpointing: {err}; set model.gradient_checkpointing false") from err


class CompileError(RuntimeError):
    """torch.compile could not compile a forward (or its backward) that `model.compile` asked for."""


def _is_compile_error(err: BaseException) -> bool:
    """An error raised by dynamo (tracing, a graph break or the recompile limit under fullgraph) or inductor
    (lowering, C++ / Triton codegen; usually wrapped by dynamo as BackendCompilerFailed)."""
    from torch._dynamo.exc import FailOnRecompileLimitHit, TorchDynamoException
    from torch._inductor.exc import CppCompileError, LoweringException

    return isinstance(err, (TorchDynamoException, FailOnRecompileLimitHit, CppCompileError, LoweringException))


@contextlib.contextmanager
def explain_compile_errors(what: str, cause: str):
    """Re-raise a dynamo / inductor error inside the block as CompileError naming `what` was compiled,
    `cause` (the model class, its checkpointing), the switch and the original error; others pass through."""
    try:
        yield
    except Exception as err:
        if not _is_compile_error(err):
            raise
        raise CompileError(f"model.compile: torch.compile failed on {what} of {cause}: {type(err).__name__}: "
                           f"{err}\nSet model.compile false to train this model eagerly.") from err


def compile_forward(model: torch.nn.Module, what: str, cause: str) -> None:
    """From now on run `model`'s forward through torch.compile as one graph (fullgraph); a dynamo / inductor
    error becomes CompileError naming `what` (e.g. "the online forward") and `cause` (the model, its checkpointing).

    The compiled forward replaces the instance's `forward`, so module hooks, `state_dict` keys and the
    exported checkpoint are those of the eager model. A graph break is an error, not a silent partial
    eager run. Call it after any `copy.deepcopy` of `model` (the copy would share this forward).
    """
    require_compile_support("model.compile")
    compiled = torch.compile(model.forward, fullgraph=True)

    @functools.wraps(model.forward)
    def forward(*args, **kwargs):
        with explain_compile_errors(what, cause):
            return compiled(*args, **kwargs)

    model.forward = forward


class L2Anchor:
    """Adds strength * (theta - theta_base) to each parameter's gradient while `armed` (see module doc)."""

    def __init__(self, params: list[torch.nn.Parameter], strength: float) -> None:
        self.strength = strength
        self.armed = False
        self.base = [p.detach().clone() for p in params]
        self.handles = [p.register_hook(self._hook(p, base)) for p, base in zip(params, self.base)]

    def _hook(self, param: torch.nn.Parameter, base: torch.Tensor):
        def hook(grad: torch.Tensor) -> torch.Tensor | None:
            if not self.armed:
                return None
            return grad + self.strength * (param.detach() - base).to(grad.dtype)

        return hook


class TorchEngine:
    """One process, plain torch: accumulate `.grad`, then clip, AdamW step and LR step on the boundary."""

    world_size = 1
    trainable_only = False  # save / load the trainable parameters only (LoRA: the frozen base is not saved)

    def __init__(self, module, optimizer, scheduler, grad_accum: int, grad_clip: float, autocast_dtype=None):
        self.module = module
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_accum = grad_accum
        self.grad_clip = grad_clip
        self.autocast_dtype = autocast_dtype
        self.micro_steps = 0
        self.grad_norm = float("nan")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def __call__(self, *args):
        device_type = self.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            return self.module(*args)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.micro_steps += 1
        if self.micro_steps % self.grad_accum:
            return
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        return self.optimizer.param_groups[0]["lr"]

    def _module_state(self) -> dict[str, torch.Tensor]:
        if not self.trainable_only:
            return self.module.state_dict()
        return {name: p.detach() for name, p in self.module.named_parameters() if p.requires_grad}

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"module": self._module_state(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "micro_steps": self.micro_steps}, path / "state.pt")

    def load(self, path: Path) -> None:
        state = torch.load(path / "state.pt", map_location=self.device, weights_only=False)
        if self.trainable_only:
            expected = {name for name, p in self.module.named_parameters() if p.requires_grad}
            if set(state["module"]) != expected:
                raise ValueError(f"{path}: its trainable parameters differ from this run's (e.g. "
                                 f"{sorted(set(state['module']) ^ expected)[:3]})")
            self.module.load_state_dict(state["module"], strict=False)
        else:
            self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro_steps = state["micro_steps"]


class DeepSpeedEngine:
    """A DeepSpeed engine behind the TorchEngine interface (see the module doc for the loss scaling)."""

    trainable_only = False  # see TorchEngine

    def __init__(self, engine) -> None:
        self.engine = engine
        self.module = engine.module
        self.world_size = engine.dp_world_size

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def __call__(self, *args):
        return self.engine(*args)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss * self.world_size, scale_wrt_gas=False)

    def step(self) -> None:
        self.engine.step()

    @property
    def grad_norm(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def save(self, path: Path) -> None:
        self.engine.save_checkpoint(str(path), tag="engine", save_latest=False,
                                    exclude_frozen_parameters=self.trainable_only)

    def load(self, path: Path) -> None:
        load_path, _ = self.engine.load_checkpoint(str(path), tag="engine", load_lr_scheduler_states=True,
                                                   load_module_strict=not self.trainable_only)
        if load_path is None:
            raise FileNotFoundError(f"DeepSpeed found no checkpoint under {path}")


def peak_memory_gb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB


def build_engine(cfg: TrainConfig, module: torch.nn.Module, total_steps: int, compute_dtype: torch.dtype):
    """The engine `cfg.run.engine` names around `module`, with AdamW and the warmup + cosine schedule."""
    groups = param_groups(module, cfg.optim.weight_decay)

    def schedule(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_lr(step, total_steps, cfg.optim.warmup_ratio))

    adamw = {"lr": cfg.optim.lr, "betas": tuple(cfg.optim.betas), "eps": cfg.optim.eps}
    if cfg.run.engine == "torch":
        optimizer = torch.optim.AdamW(groups, **adamw)
        autocast = compute_dtype if compute_dtype != torch.float32 else None
        engine = TorchEngine(module, optimizer, schedule(optimizer), cfg.optim.grad_accum, cfg.optim.grad_clip,
                             autocast)
        engine.trainable_only = cfg.lora.enabled
        return engine
    import deepspeed

    ds_config = deepspeed_config(cfg)
    # torch.optim.AdamW needs no JIT-built op; on GPU a user JSON "optimizer" block (e.g. FusedAdam)
    # replaces it, and then DeepSpeed builds the optimizer from these same parameter groups.
    client = None if "optimizer" in ds_config else torch.optim.AdamW(groups, **adamw)
    engine, _, _, _ = deepspeed.initialize(
        model=module, optimizer=client, model_parameters=groups if client is None else None,
        lr_scheduler=schedule, config=ds_config,
    )
    wrapped = DeepSpeedEngine(engine)
    wrapped.trainable_only = cfg.lora.enabled
    return wrapped


def deepspeed_config(cfg: TrainConfig) -> dict:
    """The DeepSpeed JSON from the one config; a user JSON (`run.deepspeed_config`) is merged over it.

    The optimizer and LR schedule are built by the trainer (torch AdamW, warmup + cosine) and passed
    to `deepspeed.initialize`; a user JSON with an `optimizer` block (e.g. FusedAdam on GPU) replaces
    the client AdamW. Micro-batch size and accumulation drive the trainer's loss normalisation, so a
    user JSON may not contradict them.
    """
    ds = {
        "train_micro_batch_size_per_gpu": cfg.optim.micro_batch_size,
        "gradient_accumulation_steps": cfg.optim.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16": {"enabled": cfg.run.precision == "bf16"},
        "zero_optimization": {"stage": cfg.run.zero_stage, "overlap_comm": True, "contiguous_gradients": True},
        "steps_per_print": 10**9,  # the trainer logs; DeepSpeed's own step prints would duplicate it
        "wall_clock_breakdown": False,
    }
    if cfg.run.deepspeed_config:
        user = json.loads(Path(cfg.run.deepspeed_config).read_text())
        ds = _merge(ds, user)
        for key, ours in (("train_micro_batch_size_per_gpu", cfg.optim.micro_batch_size),
                          ("gradient_accumulation_steps", cfg.optim.grad_accum)):
            if ds.get(key) != ours:
                option = "optim.micro_batch_size" if key.startswith("train_micro") else "optim.grad_accum"
                raise ConfigError(
                    f"run.deepspeed_config sets {key}={ds.get(key)} but {option}={ours}; set {option} instead"
                )
        if "train_batch_size" in user:
            raise ConfigError("run.deepspeed_config: remove train_batch_size; it follows from the micro-batch, "
                              "accumulation and world size")
    return ds


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
