"""The dtypes the attention ops of a forward pass compute in (TorchDispatchMode)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ATTENTION_OPS = ("matmul", "softmax", "linalg_vector_norm")
# the same ops under their decomposed names (which level the dispatcher shows varies)
CANONICAL = {"bmm": "matmul", "_softmax": "softmax"}


class DtypeLog(TorchDispatchMode):
    """Records the output dtype of every attention op that runs."""

    def __init__(self) -> None:
        super().__init__()
        self.dtypes: dict[str, set[torch.dtype]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        name = CANONICAL.get(name, name)
        if name in ATTENTION_OPS and isinstance(out, torch.Tensor):
            self.dtypes.setdefault(name, set()).add(out.dtype)
        return out


def attention_dtypes(model: torch.nn.Module, *inputs: torch.Tensor) -> dict[str, set[torch.dtype]]:
    """Attention op -> the dtypes it produced in one forward under CPU bf16 autocast."""
    log = DtypeLog()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16), log:
        model(*inputs)
    return log.dtypes
