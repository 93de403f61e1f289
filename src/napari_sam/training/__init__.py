"""Training of the embedded SAM 2 model on the synthetic microscopy generator.

* :mod:`.data`     – seeded training examples (2D scenes, time-lapse / z-stack clips)
* :mod:`.prompts`  – click, box and SAM-style corrective-click sampling
* :mod:`.heads`    – all-token decoding and the inference-time output choice
* :mod:`.losses`   – focal + dice mask loss, IoU-prediction and object-score losses
* :mod:`.steps`    – one image-path step (iterative prompting) and one video-path step
* :mod:`.loop`     – the seeded, resumable training loop with checkpoints
* :mod:`.evaluate` – held-out quality through ``ImagePredictor`` / ``VideoSession``

Run it with ``scripts/train_embedded.py``. Training needs scipy (a scikit-image dependency).
"""
