"""The test-only torchvision stand-in (tests/_compat) against the definition of NMS and, where
a real torchvision is installed, against torchvision itself."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

COMPAT = Path(__file__).parent / "_compat" / "torchvision"


def _stand_in():
    """The stand-in package under its own name, whether or not a real torchvision is loaded."""
    if "compat_tv" not in sys.modules:
        spec = importlib.util.spec_from_file_location("compat_tv", COMPAT / "__init__.py",
                                                      submodule_search_locations=[str(COMPAT)])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["compat_tv"] = mod
        spec.loader.exec_module(mod)
    return importlib.import_module("compat_tv.ops.boxes"), importlib.import_module("compat_tv.transforms")


boxes_mod, transforms_mod = _stand_in()


def _brute_nms(boxes, scores, thr):
    """NMS by its definition: a box is kept when no higher-ranked kept box overlaps it by IoU > thr."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept = []
    for i in order:
        ok = True
        for j in kept:
            x0, y0 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            x1, y1 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
            a_i = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            a_j = (boxes[j][2] - boxes[j][0]) * (boxes[j][3] - boxes[j][1])
            if inter / (a_i + a_j - inter) > thr:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept


def _boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 100, (n, 2), generator=g)
    wh = torch.randint(1, 40, (n, 2), generator=g)
    return torch.cat([xy, xy + wh], 1).float()


@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_stand_in_nms_is_greedy_nms(thr):
    boxes = _boxes(120, 4)
    scores = torch.rand(120, generator=torch.Generator().manual_seed(5))
    keep = boxes_mod.nms(boxes, scores, thr).tolist()
    assert keep == _brute_nms(boxes.tolist(), scores.tolist(), thr)
    assert 10 < len(keep) < 120
    tied = torch.tensor([1.0, 0.5])[torch.arange(120) % 2]
    assert boxes_mod.nms(boxes, tied, thr).tolist() == _brute_nms(boxes.tolist(), tied.tolist(), thr)


def test_stand_in_batched_nms_keeps_categories_apart():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert boxes_mod.batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5).tolist() == [0, 2]
    assert boxes_mod.batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [0]


def _real_torchvision():
    if "torchvision" in sys.modules and getattr(sys.modules["torchvision"], "IS_STAND_IN", False):
        pytest.skip("no real torchvision here (the stand-in is in use)")
    return pytest.importorskip("torchvision")


def test_stand_in_equals_real_torchvision():
    tv = _real_torchvision()
    from torchvision.transforms import functional as tvf

    boxes = _boxes(300, 1)
    for scores, thr in itertools.product([torch.rand(300, generator=torch.Generator().manual_seed(2))], [0.3, 0.9]):
        assert torch.equal(boxes_mod.nms(boxes, scores, thr), tv.ops.nms(boxes, scores, thr))
        idx = torch.arange(300) % 4
        assert torch.equal(boxes_mod.batched_nms(boxes, scores, idx, thr), tv.ops.batched_nms(boxes, scores, idx, thr))
    img = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    ours = transforms_mod.functional
    assert np.array_equal(np.asarray(ours.resize(ours.to_pil_image(img), [64, 40])),
                          np.asarray(tvf.resize(tvf.to_pil_image(img), [64, 40])))
    x = transforms_mod.ToTensor()(img)
    assert torch.equal(x, tv.transforms.ToTensor()(img))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ours_t = torch.nn.Sequential(transforms_mod.Resize((64, 64)), transforms_mod.Normalize(mean, std))
    ref_t = torch.nn.Sequential(tv.transforms.Resize((64, 64)), tv.transforms.Normalize(mean, std))
    assert torch.allclose(torch.jit.script(ours_t)(x), ref_t(x), atol=1e-6)
