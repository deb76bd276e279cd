"""The built-in tasks, one module per task: each defines SPEC, a `task_registry.TaskSpec`.

`lm_eval_diffusion.task_registry.BUILTIN_MODULES` lists them; adding a task is a module like these, its
lm-eval YAML(s) under tasks/, its tests and a line in docs (docs/extending.md, "Adding a task").
"""
