"""``napari-sam demo``: napari opens with a synthetic sample, the dock widget and a model
loaded (by default the bundled embedded model: no download), and every object segmented —
tracked through the stack for a time-lapse (the default) or a z-stack when the model tracks
(SAM 2; a SAM 1 model segments the slice shown) — ready to inspect and correct."""

from __future__ import annotations

SAMPLES = ("timelapse", "nuclei_2d", "nuclei_3d")


def open_demo(viewer, sample: str = "timelapse", model_name: str | None = None, run: bool = True):
    """Fill ``viewer`` with ``sample``, dock the widget, load the model, start the automatic
    run (Track everything on stacks, Segment everything on a 2D image). Returns the widget."""
    from napari_sam.data import samples
    from napari_sam.registry import default_model, load_model

    if sample not in SAMPLES:
        raise ValueError(f"unknown sample {sample!r}: choose one of {', '.join(SAMPLES)}")
    image = None
    for data, kwargs, kind in getattr(samples, sample)():
        layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
        image = layer if kind == "image" and image is None else image
    viewer.layers.selection.active = image
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam", "Segment Anything")
    name = model_name or default_model()
    widget.set_model(load_model(name, device="auto"), name)
    if run:
        if widget.segmenter is not None and widget.segmenter.video:
            widget.automatic.track_everything()
        else:
            widget.automatic.segment_everything()
    return widget


def run_demo(sample: str = "timelapse", model_name: str | None = None) -> None:
    """Open a napari window with :func:`open_demo` and run napari's event loop."""
    import napari

    viewer = napari.Viewer(title=f"napari-sam demo: {sample}")
    open_demo(viewer, sample, model_name)
    napari.run()
