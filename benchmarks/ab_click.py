"""One click -> 3 masks at 1024² on a cached embedding: median thread-CPU ms (SAM 1 vit_b, seeded
random weights, 1 thread, 30 clicks after 3). For comparing two versions of our code on one
machine: run it alternately with this checkout and with an older one on PYTHONPATH, e.g.

    git archive 35a08d7 src | (mkdir -p /tmp/old && tar -x -C /tmp/old)
    OMP_NUM_THREADS=1 python benchmarks/ab_click.py
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old/src python benchmarks/ab_click.py

Thread CPU time, not wall time, so a shared machine spoils it less.
"""
import statistics
import time
import numpy as np
import torch
torch.set_num_threads(1)
import napari_sam as ns
from napari_sam.models.sam1 import Sam1Config, build_sam1
try:
    from napari_sam.engine.malloc_tuning import tune_malloc; tune_malloc()
except ImportError:
    pass
torch.manual_seed(0)
ours = build_sam1(Sam1Config.preset("vit_b")).eval()
embed = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))
pred = ns.ImagePredictor(ours)
pred.set_embedding({"image_embed": embed}, (1024, 1024))
pts, lab = np.array([[410.0, 563.0]]), np.array([1])
ts = []
with torch.inference_mode():
    for i in range(33):
        t0 = time.thread_time(); pred.predict(points=pts, labels=lab); dt = time.thread_time() - t0
        if i >= 3: ts.append(dt)
print(ns.__file__, "median_ms", round(statistics.median(ts) * 1e3, 2), "min_ms", round(min(ts) * 1e3, 2), flush=True)
