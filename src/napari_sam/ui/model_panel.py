"""The model chooser: registry name, optional custom checkpoint file, device, cache status."""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)


def _mib(n: int | None) -> str:
    return "size unknown" if n is None else f"{n / 2**20:,.0f} MiB"


#: Which model to pick, with measured times (benchmarks/results/video.md, tiling.md, edgetam.md;
#: CPU fp32; "thread" = torch CPU threads). Shown as the model combo's tooltip.
CHOICE = ("Which model: on a CPU, edgetam (official EdgeTAM weights, 54 MiB; 1024-px embedding "
          "3.4 s per frame on 1 thread) or embedded (bundled, no download, 256-px input: about "
          "0.06 s per frame to track one object); on a GPU, sam2.1_hiera_* (the best tracking; on "
          "a CPU sam2.1_hiera_tiny needs about 4 s per frame to embed and 54 s per frame to track "
          "20 cells on 2 threads). Hover an entry for more.")


def model_advice(name: str) -> str:
    """One or two sentences on when to pick model ``name`` (its entry's tooltip)."""
    if name == "embedded":
        return ("Bundled (8 MB, works offline): a small SAM 2.1 with a 256-px input, trained on "
                "synthetic fluorescence. On a CPU: one embedding 0.05-0.08 s (1 thread), tracking about "
                "0.06 s per frame for one object and 0.8 s for 20 (2 threads). Made for objects about "
                "10-50 px across at its 256-px input: on images larger than 256 px choose Tiles: auto "
                "(the image at its own pixel size; real nuclei: click 0.66 -> 0.74 mean IoU).")
    if name == "edgetam":
        return ("EdgeTAM (Meta): SAM 2 with a light RepViT trunk and a compressed memory. The pick for "
                "a CPU with official weights: 1024-px embedding 3.4 s per frame on 1 thread (the "
                "official code: 4.3-5.0 s). 54 MiB download.")
    if name.startswith("sam2.1_hiera_"):
        return ("SAM 2.1: the pick on a GPU (best tracking). On a CPU it is slow: sam2.1_hiera_tiny "
                "embeds a frame in about 4 s and tracks 1 object in 3.5 s, 20 cells in 54 s per frame "
                "(2 threads); larger variants are slower still.")
    if name.startswith("sam2_hiera_"):
        return "SAM 2.0: superseded by SAM 2.1 (same speed, better tracking); for reproducing older work."
    if name.startswith("sam_vit_"):
        return "SAM 1: single images, slice by slice (no tracking). vit_b is the fastest of the three."
    return ("micro-sam's fine-tuned SAM 1 (lm: light microscopy, em_organelles: electron microscopy, "
            "...): slice by slice, no tracking; segment everything with its instance decoder (all but vit_t).")


def available_devices() -> list[str]:
    """'auto', 'cpu', and the GPUs this PyTorch can see."""
    out = ["auto", "cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            out += ["cuda"] if n == 1 else [f"cuda:{i}" for i in range(n)]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
    except Exception:  # pragma: no cover - torch import problems show up at load time
        pass
    return out


def weights_status(name: str, checkpoint: str = "") -> str:
    """One line: where the weights of ``name`` come from and how large they are."""
    if checkpoint:
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            return f"checkpoint file not found: {p}"
        return f"custom checkpoint {p.name} ({_mib(p.stat().st_size)}), loaded as the {name} architecture"
    from napari_sam.registry import list_models

    info = next((m for m in list_models() if m.name == name), None)
    if info is None:
        return f"unknown model {name}"
    if info.bundled:
        return f"bundled with napari-sam ({_mib(info.size)}, no download): a small model for first use"
    if info.cached:
        return f"cached ({_mib(info.size)}) at {info.path.parent}"
    host = info.url.split("/")[2]
    return f"not cached: the first load downloads {_mib(info.size)} from {host}"


class ModelPanel(QWidget):
    """Emits ``load_requested(name, checkpoint_or_empty, device)`` when *Load model* is pressed."""

    load_requested = Signal(str, str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        from napari_sam.registry import list_models

        self.model_combo = QComboBox()
        for i, m in enumerate(list_models()):
            self.model_combo.addItem(m.name)
            self.model_combo.setItemData(i, model_advice(m.name), Qt.ToolTipRole)
        self.model_combo.setToolTip(CHOICE)
        self.checkpoint = QLineEdit()
        self.checkpoint.setPlaceholderText("official weights (leave empty) or a checkpoint file")
        self.checkpoint.setToolTip("A checkpoint file in the official format, loaded into the chosen architecture")
        browse = QPushButton("…")
        browse.setToolTip("Choose a checkpoint file (.pt / .pth)")
        browse.setFixedWidth(30)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.checkpoint)
        row.addWidget(browse)
        ck = QWidget()
        ck.setLayout(row)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_combo.setToolTip("Where the model runs: auto = CUDA GPU, else Apple MPS, else CPU")
        self.status = QLabel()
        self.status.setWordWrap(True)
        # a wrapped label in a form row can be laid out one line short (text clipped): room for two
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing() + 2)
        self.load_button = QPushButton("Load model")
        self.load_button.setToolTip("Load the chosen model (downloads the official weights once if not cached)")
        self.load_button.clicked.connect(self._emit_load)
        self.loaded = QLabel("no model loaded")
        self.loaded.setWordWrap(True)

        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Model", self.model_combo)
        form.addRow("Checkpoint", ck)
        form.addRow("Device", self.device_combo)
        form.addRow("Weights", self.status)
        form.addRow(self.load_button)
        form.addRow(self.loaded)
        self.model_combo.currentTextChanged.connect(self.refresh_status)
        self.checkpoint.textChanged.connect(self.refresh_status)
        from napari_sam.registry import default_model

        self.model_combo.setCurrentText(default_model())
        self.refresh_status()

    def refresh_status(self, *_):
        self.status.setText(weights_status(self.model_combo.currentText(), self.checkpoint.text().strip()))

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", os.path.expanduser("~"), "PyTorch checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.checkpoint.setText(path)

    def _emit_load(self):
        self.load_requested.emit(self.model_combo.currentText(), self.checkpoint.text().strip(), self.device_combo.currentText())
