"""Segment everything with ours only (SAM 2.1 tiny random weights, official parameters, 1 thread):
process CPU seconds of one run on a SIZE² image after a warm-up. For comparing two versions of
our code on one machine (the official side is in bench_automatic.py), as benchmarks/ab_click.py:

    OMP_NUM_THREADS=1 python benchmarks/ab_automatic.py 512
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/old/src python benchmarks/ab_automatic.py 512
"""
import sys
import time
import numpy as np
import torch
torch.set_num_threads(1)
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import napari_sam
from conftest import perturb_
from sam2.build_sam import build_sam2 as official_build
from napari_sam.data import synthetic
try:
    from napari_sam.engine.auto.segmenter import AutomaticParams, AutomaticSegmenter
    from napari_sam.engine.image.preprocess import to_uint8_rgb
    from napari_sam.engine.malloc_tuning import tune_malloc
    tune_malloc()
except ImportError:
    from napari_sam.engine.automatic import AutomaticParams, AutomaticSegmenter
    from napari_sam.engine.preprocess import to_uint8_rgb
from napari_sam.models.sam2 import SAM2_CONFIGS, build_sam2
size = int(sys.argv[1])
torch.manual_seed(0)
ref = official_build("configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu"); perturb_(ref, seed=0)
ours = build_sam2(SAM2_CONFIGS["sam2.1_hiera_tiny"]).eval(); ours.load_state_dict(ref.state_dict(), strict=True)
image = to_uint8_rgb(synthetic.nuclei_2d(shape=(size, size), n_objects=120, seed=0).image)
seg = AutomaticSegmenter(ours, AutomaticParams.official("sam2"))
with torch.inference_mode():
    seg.generate_records(np.ascontiguousarray(image[:256, :256]), postprocess=False)
    c0 = time.process_time(); w0 = time.perf_counter()
    n = len(seg.generate_records(image, postprocess=False))
    print(napari_sam.__file__, "cpu", round(time.process_time() - c0, 2), "wall", round(time.perf_counter() - w0, 2), "n", n, flush=True)
