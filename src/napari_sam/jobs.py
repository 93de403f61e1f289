"""Work units of the command line, and running them through dask.

A job names its model and its input by value (:class:`ModelSpec`, :class:`InputSpec`), so a
unit can run in a thread, in another process or on a ``dask.distributed`` worker, and opens
the input lazily. Loaded models live in a :class:`ModelCache` (bounded: one model by
default, keyed by the spec — name, checkpoint, config, device) owned by whoever runs the
units: the command's :class:`Runner` for local threads, each ``dask.distributed`` worker for a
cluster (a worker plugin gives it its own). Units: :func:`embed_frames` (fills an
EmbeddingStore for some frames: every frame's features are computed once and written to the
store) and :func:`segment_frames` (segment everything on some frames, returning their labels
for the caller to write in order). What a command reads and writes is checked before any
unit runs: :func:`outputs_in` names one output per input (refusing two of the same name) and
:func:`refuse_overlaps` keeps every output off the inputs and off each other.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ModelSpec:
    """A model by name (registry), optionally with a checkpoint file, or an architecture file
    (``config``: JSON ``{"family": "sam1"|"sam2", "config": {...config fields}}``) plus its
    checkpoint — e.g. a fine-tuned or reduced model that is not in the registry."""

    name: str = "embedded"
    checkpoint: str | None = None
    config: str | None = None
    device: str = "auto"

    def load(self):
        """A newly loaded model (a :class:`ModelCache` keeps loaded ones)."""
        check_device(self.device)
        if self.config is None:
            from .registry import load_model

            return load_model(self.name, checkpoint=self.checkpoint, device=self.device)
        from . import checkpoints
        from .registry import resolve_device

        if self.checkpoint is None:
            raise ValueError("--model-config needs --checkpoint (the weights of that architecture)")
        model = build_from_config(self.config)
        ckpt = checkpoints.read_checkpoint(self.checkpoint)
        checkpoints.load_into(model, ckpt.state_dict, model.name, str(self.checkpoint))
        model.ais_decoder_state = _config_decoder(model, ckpt.decoder_state, str(self.checkpoint))
        return model.to(resolve_device(self.device))


def _config_decoder(model, decoder, source: str):
    """A --model-config checkpoint's micro-sam decoder, checked against the model's encoder (as
    :func:`napari_sam.registry.load_model` does), or None when the file has none."""
    from . import checkpoints

    if decoder is None:
        return None
    if getattr(model, "family", None) != "sam1":
        raise checkpoints.CheckpointError(
            f"{source}: holds micro-sam's instance-segmentation decoder_state, which runs on SAM 1 "
            f"embeddings; the --model-config model is {getattr(model, 'family', '?')!r}")
    return checkpoints.check_decoder(decoder, model.config.out_chans, model.name, source)


class ModelCache:
    """Loaded models by :class:`ModelSpec`, at most ``size`` of them: the least recently used
    goes when another is loaded. Thread-safe; a spec is loaded once however many threads ask."""

    def __init__(self, size: int = 1):
        if int(size) < 1:
            raise ValueError(f"a model cache holds at least one model, got size {size}")
        self.size = int(size)
        self._models: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: ModelSpec):
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            while len(self._models) >= self.size:  # free the old one before loading the next
                self._models.popitem(last=False)
            model = spec.load()
            self._models[spec] = model
            return model

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, spec) -> bool:
        return spec in self._models

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


def check_device(name: str):
    """The torch device for ``--device name``; an absent or unknown device is bad input (ValueError)."""
    from .registry import resolve_device

    try:
        return resolve_device(name)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"--device {name}: {err}") from None


def build_from_config(path):
    """The (randomly initialised, eval) model described by an architecture JSON file."""
    try:
        spec = json.loads(Path(path).read_text())
        family, fields = spec["family"], dict(spec["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a model-config file ({type(err).__name__}: {err})") from None
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    if family == "sam1":
        from .models.sam1 import Sam1Config, build_sam1

        model = build_sam1(Sam1Config(**fields))
        model.name = spec.get("name", "custom_sam1")
    elif family == "sam2":
        from .models.sam2 import Sam2Config, build_sam2

        model = build_sam2(Sam2Config(**fields))
        model.name = fields.get("name", "custom_sam2")
    else:
        raise ValueError(f"{path}: family must be 'sam1' or 'sam2', got {family!r}")
    return model.eval()


def write_model_config(path, family: str, config, name: str | None = None) -> None:
    """Save a config dataclass as a model-config file (the inverse of :func:`build_from_config`)."""
    import dataclasses

    fields = dataclasses.asdict(config)
    Path(path).write_text(json.dumps({"family": family, "name": name or fields.get("name"), "config": fields}, indent=1))


@dataclass(frozen=True)
class InputSpec:
    """An image file and how to read frames from it (see :meth:`napari_sam.io.ImageSource.stack`)."""

    path: str
    axes: str | None = None
    axis: str | None = None
    channel: str | None = None
    index: tuple = field(default_factory=tuple)  # ((letter, position), ...)

    def open(self):
        """``(frames, stack_axis)``: lazy (N, H, W[, 3]) or (H, W[, 3]) frames."""
        from .io import open_image

        return open_image(self.path, self.axes).stack(self.axis, self.channel, dict(self.index))


def frame_count(frames, stack_axis) -> int:
    return 1 if stack_axis is None else int(frames.shape[0])


def frame_at(frames, stack_axis, t: int) -> np.ndarray:
    from .engine.frames import read

    return read(frames if stack_axis is None else frames[t])


def _model(spec: ModelSpec, models: ModelCache | None):
    return spec.load() if models is None else models.get(spec)


def embed_frames(model_spec: ModelSpec, source: InputSpec, store_path: str, frames_todo, contrast_limits,
                 models: ModelCache | None = None) -> int:
    """Compute and store the features of ``frames_todo``; returns how many were new.
    ``models``: where the model is looked up (None: loaded for this call)."""
    from .engine.store.embedding_store import EmbeddingStore

    frames, _ = source.open()
    store = EmbeddingStore(store_path, _model(model_spec, models), frames, contrast_limits=contrast_limits)
    new = 0
    for t in frames_todo:
        if not store.has(int(t)):
            store.get(int(t))
            new += 1
    return new


def segment_frames(model_spec: ModelSpec, source: InputSpec, frames_todo, params: dict, contrast_limits,
                   store_path: str | None = None, models: ModelCache | None = None) -> list[np.ndarray]:
    """Segment everything on each of ``frames_todo``; their (H, W) int32 labels, in order."""
    from .app.automatic import make_segmenter

    model = _model(model_spec, models)
    frames, axis = source.open()
    store = None
    if store_path is not None:
        from .engine.store.embedding_store import EmbeddingStore

        store = EmbeddingStore(store_path, model, frames, contrast_limits=contrast_limits)
    seg = make_segmenter(model, **params)
    out = []
    for t in frames_todo:
        feats = None if store is None else store.get(int(t))
        out.append(seg.generate(frame_at(frames, axis, int(t)), contrast_limits=contrast_limits, features=feats))
    return out


def blocks(n: int, size: int) -> list[list[int]]:
    return [list(range(s, min(s + size, n))) for s in range(0, n, size)]


class Runner:
    """Runs units through dask: local threads (``workers`` of them) by default, or the
    ``dask.distributed`` scheduler at ``scheduler``. :meth:`map` yields results in
    submission order, keeping at most ``window`` units in flight (bounded memory). Each unit
    gets ``models=``: this runner's :attr:`models` in local threads, the worker's own cache on
    a cluster."""

    def __init__(self, scheduler: str | None = None, workers: int = 1, models: ModelCache | None = None):
        self.scheduler = scheduler
        self.workers = max(1, int(workers))
        self.models = models if models is not None else ModelCache()
        self._client = None
        if scheduler:
            try:
                from distributed import Client
            except ImportError:
                raise ValueError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
            try:
                self._client = Client(scheduler, timeout=10, set_as_default=False)
            except OSError as err:
                raise ValueError(f"cannot reach the dask scheduler at {scheduler} ({err})") from None
            self.workers = max(1, sum(self._client.nthreads().values()))

    def map(self, fn, arg_lists, window: int | None = None):
        window = window or 2 * self.workers
        if self._client is not None:
            pending = []
            for args in arg_lists:
                pending.append(self._client.submit(_on_worker, fn, *args, pure=False))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for fut in pending:
                yield fut.result()
            return
        import dask

        arg_lists = list(arg_lists)
        for s in range(0, len(arg_lists), window):
            tasks = [dask.delayed(fn, pure=False)(*a, models=self.models) for a in arg_lists[s:s + window]]
            yield from dask.compute(*tasks, scheduler="threads", num_workers=self.workers)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


_ATTACH = threading.Lock()  # guards giving a worker its cache (the caches themselves live on the workers)


def _on_worker(fn, *args):
    """Run a unit on a ``dask.distributed`` worker with that worker's own :class:`ModelCache`
    (made on its first unit, freed with the worker)."""
    from distributed import get_worker

    worker = get_worker()
    with _ATTACH:
        models = getattr(worker, "napari_sam_models", None)
        if models is None:
            models = worker.napari_sam_models = ModelCache()
    return fn(*args, models=models)


# ---------------------------------------------------------------------------- what a command reads and writes
#: Image suffixes an output name drops (longest first): ``img.ome.tif`` -> ``img_labels.tif``.
IMAGE_SUFFIXES = (".ome.tiff", ".ome.zarr", ".ome.tif", ".tiff", ".zarr", ".tif", ".btf", ".tf8")


def image_stem(path) -> str:
    name = Path(str(path).rstrip("/\\")).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def outputs_in(folder, inputs, suffix: str) -> list[Path]:
    """One output per input in ``folder``, named ``<input stem><suffix>``; inputs that would
    give the same name (ignoring case) are refused, before any work."""
    from .io import InputError

    seen: dict[str, str] = {}
    outs = []
    for i in inputs:
        out = Path(folder) / (image_stem(i) + suffix)
        key = out.name.casefold()
        if key in seen:
            raise InputError(f"{seen[key]} and {i} would both write {out}; give them different names, or run each with -o")
        seen[key] = str(i)
        outs.append(out)
    return outs


def _real(path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def refuse_overlaps(reads, writes) -> None:
    """``reads`` / ``writes``: ``(what, path)`` pairs ("an input image", "the output"). A path written may not be, hold or lie
    inside a path read, nor another path written (InputError naming both)."""
    from .io import InputError

    writes = [(what, Path(p), _real(p)) for what, p in writes if p is not None]
    reads = [(what, Path(p), _real(p)) for what, p in reads if p is not None]
    for k, (what, p, rp) in enumerate(writes):
        for other, q, rq in reads:
            if rp == rq or (p.exists() and q.exists() and os.path.samefile(p, q)):
                raise InputError(f"{p}: is {other}; napari-sam never writes over its inputs")
            if rq.is_relative_to(rp):
                raise InputError(f"{p}: holds {other} ({q}); choose an output outside it")
            if rp.is_relative_to(rq):
                raise InputError(f"{p}: lies inside {other} ({q}); choose an output outside it")
        for other, q, rq in writes[k + 1:]:
            if rp == rq or rp.is_relative_to(rq) or rq.is_relative_to(rp):
                raise InputError(f"{p}: used twice, as {what} and as {other} ({q}); give each its own path")
