"""Re-store a shipped float32 checkpoint with its parameters in float16 (half the bytes), nothing else changed.

    python tools/store_float16.py mnist mnist_cond

For checkpoints made before the course stored weights in float16. Run ``bench/float16_weights.py`` on them
first: store them in float16 only where the samples measure the same. The weights are the same ones rounded,
exactly what ``train --publish`` now writes for a preset with ``float16=True``; the JSON keeps how the
checkpoint was made and gains a ``stored_float16`` note naming this tool and the bench. A checkpoint already
in float16 is left alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diffusion_lab.pretrained import load_pretrained, read_manifest, save_pretrained  # noqa: E402

NOT_EXTRA = ("name", "kind", "config", "schedule", "made_by")
MANIFEST_ONLY = ("weights", "config", "sha256", "bytes")


def store_float16(name: str) -> bool:
    """Rewrite checkpoint ``name`` with float16 parameters; False if they already were float16."""
    if name not in read_manifest():
        raise SystemExit(f"no checkpoint called {name!r} in data/checkpoints; see data/checkpoints/manifest.json")
    loaded = load_pretrained(name, device="cpu")
    from safetensors import safe_open

    path = Path(__file__).resolve().parents[1] / "data" / "checkpoints" / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        if all(f.get_slice(k).get_dtype() != "F32" for k in f.keys() if k in dict(loaded.model.named_parameters())):
            return False
    info = loaded.info
    # how it was made, as the manifest says (its entry is the one notes were added to after training)
    made_by = {k: v for k, v in read_manifest()[name].items() if k not in MANIFEST_ONLY}
    made_by = {**made_by, "stored_float16": (
        f"parameters rounded to float16 on {dt.date.today().isoformat()} by tools/store_float16.py, after "
        f"bench/float16_weights.py measured the samples the same (bench/results/float16_weights.md)")}
    save_pretrained(name, loaded.model, loaded.model.config, kind=info["kind"], schedule=loaded.schedule,
                    made_by=made_by, extra={k: v for k, v in info.items() if k not in NOT_EXTRA}, float16=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="checkpoint names, e.g. mnist mnist_cond")
    for name in parser.parse_args().names:
        with torch.no_grad():
            print(f"{name}: {'stored in float16' if store_float16(name) else 'already float16, left alone'}")


if __name__ == "__main__":
    main()
