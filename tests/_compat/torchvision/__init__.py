"""Test-only stand-in for the torchvision functions that the official SAM / SAM 2 reference
packages import (see tests/_compat/README.md). Never used when a real torchvision imports."""

__version__ = "0.0+napari-sam-tests"
IS_STAND_IN = True
