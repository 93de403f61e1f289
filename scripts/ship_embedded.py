"""Ship a trained embedded model: copy its ``weights.pt`` into the package and record the
file's SHA-256 and size in ``napari_sam/weights/__init__.py`` (checked on every load).

    python scripts/ship_embedded.py runs/embedded/weights.pt
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from pathlib import Path

import torch

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_sam" / "weights"
MAX_BYTES = 15 * 10**6


def main(argv=None) -> None:
    src = Path((argv or sys.argv[1:])[0])
    blob = torch.load(src, map_location="cpu", weights_only=True)  # a plain tensor file, or refuse
    if not {"model", "config", "meta"} <= set(blob):
        raise SystemExit(f"{src} is not a weights file of scripts/train_embedded.py")
    size = src.stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{src} is {size / 1e6:.1f} MB: the package takes at most {MAX_BYTES / 1e6:.0f} MB")
    dst = PACKAGE / "embedded.pt"
    shutil.copyfile(src, dst)
    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    init = PACKAGE / "__init__.py"
    text = init.read_text()
    text = re.sub(r'WEIGHTS_SHA256 = "[0-9a-f]*"', f'WEIGHTS_SHA256 = "{digest}"', text)
    text = re.sub(r"WEIGHTS_SIZE = [0-9_]+", f"WEIGHTS_SIZE = {size:_}", text)
    init.write_text(text)
    print(f"{dst}: {size:,} bytes, sha256 {digest}, iteration {blob['meta'].get('iteration')}")


if __name__ == "__main__":
    main()
