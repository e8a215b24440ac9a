"""Programs the lab runs inside its namespaces, each a module run as
``python -m netlmm_lab.children.<name>`` with the interpreter of the lab itself (so ruff and
mypy check them like the rest)."""
