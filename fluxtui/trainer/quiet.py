"""Keep transformers' noise out of the trainer log: per-model progress bars ("Loading
weights", "Writing model shards") and import-time notices that say nothing about training."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def no_transformers_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def only_transformers_errors() -> Iterator[None]:
    """FluxPipeline's import pulls in image processors that warn when torchvision is absent;
    validation never uses them."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
