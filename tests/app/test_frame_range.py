"""The frames a propagation visits: the app's rule, the frames the VideoSession really yields,
and the count the widget's progress bar is given, all one and the same."""

from __future__ import annotations

import pytest
from app_fixtures import Prompt, centre_click, small  # noqa: F401

from napari_sam.app.frame_range import first_prompted_frame, propagation_frames
from napari_sam.app.session import StackSession


def test_the_rule_in_numbers():
    assert propagation_frames(5, "forward", 2) == [2, 3, 4]
    assert propagation_frames(5, "backward", 2) == [2, 1, 0]
    assert propagation_frames(5, "both", 2) == [2, 3, 4, 2, 1, 0]
    assert propagation_frames(5, "backward", 0) == []
    assert propagation_frames(5, "both", 0) == [0, 1, 2, 3, 4]
    assert propagation_frames(5, "forward", 1, max_frames=2) == [1, 2, 3]
    assert propagation_frames(5, "both", 3, max_frames=1) == [3, 4, 3, 2]
    with pytest.raises(ValueError, match="direction"):
        propagation_frames(5, "sideways", 0)
    with pytest.raises(ValueError, match="start frame 5 out of range"):
        propagation_frames(5, "forward", 5)


def test_video_session_yields_exactly_the_rule(small):
    from napari_sam.engine.video.session import VideoSession

    movie = small["movie"]
    sess = VideoSession(small["model"], movie.image)
    pts, lab = centre_click(movie.labels[1])
    sess.add_prompts(1, 1, points=pts, labels=lab)
    n = len(movie.image)
    for direction in ("forward", "backward", "both"):
        for start in range(n):
            for max_frames in (None, 0, 1):
                got = [t for t, _, _ in sess.propagate(direction, start=start, max_frames=max_frames)]
                assert got == propagation_frames(n, direction, start, max_frames), (direction, start, max_frames)
    sess.close()


def test_stack_session_counts_what_it_propagates_from_the_first_prompt(small, tmp_path):
    movie = small["movie"]
    s = StackSession(small["model"], movie.image, cache_root=tmp_path)
    pts, lab = centre_click(movie.labels[2])
    s.predict((), 2, 1, Prompt(pts, lab))
    pts, lab = centre_click(movie.labels[3], 1)
    s.predict((), 3, 2, Prompt(pts, lab))
    assert first_prompted_frame(s.session(())) == 2
    for direction in ("forward", "backward", "both"):
        frames = [t for t, _, _ in s.propagate_iter((), direction)]
        assert frames == s.propagation_frames((), direction) == propagation_frames(len(movie.image), direction, 2)
        assert s.propagate_length((), direction) == len(frames)
    assert s.propagate_length((), "both", start=0) == len(movie.image)
    s.close()
