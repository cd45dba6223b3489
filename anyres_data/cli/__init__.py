"""The command lines, on top of the libraries: typer commands, flags made from settings, tables, errors.

`anyres_data.cli.app` is `anyres-data`; `anyres_model.cli` holds the model's commands. Nothing below
this layer imports it.
"""
