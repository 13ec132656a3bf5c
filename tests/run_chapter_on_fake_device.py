"""Run a chapter's code, in quick mode, with every model and tensor it puts on "the device" checked by
``FakeDevice`` (tests/fake_device.py): ``python tests/run_chapter_on_fake_device.py chapters/04_training.py``.

The chapter runs as a plain script (its cells in order, in one namespace, from inside chapters/), with
``pick_device()`` answering ``cuda``. Used by tests/test_fake_device.py; also handy on its own.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jupytext
import matplotlib

matplotlib.use("Agg")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from fake_device import FakeDevice  # noqa: E402


def run(chapter: Path, device: str = "cuda") -> FakeDevice:
    os.environ["DIFFUSION_LAB_QUICK"] = "1"
    nb = jupytext.read(chapter)
    code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
    torch.cuda.is_available = lambda: device == "cuda"  # so pick_device() and device checks answer the fake
    torch.backends.mps.is_available = lambda: device == "mps"
    torch.cuda.get_device_capability = lambda d=None: (8, 0)
    torch.cuda.is_bf16_supported = lambda *args, **kwargs: True  # what torch.autocast("cuda") asks
    import diffusion_lab.pipelines.batching as batching

    batching.available_memory = lambda d: None
    cwd = Path.cwd()
    os.chdir(chapter.parent)
    try:
        with FakeDevice(device) as fake:
            exec(compile(code, str(chapter), "exec"), {"__name__": "__chapter__"})
    finally:
        os.chdir(cwd)
    return fake


if __name__ == "__main__":
    for path in sys.argv[1:]:
        start = time.perf_counter()
        fake = run(Path(path).resolve())
        print(f"{path}: ran on a fake {fake.device} in {time.perf_counter() - start:.0f} s, {fake.syncs} syncs")
