"""Which accelerator training runs on."""

from __future__ import annotations

import functools
import os


@functools.lru_cache(maxsize=1)
def device_description() -> str:
    """The accelerator training runs on (cached: probing for GPUs takes about a second)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            details = tf.config.experimental.get_device_details(gpu)
            names.append(details.get("device_name", gpu.name))
        return "GPU: " + ", ".join(names)
    return f"CPU ({os.cpu_count()} cores)"
