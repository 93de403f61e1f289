"""``nms``, ``batched_nms`` and ``box_area`` (see tests/_compat/README.md)."""

from .boxes import batched_nms, box_area, nms  # noqa: F401
