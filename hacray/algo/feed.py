"""Many updates' batches to the learner's device in one copy (batches.pack, then unpack there).

On CUDA the packed values go through a page-locked host buffer, kept between calls, and are
copied without blocking; the next call waits for that copy before it writes the buffer again.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from hacray.algo import batches
from hacray.types import Transitions


class DeviceFeed:
    def __init__(self, device: torch.device):
        self.device = device
        self._pinned: Optional[torch.Tensor] = None
        self._copied: Optional[torch.cuda.Event] = None  # the last copy out of _pinned

    def __call__(self, updates: Sequence[tuple[Transitions, ...]]
                 ) -> list[dict[str, torch.Tensor]]:
        """Per level, ``{field: (n, B, ...) tensor on the device}`` for n updates' batches."""
        layout = batches.layout_of(updates)
        flat, _ = batches.pack(updates, self._host_buffer(layout.size), layout)
        tensor = torch.as_tensor(flat)
        if self.device.type != "cpu":
            tensor = tensor.to(self.device, non_blocking=True)
            if self.device.type == "cuda":
                self._copied = torch.cuda.Event()
                self._copied.record()
        return batches.unpack(tensor, layout)

    def _host_buffer(self, size: int) -> Optional[np.ndarray]:
        """The page-locked buffer on CUDA (grown when too small), else None (pack allocates)."""
        if self.device.type != "cuda":
            return None
        if self._copied is not None:  # the last call's copy may still be reading it
            self._copied.synchronize()
        if self._pinned is None or self._pinned.numel() < size:
            self._pinned = torch.empty(size, dtype=torch.float32, pin_memory=True)
        return self._pinned.numpy()
