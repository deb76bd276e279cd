"""Toy-scale stand-ins for the real inputs: synthetic task data, tiny LLaDA-/Dream-like models and
their tokenizers, and the staged demo. Nothing here is needed to train or evaluate a real checkpoint;
the trainer, the analysis commands, the tests and the benchmarks use it only for offline CPU runs.
"""
