"""The model chooser: registry name, optional custom checkpoint file, device, cache status."""

from __future__ import annotations

import os
from pathlib import Path

from qtpy.QtCore import Signal
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
        self.model_combo.addItems([m.name for m in list_models()])
        self.model_combo.setToolTip("embedded: bundled, works offline; or an official SAM 1 / SAM 2 / SAM 2.1 model")
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
