"""Which official SAM 2 yaml builds a config, and the hydra overrides that resize it.

Shared by the reference tests (``tests/models/test_sam2_reference.py``) and the video
parity reference (``tests/engine/video_reference.py``): an official config is built from its
own yaml as it is; a reduced one from the tiny yaml of its version, resized."""

from __future__ import annotations

from napari_sam.models.sam2 import SAM2_CONFIGS, Sam2Config

_SHORT = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}


def _list(values) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def resize_overrides(cfg: Sam2Config) -> list[str]:
    """Hydra overrides that give the official tiny yaml the sizes of ``cfg``."""
    side = cfg.feat_size
    trunk = "++model.image_encoder.trunk."
    return [
        f"++model.image_size={cfg.image_size}",
        f"{trunk}embed_dim={cfg.embed_dim}",
        f"{trunk}num_heads={cfg.num_heads}",
        f"{trunk}stages={_list(cfg.stages)}",
        f"{trunk}global_att_blocks={_list(cfg.global_att_blocks)}",
        f"{trunk}window_spec={_list(cfg.window_spec)}",
        f"{trunk}window_pos_embed_bkg_spatial_size={_list(cfg.window_pos_embed_bkg_spatial_size)}",
        f"++model.image_encoder.neck.backbone_channel_list={_list(cfg.channel_list)}",
        f"++model.memory_attention.num_layers={cfg.memory_attention_layers}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{side},{side}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{side},{side}]",
    ]


def yaml_and_overrides(cfg: Sam2Config) -> tuple[str, list[str]]:
    """``(config path for sam2's hydra, overrides)`` that build ``cfg``'s architecture."""
    prefix = "sam2" if cfg.version == "2.0" else "sam2.1"
    if SAM2_CONFIGS.get(cfg.name) == cfg:  # an official config as it is
        size, overrides = _SHORT[cfg.name.split("_hiera_")[1]], []
    else:
        size, overrides = "t", resize_overrides(cfg)
    return f"configs/{prefix}/{prefix}_hiera_{size}.yaml", overrides
