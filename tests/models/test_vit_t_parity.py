"""vit_t (MobileSAM's TinyViT encoder) parity against MobileSAM's own code, random weights, fp32 CPU.

The reference is ``mobile_sam`` (PyPI ``mobilesam-mirror``, the package micro-sam imports for
vit_t). Its encoder fixes the embedding grid at 64x64, so the input is 1024 px; to keep the
test fast the reference TinyViT is built with one block per stage (two in the 14x14-window
stage, so a block follows a block) — every component, both window sizes and the padding of
partial windows (128 and 64 token grids are no multiple of 7 or 14) are still exercised.
Weights are perturbed so every tensor matters, saved as MobileSAM's flat state_dict, and
loaded by both sides. Tolerance: embeddings and logits max|ours - ref| <= 1e-4 max|ref|;
masks for clicks agree on >= 99.9 % of pixels.

MobileSAM caches its attention biases when the model is switched to eval mode, so a model
put in eval mode *before* its weights are loaded keeps the biases it was built with
(MobileSAM's own ``build_sam_vit_t`` does this, and micro-sam 1.8.14's ``get_sam_model``
inherits it). The reference here is switched to eval mode after loading, as MobileSAM's
README does: the numbers of the trained model.
"""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from conftest import mask_agreement, max_rel_err, perturb_

from napari_sam.models.tinyvit import TinyViTConfig, build_sam1_vit_t



def _timm_standin() -> None:
    """MobileSAM's TinyViT file imports four names from ``timm`` at module level; timm itself
    needs a real torchvision, which the CPU torch of CI lacks (see tests/_compat). None of
    the four touches the numbers compared here: ``DropPath`` is only instantiated for a drop
    rate > 0 (0 here), ``trunc_normal_`` initialises weights that are then overwritten by
    the loaded ones, ``to_2tuple`` makes a pair, ``register_model`` registers a name."""
    import types

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    class DropPath(torch.nn.Module):
        def __init__(self, drop_prob=None):
            super().__init__()
            if drop_prob:
                raise NotImplementedError("stand-in DropPath: drop rate 0 only")

        def forward(self, x):
            return x

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath, layers.to_2tuple = DropPath, to_2tuple
    layers.trunc_normal_ = lambda t, std=1.0, **_: torch.nn.init.trunc_normal_(t, std=std)
    registry = types.ModuleType("timm.models.registry")
    registry.register_model = lambda fn: fn
    models = types.ModuleType("timm.models")
    models.layers, models.registry = layers, registry
    timm = types.ModuleType("timm")
    timm.models = models
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers,
                        "timm.models.registry": registry})


with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import timm.models.layers  # noqa: F401
    except ImportError:
        _timm_standin()
    try:
        import mobile_sam  # noqa: F401
        from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
        from mobile_sam.modeling.tiny_vit_sam import TinyViT
    except ImportError as err:
        pytest.skip(f"the reference MobileSAM code cannot be imported ({err}); pip install mobilesam-mirror==1.0.0",
                    allow_module_level=True)

TOL = 1e-4
DEPTHS = (1, 1, 2, 1)


def reference_model() -> torch.nn.Module:
    """MobileSAM's build_sam_vit_t with fewer blocks per stage."""
    return Sam(
        image_encoder=TinyViT(img_size=1024, in_chans=3, num_classes=1000, embed_dims=[64, 128, 160, 320],
                              depths=list(DEPTHS), num_heads=[2, 4, 5, 10], window_sizes=[7, 7, 14, 7],
                              mlp_ratio=4.0, drop_rate=0.0, drop_path_rate=0.0, use_checkpoint=False,
                              mbconv_expand_ratio=4.0, local_conv_size=3, layer_lr_decay=0.8),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                     mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    torch.manual_seed(0)
    ref = perturb_(reference_model(), seed=1)
    sd = {k: v for k, v in ref.state_dict().items() if k not in ("pixel_mean", "pixel_std")}
    path = tmp_path_factory.mktemp("vit_t") / "mobile_sam_random.pt"
    torch.save(sd, path)  # MobileSAM's format: a flat state_dict
    ref.load_state_dict(torch.load(path, weights_only=True), strict=False)
    ref.eval()  # after loading: caches the loaded attention biases
    ours = build_sam1_vit_t(TinyViTConfig(depths=DEPTHS))
    from napari_sam import checkpoints

    checkpoints.load_into(ours, checkpoints.read_state_dict(path), "vit_t", str(path))
    ours.eval()
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref_embed = ref.image_encoder(x)
        our_embed = ours.encode_image(x)["image_embed"]
    return ref, ours, ref_embed, our_embed


def test_state_dict_keys_and_shapes_are_mobile_sams():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mobile_sam import sam_model_registry

        ref = sam_model_registry["vit_t"]().state_dict()
    with torch.device("meta"):
        ours = build_sam1_vit_t().state_dict()
    ref = {k: v for k, v in ref.items() if k not in ("pixel_mean", "pixel_std")}
    assert list(ours) == list(ref)
    assert all(tuple(ours[k].shape) == tuple(ref[k].shape) for k in ref)


def test_image_embedding(pair):
    _, _, ref_embed, our_embed = pair
    assert our_embed.shape == (1, 256, 64, 64)
    err = max_rel_err(our_embed, ref_embed)
    print(f"[parity] vit_t embedding: {err:.2e}")
    assert err <= TOL


def _clicks():
    gen = torch.Generator().manual_seed(3)
    coords = torch.rand(4, 3, 2, generator=gen) * 1024
    labels = torch.tensor([[1, -1, -1], [1, 0, -1], [1, 1, 0], [0, 1, 1]])
    return coords, labels


@pytest.mark.parametrize("multimask", [True, False])
def test_masks_for_clicks(pair, multimask):
    ref, ours, ref_embed, our_embed = pair
    coords, labels = _clicks()
    with torch.no_grad():
        sparse, dense = ref.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        ref_logits, ref_iou = ref.mask_decoder(image_embeddings=ref_embed, image_pe=ref.prompt_encoder.get_dense_pe(),
                                               sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                               multimask_output=multimask)
        logits, iou = ours.decode({"image_embed": our_embed}, coords, labels, multimask=multimask)
    assert logits.shape == ref_logits.shape == (4, 3 if multimask else 1, 256, 256)
    err = max_rel_err(logits, ref_logits)
    agree = mask_agreement(logits, ref_logits)
    print(f"[parity] vit_t click logits (multimask={multimask}): {err:.2e}, masks equal {agree:.5%}")
    assert err <= TOL and agree >= 0.999
    assert max_rel_err(iou, ref_iou) <= TOL
