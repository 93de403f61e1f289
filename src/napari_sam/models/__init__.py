"""Pure PyTorch modules: no numpy I/O, no napari."""
