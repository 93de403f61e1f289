"""Make tests/golden/edgetam_reference.npz: the official EdgeTAM's outputs on seeded inputs.

Run once where the official reference (``.edgetam_ref``, see tests/models/test_edgetam_parity.py)
and timm (which needs torchvision; CI has neither) are installed:

    OMP_NUM_THREADS=1 .venv/bin/python tests/golden/make_edgetam_golden.py [image|video]

``video`` makes tests/golden/edgetam_video_reference.npz: the official video predictor on
:func:`scenario` (see the section "the video scenario" below; its helpers also drive the
live test tests/models/test_edgetam_video_parity.py).

How the inputs are made (so that the CI test rebuilds them without the reference):

* **Weights** — ``numpy_state`` of make_ais_golden.py (numpy ``default_rng``, no torch RNG:
  the same numbers on every platform and torch version) for the keys of our
  :class:`EdgeTamImageEncoder` (seed ``ENCODER_SEED``; they *are* the official
  ``image_encoder.*`` keys), of the mask decoder's ``conv_s0`` / ``conv_s1`` (``CONV_SEED``)
  and of our :class:`SpatialPerceiver` (``PERCEIVER_SEED``; the official
  ``spatial_perceiver.*`` keys). Loaded strict into the official modules. Only their SHA-256
  is stored (the trunk alone is ~20 MB of float32); the test checks the regenerated weights
  against it.
* **Image** — (1, 3, SIZE, SIZE) ``default_rng(IMAGE_SEED).standard_normal``, float32.
* **Memories** — ``N_OBJ`` objects' (64, MEM, MEM) memory and position maps,
  ``default_rng(MEMORY_SEED).standard_normal``, float32. The official ``forward_2d`` fails
  for 2 or more objects, so the reference is run one object at a time.

Stored (float32): ``forward_image``'s ``backbone_fpn`` levels (0 and 1 after conv_s0 /
conv_s1) and ``vision_features``, the perceiver's tokens and positions, and the SHA-256 of
every input.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "edgetam_reference.npz"
ENCODER_SEED, CONV_SEED, PERCEIVER_SEED, IMAGE_SEED, MEMORY_SEED = 21, 22, 23, 24, 25
SIZE, N_OBJ, MEM = 128, 3, 32


def _tests_on_path() -> None:
    tests = str(HERE.parent)
    if tests not in sys.path:
        sys.path.insert(0, tests)


def _numpy_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    _tests_on_path()
    from golden.make_ais_golden import numpy_state

    return numpy_state(module, seed)


class HighResConvs(torch.nn.Module):
    """The mask decoder's ``conv_s0`` / ``conv_s1`` (256 -> 32 / 64, 1x1) that ``forward_image``
    applies to FPN levels 0 / 1; the same key names as ``sam_mask_decoder.conv_s*``."""

    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.conv_s0 = torch.nn.Conv2d(dim, dim // 8, 1)
        self.conv_s1 = torch.nn.Conv2d(dim, dim // 4, 1)


@functools.lru_cache(maxsize=1)
def encoder_state() -> dict[str, torch.Tensor]:
    """Cached (~5 M numbers): read it, do not modify it in place."""
    from napari_sam.models.edgetam import EDGETAM_CONFIG, EdgeTamImageEncoder

    with torch.device("meta"):
        shapes = EdgeTamImageEncoder(EDGETAM_CONFIG)
    return _numpy_state(shapes, ENCODER_SEED)


def conv_state() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = HighResConvs()
    return _numpy_state(shapes, CONV_SEED)


def perceiver_state() -> dict[str, torch.Tensor]:
    from napari_sam.models.edgetam import EDGETAM_CONFIG, SpatialPerceiver

    with torch.device("meta"):
        shapes = SpatialPerceiver(EDGETAM_CONFIG)
    return _numpy_state(shapes, PERCEIVER_SEED)


def image() -> torch.Tensor:
    a = np.random.default_rng(IMAGE_SEED).standard_normal((1, 3, SIZE, SIZE))
    return torch.from_numpy(a.astype(np.float32))


def memories() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(MEMORY_SEED)
    mem = rng.standard_normal((N_OBJ, 64, MEM, MEM)).astype(np.float32)
    pos = rng.standard_normal((N_OBJ, 64, MEM, MEM)).astype(np.float32)
    return torch.from_numpy(mem), torch.from_numpy(pos)


def digest(tensors) -> str:
    """SHA-256 over names, shapes, dtypes and bytes: a dict in sorted key order, or a sequence."""
    h = hashlib.sha256()
    items = sorted(tensors.items()) if isinstance(tensors, dict) else enumerate(tensors)
    for name, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def input_digests() -> dict[str, str]:
    return {"sha_encoder": digest(encoder_state()), "sha_convs": digest(conv_state()),
            "sha_perceiver": digest(perceiver_state()), "sha_image": digest([image()]),
            "sha_memories": digest(memories())}


# ---------------------------------------------------------------- the video scenario
# (shared with tests/models/test_edgetam_video_parity.py, which runs it live)

VIDEO_GOLDEN = HERE / "edgetam_video_reference.npz"
VIDEO_SIZE = 256  # the smallest model input whose 16 x 16 memory grid fits the 16 x 16 latents
VT, VH, VW = 8, 48, 64  # frames of the scenario (small: the golden file stores their logits)
MODEL_SEED, FRAMES_SEED = 26, 27
VANISH = (4, 5)  # frames without object 3's disk
GOLDEN_SCORE_SHIFT = 0.0  # added to the object-score head's last bias of the golden weights
SHARPEN = 2.0  # memory cross-attention query / key scale of the test weights (a power of 2: exact)


def sharpen_memory_attention_(state: dict, factor: float = SHARPEN) -> dict:
    """Scale the memory cross attentions' query and key projections by ``factor`` (in place).

    Random weights attend almost uniformly to the thousands of memory tokens, which leaves the
    tracked output nearly independent of the memories (then a wrong memory would go unseen);
    sharper attention makes every object's memories change its logits by a few percent."""
    for key in state:
        if ".cross_attn_image.q_proj.weight" in key or ".cross_attn_image.k_proj.weight" in key:
            state[key] = state[key] * factor
    return state


