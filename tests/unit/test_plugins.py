"""Plug-in names (`<prefix>:<name>`): loaded through one entry-point group, never by importing the toy package."""

from __future__ import annotations

import ast
import importlib.metadata
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from dllm_jepa_train import plugins
from dllm_jepa_train.build import resolve_inputs
from dllm_jepa_train.config import ConfigError, load_config

PROJECT = Path(__file__).resolve().parents[2]
PACKAGE = PROJECT / "dllm_jepa_train"
TOY = "dllm_jepa_train.toy"


@pytest.fixture
def registry(monkeypatch):
    """An empty resolver registry whose entry points the test sets (`monkeypatch.setattr(plugins, ...)`)."""
    monkeypatch.setattr(plugins, "_resolvers", {})
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.setattr(plugins, "entry_points", lambda: [])


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved against its package)."""
    package = ".".join(path.relative_to(PROJECT).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import toy`
    return names


def test_no_production_module_imports_the_toy_package():
    production = [p for p in PACKAGE.rglob("*.py") if TOY.split(".")[1] not in p.relative_to(PACKAGE).parts[:1]]
    assert PACKAGE / "build.py" in production and PACKAGE / "analysis" / "collapse.py" in production
    offenders = {str(p.relative_to(PROJECT)): sorted(n for n in _imported_modules(p) if n == TOY or n.startswith(TOY + "."))
                 for p in production}
    assert {k: v for k, v in offenders.items() if v} == {}
    # The walk itself sees the forms a toy import can take.
    demo = _imported_modules(PACKAGE / "toy" / "demo.py")
    assert "dllm_jepa_train.toy.report" in demo


def test_a_plugin_name_without_a_resolver_fails_naming_the_group(registry):
    with pytest.raises(plugins.PluginError, match=r"no plug-in resolves toy: names.*dllm_jepa\.plugins"):
        plugins.resolve("toy:llada")
    with pytest.raises(ConfigError, match=r"model\.pretrained: .*entry-point group dllm_jepa\.plugins"):
        load_config(PACKAGE / "configs" / "tiny_jepa.yaml")


class FakeResolver:
    """A plug-in for `fake:` names that writes a text corpus and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def names(self, kind: str) -> tuple[str, ...]:
        return {"model": ("fake:model",), "data": ("fake:text",)}[kind]

    def data_source(self, name: str) -> str:
        return "text"

    def prepare_data(self, name, out_dir, data) -> None:
        (out_dir / "text").mkdir(parents=True)
        (out_dir / "text" / "train.txt").write_text("alpha beta\ngamma delta\n", encoding="utf-8")
        self.calls.append(("data", name, out_dir))

    def prepare_model(self, name, out_dir, corpus, tiny) -> None:
        self.calls.append(("model", name, out_dir, sorted(c for c in corpus if c), tiny.hidden_size))


def test_a_registered_resolver_validates_and_resolves_its_names(registry, monkeypatch, tmp_path):
    fake = FakeResolver()
    # An installed entry point's `load()` returns its callable; this one registers `fake`.
    entry = SimpleNamespace(name="fake", value="fake_plugin:register",
                            load=lambda: lambda: plugins.register_resolver("fake", fake))
    monkeypatch.setattr(plugins, "entry_points", lambda: [entry])
    overrides = ["--model.pretrained", "fake:model", "--data.source", "fake:text", "--tiny.hidden_size", "32",
                 "--tiny.num_heads", "2", "--run.output_dir", str(tmp_path / "run")]
    with pytest.raises(ConfigError, match=r"data\.source: 'fake:wiki' is not allowed; allowed values: fake:text"):
        load_config(None, [*overrides, "--data.source", "fake:wiki"])
    cfg = load_config(None, overrides)
    assert plugins.load_plugins() == []  # validation loaded it once; a second load calls nothing

    data, data_dir, pretrained = resolve_inputs(cfg, tmp_path / "run", rank=0)
    assert (data.source, data_dir, pretrained) == ("text", tmp_path / "run" / "data", str(tmp_path / "run" / "base"))
    assert data.data_dir == str(data_dir) and cfg.data.source == "fake:text"  # the config keeps the name
    # The tokenizer corpus: the training rows (source text: the documents), then the data dir's text corpus.
    corpus = ["alpha beta", "alpha beta", "gamma delta", "gamma delta"]
    assert fake.calls == [("data", "fake:text", tmp_path / "run" / "data"),
                          ("model", "fake:model", tmp_path / "run" / "base", corpus, 32)]


def test_pyproject_declares_the_toy_plugin_and_its_entry_point_registers_toy_names(registry, monkeypatch):
    declared = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["entry-points"][plugins.GROUP]
    assert declared == {"toy": "dllm_jepa_train.toy:register"}
    entry = importlib.metadata.EntryPoint("toy", declared["toy"], plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda: [entry])
    assert plugins.load_plugins() == ["toy"]
    assert plugins.resolve("toy:gsm8k").data_source("toy:gsm8k") == "gsm8k"
    assert "toy:dream" in plugins.resolve("toy:dream").names("model")
    with pytest.raises(plugins.PluginError, match="already registered"):
        plugins.register_resolver("toy", FakeResolver())


def test_only_prefixed_names_are_plugin_names():
    assert plugins.plugin_prefix("toy:gsm8k") == "toy"
    for ordinary in ("GSAI-ML/LLaDA-8B-Base", "/ckpt/final", "runs/x:y", "./toy:x", "gsm8k", "c:/models/x"):
        assert plugins.plugin_prefix(ordinary) is None, ordinary
