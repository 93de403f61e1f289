"""Scores from the field's metric library (traccuracy), through benchmarks/lineage_accuracy.py.

The expected figures follow from the CTC definitions (traccuracy's default AOGM weights:
missing node 10, missing edge 1.5, extra edge 1): for the ground truth below, AOGM_0 (the
cost of building it from nothing) is 10 x nodes + 1.5 x edges, and TRA = 1 - AOGM / AOGM_0.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_sam.data import synthetic

spec = importlib.util.spec_from_file_location(
    "lineage_accuracy", Path(__file__).resolve().parents[2] / "benchmarks" / "lineage_accuracy.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

PARENTS = {2: 1, 3: 1}
NODES, EDGES = 3 + 5 + 5 + 8, (2 + 4 + 4 + 7) + 2
AOGM0 = 10 * NODES + 1.5 * EDGES  # 238.5


def truth(T=8) -> np.ndarray:
    """1 divides into 2 and 3 on frame 3; 4 is there all along."""
    lab = np.zeros((T, 32, 40), np.int32)
    lab[0:3, 2:10, 2:10] = 1
    lab[3:, 2:10, 0:8] = 2
    lab[3:, 2:10, 14:22] = 3
    lab[:, 20:28, 20:28] = 4
    return lab


def test_an_exact_copy_scores_one():
    r = bench.score(truth(), PARENTS, truth(), PARENTS)
    assert (r["TRA"], r["DET"], r["division_f1"]) == (1.0, 1.0, 1.0)
    assert (r["divisions_true"], r["divisions_found"], r["divisions_right"]) == (1, 1, 1)


def test_a_missing_division_costs_its_two_edges():
    r = bench.score(truth(), PARENTS, truth(), {})
    assert r["TRA"] == pytest.approx(1 - 2 * 1.5 / AOGM0)  # 0.98742
    assert r["DET"] == 1.0 and r["division_f1"] == 0.0 and r["divisions_found"] == 0


def test_swapped_ids_cost_two_missing_and_two_extra_edges():
    pred = truth()
    a, b = pred[5:] == 2, pred[5:] == 4  # 2 and 4 swap ids from frame 5 on
    pred[5:][a], pred[5:][b] = 4, 2
    r = bench.score(truth(), PARENTS, pred, PARENTS)
    assert r["TRA"] == pytest.approx(1 - (2 * 1.5 + 2 * 1.0) / AOGM0)  # 0.97904
    assert r["DET"] == 1.0


def test_a_missed_cell_lowers_det_and_tra():
    pred = np.where(truth() == 4, 0, truth())
    r = bench.score(truth(), PARENTS, pred, PARENTS)
    assert r["DET"] == pytest.approx(1 - 8 * 10 / (10 * NODES))
    assert r["TRA"] == pytest.approx(1 - (8 * 10 + 7 * 1.5) / AOGM0)


def test_a_gap_costs_the_missed_frames_and_a_link_over_it():
    """The prediction misses cell 4 on frames 3-4 and finds it again with the same id; as CTC
    that is two tracks with a parent link (a skip edge). Strict AOGM (the CTC's, no relaxed
    skips): 2 missing nodes, 3 missing edges, and the skip edge is an extra edge; a new id
    instead of the link has no extra edge."""
    pred = truth()
    pred[3:5][pred[3:5] == 4] = 0
    r = bench.score(truth(), PARENTS, pred, PARENTS)
    assert r["DET"] == pytest.approx(1 - 2 * 10 / (10 * NODES))
    assert r["TRA"] == pytest.approx(1 - (2 * 10 + 3 * 1.5 + 1.0) / AOGM0)  # 0.89308
    renamed = pred.copy()
    renamed[5:][renamed[5:] == 4] = 9
    assert bench.score(truth(), PARENTS, renamed, PARENTS)["TRA"] == pytest.approx(1 - (2 * 10 + 3 * 1.5) / AOGM0)


def test_pooled_scores_are_the_tiles_errors_summed():
    gt = bench.tile([(truth(), PARENTS), (truth(), PARENTS)])
    pred = bench.tile([(truth(), PARENTS), (truth(), {})])
    assert gt[0].shape == (8, 32, 82) and gt[1] == {2: 1, 3: 1, 6: 5, 7: 5}
    r = bench.score(*gt, *pred)
    assert r["TRA"] == pytest.approx(1 - 3.0 / (2 * AOGM0))
    assert (r["divisions_true"], r["divisions_right"]) == (2, 1) and r["division_f1"] == pytest.approx(2 / 3)


def test_the_generated_time_lapse_ground_truth_is_valid_ctc_and_scores_one():
    smp = synthetic.timelapse(n_frames=12, shape=(96, 96), n_objects=6, seed=5, division_time=(6, 12))
    assert sum(1 for m in smp.lineage.values() if m) >= 2  # it has divisions to score
    r = bench.score(smp.labels, smp.lineage, smp.labels, smp.lineage)
    assert (r["TRA"], r["DET"], r["division_f1"]) == (1.0, 1.0, 1.0)
    assert r["divisions_true"] >= 1
