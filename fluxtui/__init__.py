"""fluxtui: train Flux.1 LoRAs from one project.toml, headless or in a terminal UI."""

__version__ = "0.1.0"
