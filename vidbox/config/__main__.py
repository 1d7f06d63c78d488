"""``python -m vidbox.config`` prints vidbox.toml.example."""

from vidbox.config.example import render_example

print(render_example(), end="")
