"""Choosing the device: CUDA when present and asked for, else the CPU."""

from __future__ import annotations

import torch

from ..errors import invalid_value

__all__ = ["resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise invalid_value("device", name, "auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise invalid_value("device", name, "auto or cpu on this machine, which has no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise invalid_value("device", name, f"cuda:0 to cuda:{count - 1} on this machine, which has {count}")
    if device.type not in ("cpu", "cuda"):
        raise invalid_value("device", name, "auto, cpu, cuda or cuda:N")
    return device
