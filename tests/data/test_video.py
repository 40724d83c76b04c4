"""Writing stereo video outputs."""

import numpy as np
import pytest

from stereodistill.data.video import video_writer


def test_a_frame_of_odd_sides_is_written_one_row_and_column_larger_not_resized(tmp_path, caplog):
    imageio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    frame = np.zeros((35, 47, 3), np.float32)
    frame[:, :20] = 1.0  # a sharp edge a resize would blur
    with video_writer(tmp_path / "v.mp4", 5) as video:
        for _ in range(3):
            video.append(frame)
    frames = [f for f in imageio.get_reader(str(tmp_path / "v.mp4"), format="FFMPEG")]  # no len(): it is inf
    assert len(frames) == 3 and frames[0].shape == (36, 48, 3)
    assert frames[0][:, :18].min() > 200 and frames[0][:, 22:].max() < 60  # the edge where it was
    assert "resizing" not in caplog.text  # the writer's own warning, which reached the user's terminal
