import numpy as np

from napari_sam.data.mosaic import mosaic


def test_mosaic_has_the_asked_size_unique_ids_and_nuclei_of_the_asked_diameter():
    s = mosaic((700, 900), scene=256, distinct=2, seed=3, diameter=(15, 30))
    assert s.image.shape == s.labels.shape == (700, 900) and s.image.dtype == np.uint16
    areas = np.bincount(s.labels.ravel())[1:]
    assert (areas > 0).all()  # every id is used: ids of different placements never merge
    d = np.median(2 * np.sqrt(areas / np.pi))
    assert 15 <= d <= 30
    assert 0.15 < (s.labels > 0).mean() < 0.5
    again = mosaic((700, 900), scene=256, distinct=2, seed=3, diameter=(15, 30))
    assert np.array_equal(s.image, again.image)
