"""Run logging behind one small interface: ``write(metrics, step)``.

Evaluation records go to ``metrics.jsonl`` (one JSON object per line); every scalar goes to
TensorBoard under namespaced tags (``eval/…``, ``levelN/…``, ``charts/…``) against the monotonic
env-step counter.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class RunLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.run_dir = run_dir
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)
        self.tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, metrics: dict[str, Any], step: int, record: bool = False) -> None:
        """Scalars to TensorBoard at ``step``; with ``record`` also a line of metrics.jsonl."""
        clean = {k: _plain(v) for k, v in metrics.items()}
        if self.tb is not None:
            for key, value in clean.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.tb.add_scalar(key, value, step)
        if record:
            self.jsonl.write(json.dumps(clean) + "\n")

    def gif(self, tag: str, frames: list, step: int, fps: float = 20.0) -> None:
        """An animated GIF (Pillow images) in TensorBoard's images tab."""
        if self.tb is None or not frames:
            return
        import io

        from tensorboardX.proto.summary_pb2 import Summary
        buffer = io.BytesIO()
        frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                       duration=int(1000 / fps), loop=0)
        image = Summary.Image(height=frames[0].height, width=frames[0].width, colorspace=3,
                              encoded_image_string=buffer.getvalue())
        self.tb.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]),
                                        step)

    def text(self, tag: str, body: str) -> None:
        if self.tb is not None:
            self.tb.add_text(tag, body, 0)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars to Python numbers; NaN to None (valid JSON)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
