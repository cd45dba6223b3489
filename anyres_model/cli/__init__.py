"""The model's commands: `anyres-train` (train.py), `anyres-eval` (evaluate.py), `anyres-render` (render.py).

Each wires a library module's settings to flags (`anyres_data.cli.flags`) and reports user errors
through `anyres_data.cli.errors`; the libraries import nothing from here.
"""
