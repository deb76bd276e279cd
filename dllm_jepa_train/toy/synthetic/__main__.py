"""Command line of the synthetic data: python -m dllm_jepa_train.toy.synthetic --out DIR [--seed 0] [--scale 1.0]."""

from dllm_jepa_train.toy.synthetic import main

main()
