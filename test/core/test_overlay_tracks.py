"""The overlay draws tracks: a yellow box with the id below it and the trail."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from irstd_ros.core.overlay import TRACK_RGB, draw_overlay


def test_tracks_are_drawn_with_their_trail():
    frame = np.zeros((60, 80), np.uint8)
    track = SimpleNamespace(id=12, x=40.0, y=20.0, width=3.0, height=3.0)
    trail = [(10.0, 20.0), (25.0, 20.0), (40.0, 20.0)]
    img = draw_overlay(frame, [], tracks=[track], trails={12: trail})
    yellow = np.all(img == TRACK_RGB, axis=2)
    assert yellow[20, 12:38].all()  # the trail, a horizontal line at y = 20
    assert yellow[:, 40 - 1 - 9].any()  # the box's left edge, outside the target
    assert yellow[20 + 2 + 9 :, 30:60].any()  # the "#12" label below the box
    plain = draw_overlay(frame, [])
    assert not np.all(plain == TRACK_RGB, axis=2).any()
