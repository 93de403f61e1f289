"""``python -m napari_sam.cli``: the same as the ``napari-sam`` command."""

import sys

from . import main

sys.exit(main())
