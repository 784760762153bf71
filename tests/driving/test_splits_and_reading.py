"""How a KITTI folder becomes train/val/test, and what of a scan the detector sees."""
import numpy as np
import pytest
from real_kitti import REAL, needs_real

from apps.driving.dataset import points_in_camera_view, read_driving_frames
from apps.driving.kitti import read_frame
from apps.driving.split import DrivingDataConfig, split_frames
from common.errors import InputError

IDS = [f"{i:06d}" for i in range(10)]


def write_sets(root, **lists):
    (root / "ImageSets").mkdir(parents=True)
    for name, ids in lists.items():
        (root / "ImageSets" / f"{name}.txt").write_text("\n".join(ids) + "\n")


def labelled_folder(root, ids=IDS):
    for part in ("velodyne", "calib", "image_2", "label_2"):
        (root / "training" / part).mkdir(parents=True)
    for frame_id in ids:
        for part, suffix in (("velodyne", ".bin"), ("calib", ".txt"), ("image_2", ".png"), ("label_2", ".txt")):
            (root / "training" / part / f"{frame_id}{suffix}").write_bytes(b"")
    return root


def test_without_image_sets_a_seeded_shuffle_covers_every_frame_once(tmp_path):
    train, val, test = split_frames(tmp_path, IDS, DrivingDataConfig())
    assert sorted(train + val + test) == IDS and len(val) == len(test) == 2
    assert (train, val, test) == split_frames(tmp_path, IDS, DrivingDataConfig())


def test_kitti_style_test_list_of_unlabelled_frames_falls_back_to_halving_val(tmp_path, capsys):
    root = labelled_folder(tmp_path)
    write_sets(root, train=IDS[:6], val=IDS[6:], test=["007480", "007481"])  # testing/ ids, as KITTI ships
    train, val, test = split_frames(root, IDS, DrivingDataConfig())
    assert train == IDS[:6] and sorted(val + test) == IDS[6:] and len(val) == len(test) == 2
    assert "half of val.txt" in capsys.readouterr().out


def test_image_sets_are_found_when_data_points_at_the_training_folder(tmp_path):
    root = labelled_folder(tmp_path)
    write_sets(root, train=IDS[:6], val=IDS[6:8], test=IDS[8:])
    assert split_frames(root / "training", IDS, DrivingDataConfig()) == (IDS[:6], IDS[6:8], IDS[8:])


def test_image_sets_in_two_lists_are_refused(tmp_path):
    root = labelled_folder(tmp_path)
    write_sets(root, train=IDS[:6], val=IDS[5:8], test=IDS[8:])
    with pytest.raises(InputError, match="two ImageSets lists"):
        split_frames(root, IDS, DrivingDataConfig())


@needs_real
def test_a_full_scan_is_cropped_to_what_the_camera_sees():
    raw = read_frame(REAL, "000008")  # the fixture is already a reduced scan: every point is in view
    behind = raw.points * np.array([-1, -1, 1, 1], np.float32)  # the same scene turned to face backwards
    kept = points_in_camera_view(np.vstack([raw.points, behind]), raw.calib, raw.image.shape[:2])
    np.testing.assert_array_equal(kept, raw.points)
    (frame,) = read_driving_frames(REAL, ["000008"])
    np.testing.assert_array_equal(frame.points, raw.points)
    assert frame.objects and read_driving_frames(REAL, ["000008"], labels=False)[0].objects == []
