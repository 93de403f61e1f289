"""``napari-sam models [list] | download NAME | verify [NAME]``: the official weights (list: name,
family, kind, size, cached)."""

from __future__ import annotations


def _kind(m) -> str:
    """What the entry is, in a word: bundled, SAM 1 / 2.0 / 2.1, EdgeTAM, micro-sam."""
    if m.bundled:
        return "bundled"
    if m.variant == "edgetam":
        return "EdgeTAM"
    return "micro-sam" if m.source == "micro-sam" else f"SAM {m.version}"


def cmd_models(args) -> int:
    from .. import checkpoints
    from ..registry import list_models, model_info

    if args.action in (None, "list"):  # no action: list
        for m in list_models():
            print(f"{m.name:24s} {m.family}  {_kind(m):9s}  {m.size_text:>13s}  {'cached' if m.cached else '-'}")
        return 0
    if args.action == "download":
        info = model_info(args.name)
        path = checkpoints.fetch(info, progressbar=True)
        print(f"{info.name}: {path}" + (" (bundled: nothing to download)" if info.bundled else ""))
        return 0
    # every file present is checked, also one of the wrong size (which the registry does not count as cached)
    infos = [model_info(args.name)] if args.name else [m for m in list_models() if m.path.is_file()]
    bad = 0
    for info in infos:
        if not info.path.is_file():
            print(f"{info.name}: not cached")
            bad += 1
        elif not checkpoints.verify(info):
            print(f"{info.name}: CORRUPT ({info.path}): its checksum does not match the published one; "
                  f"delete it and run `napari-sam models download {info.name}`")
            bad += 1
        else:
            print(f"{info.name}: ok")
    if not infos:
        print("no cached models")
    return 1 if bad else 0
