"""napari + Qt: the "Segment Anything" dock widget and its helpers (no model math here)."""
