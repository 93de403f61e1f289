"""The generator choice of the training data: "synthetic" (default, the shipped recipe's data,
unchanged), "realistic" and "mix"."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from napari_sam.training import data

SIZE = 128
# Digests of the default ("synthetic") examples, made by the data module before the
# generator choice existed: the default data must stay bit-for-bit the same.
SYNTHETIC_LABELS_SHA = {7: "96d61b0f228dbb61", 12: "3948aa9ec6b4d1ea"}


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


def test_default_is_the_synthetic_data_unchanged():
    for seed, sha in SYNTHETIC_LABELS_SHA.items():
        ex = data.image_example(seed, SIZE)
        assert _digest(ex.labels) == sha
        same = data.image_example(seed, SIZE, generator="synthetic")
        assert torch.equal(ex.images, same.images) and torch.equal(ex.labels, same.labels)


def test_realistic_examples_are_seeded_and_shaped():
    a, b = data.image_example(3, SIZE, "realistic"), data.image_example(3, SIZE, "realistic")
    assert a.images.shape == (1, 3, SIZE, SIZE) and a.labels.shape == (1, SIZE, SIZE)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.source.startswith("real_")
    assert not torch.equal(a.images, data.image_example(3, SIZE).images)
    clip = data.clip_example(4, 5, SIZE, generator="realistic")
    assert clip.images.shape == (5, 3, SIZE, SIZE) and clip.labels.shape == (5, SIZE, SIZE)
    assert clip.source in ("timelapse", "zstack") and clip.num_frames >= 5


def test_realistic_zstack_clips_hold_objects_that_end():
    """Clips of realistic z-stacks teach "absent": objects of the first frame gone by the last."""
    ended = 0
    for seed in range(12):
        clip = data.clip_example(seed, 6, SIZE, p_timelapse=0.0, generator="realistic")
        assert clip.source == "zstack"
        first, last = set(np.unique(clip.labels[0]).tolist()) - {0}, set(np.unique(clip.labels[-1]).tolist())
        ended += len(first - last)
    assert ended >= 6


def test_mix_is_half_each_and_keeps_the_synthetic_examples():
    picks = [data.pick_generator(s, "mix") for s in range(40)]
    assert 12 <= picks.count("realistic") <= 28
    for s in range(6):
        ex = data.image_example(s, SIZE, "mix")
        ref = data.image_example(s, SIZE, picks[s])
        assert torch.equal(ex.images, ref.images) and torch.equal(ex.labels, ref.labels)
        assert ex.source.startswith("real_") == (picks[s] == "realistic")


def test_unknown_generator_is_refused():
    with pytest.raises(ValueError, match="'real'.*synthetic, realistic, mix"):
        data.image_example(0, SIZE, generator="real")
    with pytest.raises(ValueError, match="'real'"):
        data.clip_example(0, 3, SIZE, generator="real")


def test_realistic_training_seeds_stay_clear_of_held_out():
    from napari_sam.training.loop import TRAIN_SEED_BASE

    for it in range(300):
        base = TRAIN_SEED_BASE + 10 * it
        for g in ("realistic", "mix"):
            seeds = [data.generator_seeds(base + k, clip=False, generator=g) for k in range(4)]
            seeds.append(data.generator_seeds(base + 9, clip=True, generator=g))
            assert min(seeds) >= 1000