def video_config():
    from napari_sam.models.edgetam import EDGETAM_CONFIG

    return EDGETAM_CONFIG.replace(image_size=VIDEO_SIZE)


@functools.lru_cache(maxsize=1)
def model_state(score_shift: float = GOLDEN_SCORE_SHIFT) -> dict[str, torch.Tensor]:
    """``numpy_state`` of the whole EdgeTAM (its keys are the official ones), seed ``MODEL_SEED``,
    made to track (see below). Cached (~14 M numbers): read it, do not modify it in place."""
    from napari_sam.models.edgetam import build_edgetam

    with torch.device("meta"):
        shapes = build_edgetam(video_config())
    state = _numpy_state(shapes, MODEL_SEED)
    # the random trunk's last two stages grow to std ~3e5 / ~5e6, which would drown the
    # memory in the frame features: the neck's lateral convs bring them back to ~1
    state["image_encoder.neck.convs.0.conv.weight"] *= 2.0**-22
    state["image_encoder.neck.convs.1.conv.weight"] *= 2.0**-18
    sharpen_memory_attention_(state)
    state["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += score_shift
    return state


def video_frames(num_frames: int = VT, h: int = VH, w: int = VW, seed: int = FRAMES_SEED,
                 vanish=VANISH) -> np.ndarray:
    """(T, H, W, 3) uint8: three textured disks drifting over noise; disk 3 is missing on ``vanish``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    for t in range(num_frames):
        img = 40 + 12 * rng.standard_normal((h, w))
        for i, (cy, cx, r, b) in enumerate(disks(t, h, w)):
            if i == 2 and t in vanish:
                continue
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[inside] = b + 20 * np.sin(xx[inside] / 2.0) + 6 * rng.standard_normal(int(inside.sum()))
        gray = np.clip(img, 0, 255).astype(np.uint8)
        frames[t] = np.stack([gray, np.clip(gray.astype(int) + 25, 0, 255), gray[:, ::-1]], axis=-1)
    return frames


def disks(t: int, h: int = VH, w: int = VW):
    """(cy, cx, radius, brightness) of the three disks on frame ``t``."""
    return [(0.3 * h + 0.02 * h * t, 0.25 * w + 0.03 * w * t, 0.18 * h, 210.0),
            (0.7 * h - 0.015 * h * t, 0.75 * w - 0.02 * w * t, 0.16 * h, 150.0),
            (0.35 * h, 0.7 * w - 0.01 * w * t, 0.14 * h, 240.0)]


def disk_mask(t: int, i: int, h: int = VH, w: int = VW) -> np.ndarray:
    cy, cx, r, _ = disks(t, h, w)[i]
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def scenario(h: int = VH, w: int = VW) -> tuple:
    """Several objects prompted on different frames (a click, a box, a mask; object 3 marked
    absent by an empty mask on a later frame), forward and backward, a correction (two
    clicks) and both directions again. Coordinates follow the frame size ``h x w``."""
    y1, x1 = disks(1, h, w)[0][:2]
    y2, x2, r2, _ = disks(3, h, w)[1]
    y5, x5 = disks(5, h, w)[0][:2]
    return (
        ("points", 1, 1, {"points": [[x1, y1]], "labels": [1]}),
        ("points", 3, 2, {"box": [x2 - 1.2 * r2, y2 - 1.2 * r2, x2 + 1.2 * r2, y2 + 1.2 * r2]}),
        ("mask", 2, 3, "disk"),
        ("mask", 4, 3, "empty"),  # object 3 is gone on frame 4 (its disk is missing on 4-5)
        ("propagate", None, None, {"reverse": False}),
        ("propagate", None, None, {"reverse": True}),
        ("points", 5, 1, {"points": [[x5 + 0.1 * w, y5 + 0.05 * h], [2.0, h - 3.0]], "labels": [1, 0]}),
        ("propagate", None, None, {"reverse": False}),
        ("propagate", None, None, {"reverse": True, "start": VT - 1}),
    )


def run_scenario(driver, h: int = VH, w: int = VW) -> list[tuple]:
    """Drive ``driver`` (``points`` / ``mask`` / ``propagate`` / ``score``) through
    :func:`scenario` on frames of ``h x w``. Returns ``(label, obj_ids, logits (n, H, W),
    scores (n,))`` per prompt and per propagated frame (scores NaN for prompts)."""
    records = []
    for i, (kind, frame, obj, kw) in enumerate(scenario(h, w)):
        if kind == "points":
            logits = driver.points(frame, obj, **kw)
            records.append((f"{i}:points f{frame} o{obj}", [obj], logits[None], np.full(1, np.nan)))
        elif kind == "mask":
            mask = disk_mask(frame, obj - 1, h, w) if kw == "disk" else np.zeros((h, w), bool)
            logits = driver.mask(frame, obj, mask)
            records.append((f"{i}:mask f{frame} o{obj}", [obj], logits[None], np.full(1, np.nan)))
        else:
            for t, ids, logits in driver.propagate(**kw):
                scores = np.array([driver.score(o, t) for o in ids], dtype=np.float32)
                records.append((f"{i}:{'back' if kw.get('reverse') else 'fwd'} f{t}", list(ids), logits, scores))
    return records


class OurDriver:
    """:data:`SCENARIO` on our :class:`VideoSession` (corrections as conditioning frames, no hole filling)."""

    def __init__(self, model, frames):
        from napari_sam.engine.store.embedding_store import EmbeddingStore
        from napari_sam.engine.video.session import VideoSession

        # the frames encoded once (in RAM; exactly the on-demand features), not per propagation
        store = EmbeddingStore(None, model, frames, contrast_limits=(0, 255))
        store.precompute()
        self.session = VideoSession(model, frames, embeddings=store, fill_hole_area=0,
                                    contrast_limits=(0, 255), corrections_as_cond=True)

    def points(self, frame, obj, **kw):
        return self.session.add_prompts(frame, obj, **kw)

    def mask(self, frame, obj, mask):
        return self.session.add_mask(frame, obj, mask)

    def propagate(self, reverse=False, start=None, max_frames=None):
        return list(self.session.propagate("backward" if reverse else "forward", start=start,
                                           max_frames=max_frames))

    def score(self, obj, t):
        return self.session.object_scores(t)[obj]


def official_video_predictor(image_size: int = VIDEO_SIZE):
    """The official EdgeTAM ``SAM2VideoPredictor`` (``edgetam.yaml`` with the overrides of
    ``build_sam2_video_predictor``, corrections as conditioning frames, no hole filling) at
    ``image_size`` (``q_sizes`` follows it), its bf16 memories cast back to float32 for CPU
    (the values keep their bf16 rounding). Random init, timm trunk not downloaded."""
    _tests_on_path()
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from models.test_edgetam_parity import REF_ROOT, official_sam2_modules

    with official_sam2_modules():
        import sam2.modeling.backbones.timm as timm_backbone
        from sam2.sam2_video_predictor import SAM2VideoPredictor

        create = timm_backbone.create_model
        timm_backbone.create_model = lambda *a, **k: create(*a, **{**k, "pretrained": False})
        cfg = OmegaConf.load(REF_ROOT / "sam2" / "edgetam.yaml")
        m = cfg.model
        m._target_ = "sam2.sam2_video_predictor.SAM2VideoPredictor"
        m.image_size = image_size
        m.memory_attention.layer.cross_attention.q_sizes = [image_size // 16] * 2
        m.sam_mask_decoder_extra_args = {"dynamic_multimask_via_stability": True,
                                         "dynamic_multimask_stability_delta": 0.05,
                                         "dynamic_multimask_stability_thresh": 0.98}
        m.binarize_mask_from_pts_for_mem_enc = True
        m.fill_hole_area = 0
        m.add_all_frames_to_correct_as_cond = True

        class Fp32MemoryPredictor(SAM2VideoPredictor):
            def _run_single_frame_inference(self, *args, **kwargs):
                out, masks = super()._run_single_frame_inference(*args, **kwargs)
                if out["maskmem_features"] is not None:
                    out["maskmem_features"] = out["maskmem_features"].float()
                return out, masks

            def _run_memory_encoder(self, *args, **kwargs):
                feats, pos = super()._run_memory_encoder(*args, **kwargs)
                return feats.float(), pos

        pred = instantiate(m, _recursive_=True)
        pred.__class__ = Fp32MemoryPredictor
    return pred.eval()


class OfficialDriver:
    """:data:`SCENARIO` on the official predictor, one inference state per object.

    The official EdgeTAM predictor is the older SAM 2 predictor (all objects of a state run
    as one batch, no object added after tracking started), and its perceiver fails on a
    batch of 2 or more objects (``.view`` of an expanded tensor): with one object per state
    it runs, and its objects are independent as in ours (sam2 1.1.0 semantics). Every call
    goes to every object's state with the same start (ours: the earliest prompted frame of
    any object) so that the frames tracked are the same.
    """

    def __init__(self, predictor, frames, folder):
        from PIL import Image

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):  # lossless PNG data under the names the loader reads
            Image.fromarray(frame).save(folder / f"{t}.jpg", format="PNG")
        self.pred, self.folder = predictor, str(folder)
        self.states: dict = {}
        self.prompted: set[int] = set()

    def _state(self, obj):
        if obj not in self.states:
            self.states[obj] = self.pred.init_state(self.folder)
        return self.states[obj]

    def points(self, frame, obj, points=None, labels=None, box=None, clear=True):
        self.prompted.add(frame)
        with torch.inference_mode():
            _, _, masks = self.pred.add_new_points_or_box(self._state(obj), frame, obj, points=points,
                                                          labels=labels, box=box, clear_old_points=clear)
        return masks[0, 0].float().numpy()

    def mask(self, frame, obj, mask):
        self.prompted.add(frame)
        with torch.inference_mode():
            _, _, masks = self.pred.add_new_mask(self._state(obj), frame, obj, mask)
        return masks[0, 0].float().numpy()

    def propagate(self, reverse=False, start=None, max_frames=None):
        start = min(self.prompted) if start is None else start
        per_obj = {}
        with torch.inference_mode():
            for obj, state in self.states.items():
                per_obj[obj] = [(t, m[0, 0].float().numpy()) for t, _, m in self.pred.propagate_in_video(
                    state, start_frame_idx=start, max_frame_num_to_track=max_frames, reverse=reverse)]
        ids = list(self.states)
        frames = [t for t, _ in per_obj[ids[0]]]
        assert all([t for t, _ in per_obj[o]] == frames for o in ids)
        return [(t, ids, np.stack([per_obj[o][k][1] for o in ids])) for k, t in enumerate(frames)]

    def score(self, obj, t):
        d = self.states[obj]["output_dict"]
        out = d["cond_frame_outputs"].get(t) or d["non_cond_frame_outputs"][t]
        return float(out["object_score_logits"][0, 0])


def main() -> None:
    _tests_on_path()
    from models.test_edgetam_parity import REF_ROOT, build_official_edgetam

    torch.set_num_threads(1)
    official = build_official_edgetam()
    official.image_encoder.load_state_dict(encoder_state(), strict=True)
    decoder_keys = set(official.sam_mask_decoder.state_dict())
    missing, unexpected = official.sam_mask_decoder.load_state_dict(conv_state(), strict=False)
    assert not unexpected and set(missing) == decoder_keys - set(conv_state()), (missing, unexpected)
    official.spatial_perceiver.load_state_dict(perceiver_state(), strict=True)
    official.eval()
    mem, pos = memories()
    out = {k: np.array(v) for k, v in input_digests().items()}
    out["reference"] = np.array(next(REF_ROOT.glob("edgetam_dimos-*.dist-info")).name)
    with torch.no_grad():
        ref = official.forward_image(image())
        assert torch.equal(ref["backbone_fpn"][2], ref["vision_features"])  # stored once
        for i in (0, 1):
            out[f"backbone_fpn_{i}"] = ref["backbone_fpn"][i].numpy()
        out["vision_features"] = ref["vision_features"].numpy()
        refs = [official.spatial_perceiver(mem[i:i + 1], pos[i:i + 1]) for i in range(N_OBJ)]
    out["perceiver_tokens"] = torch.cat([r[0] for r in refs]).numpy()
    out["perceiver_pos"] = torch.cat([r[1] for r in refs]).numpy()
    np.savez_compressed(GOLDEN, **out)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KiB):",
          {k: (v.shape, v.dtype.name) for k, v in out.items()})


def flatten_records(records) -> dict[str, np.ndarray]:
    """Scenario records -> arrays: one row per (record, object)."""
    return {
        "labels": np.array([f"{label} o{obj}" for label, ids, _, _ in records for obj in ids]),
        "logits": np.concatenate([logits for _, _, logits, _ in records]).astype(np.float32),
        "scores": np.concatenate([scores for _, _, _, scores in records]).astype(np.float32),
    }


def video_digests() -> dict[str, str]:
    return {"sha_model": digest(model_state()), "sha_frames": digest([torch.from_numpy(video_frames())])}


def main_video() -> None:
    """The official video predictor on :func:`scenario` with :func:`model_state` weights."""
    import tempfile

    _tests_on_path()
    from models.test_edgetam_parity import REF_ROOT

    torch.set_num_threads(1)
    pred = official_video_predictor(VIDEO_SIZE)
    pred.load_state_dict(model_state(), strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        records = run_scenario(OfficialDriver(pred, video_frames(), Path(tmp) / "frames"))
    out = {k: np.array(v) for k, v in video_digests().items()}
    out["reference"] = np.array(next(REF_ROOT.glob("edgetam_dimos-*.dist-info")).name)
    out.update(flatten_records(records))
    state = pred.state_dict()  # the official checkpoint's names and shapes (size-independent)
    out["state_keys"] = np.array(list(state))
    out["state_shapes"] = np.array([",".join(map(str, t.shape)) for t in state.values()])
    np.savez_compressed(VIDEO_GOLDEN, **out)
    print(f"wrote {VIDEO_GOLDEN} ({VIDEO_GOLDEN.stat().st_size / 1024:.0f} KiB):",
          {k: (v.shape, v.dtype.name) for k, v in out.items()})


if __name__ == "__main__":
    # python make_edgetam_golden.py [image|video]  (default: both)
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("image", "all"):
        main()
    if which in ("video", "all"):
        main_video()
