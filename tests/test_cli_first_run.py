"""A first run of the command line without friction (issue #16): ``napari-sam models`` lists,
the allocator tuning is the command's own opt-in, loaded models are owned and bounded."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

from napari_sam import cli
from napari_sam.jobs import ModelCache, ModelSpec, Runner, write_model_config


def test_models_without_an_action_lists(capsys):
    assert cli.main(["models", "list"]) == 0
    listed = capsys.readouterr().out
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert out == listed and "embedded" in out and "sam2.1_hiera_tiny" in out


def _tuned_after(argv, env_extra=None):
    import os

    code = ("import napari_sam.engine.malloc_tuning as m; from napari_sam import cli; before = m._applied; "
            f"cli.main({argv!r}); print(before, m._applied)")
    env = {**os.environ, **(env_extra or {})}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[-2:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_command_line_opts_in_to_allocator_tuning():
    assert _tuned_after(["models", "list"]) == ["None", "True"]  # nothing before the command, on at its start
    assert _tuned_after(["models", "list"], {"NAPARI_SAM_MALLOC_TUNING": "0"}) == ["None", "False"]


def test_help_says_so(capsys):
    with pytest.raises(SystemExit):
        cli.main(["track", "--help"])
    assert "NAPARI_SAM_MALLOC_TUNING=0" in capsys.readouterr().out


@pytest.fixture(scope="module")
def two_specs(tmp_path_factory):
    from conftest import perturb_

    from napari_sam.models.sam2 import build_sam2, reduced_config

    d = tmp_path_factory.mktemp("specs")
    cfg = reduced_config("2.1", image_size=128)
    write_model_config(d / "small.json", "sam2", cfg)
    specs = []
    for seed in (1, 2):
        torch.manual_seed(0)
        torch.save({"model": perturb_(build_sam2(cfg), seed=seed).state_dict()}, d / f"w{seed}.pt")
        specs.append(ModelSpec("custom", str(d / f"w{seed}.pt"), str(d / "small.json"), "cpu"))
    return specs


def test_model_cache_keeps_one_model_by_spec(two_specs):
    a, b = two_specs
    cache = ModelCache()
    first = cache.get(a)
    assert cache.get(ModelSpec(*[getattr(a, f) for f in ("name", "checkpoint", "config", "device")])) is first
    second = cache.get(b)
    assert second is not first and len(cache) == 1 and b in cache and a not in cache
    assert cache.get(a) is not first  # evicted: loaded again
    two = ModelCache(size=2)
    m_a, m_b = two.get(a), two.get(b)
    assert two.get(a) is m_a and two.get(b) is m_b and len(two) == 2
    with pytest.raises(ValueError, match="at least one model"):
        ModelCache(size=0)


def test_model_cache_loads_a_spec_once_for_many_threads(two_specs):
    cache, got = ModelCache(), []
    threads = [threading.Thread(target=lambda: got.append(cache.get(two_specs[0]))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(m is got[0] for m in got)


def _unit(x, models=None):
    return x, models


def test_a_runner_hands_its_own_cache_to_local_units():
    cache = ModelCache()
    runner = Runner(workers=2, models=cache)
    results = list(runner.map(_unit, [(i,) for i in range(5)]))
    assert [x for x, _ in results] == [0, 1, 2, 3, 4] and all(m is cache for _, m in results)
    assert Runner().models is not Runner().models  # nothing shared between runs
