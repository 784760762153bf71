"""Every case of the broken-input corpus (tests/broken_inputs.py) against the readers, called directly:
refused with one InputError line naming the file and the problem, or skipped with a warning naming it."""
from __future__ import annotations

import os
import warnings

import pytest
from broken_inputs import ALL_CASES, Case
from real_kitti import needs_real

from common.errors import InputError, strict_inputs

CASES = [pytest.param(case, id=f"{domain}: {case.name}", marks=[needs_real] if domain == "driving" else [])
         for domain, cases in ALL_CASES.items() for case in cases]


@pytest.mark.parametrize("case", CASES)
def test_broken_input(case: Case, tmp_path):
    if case.needs_non_root and os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    read = case.build(tmp_path)
    if case.outcome == "refused":
        with pytest.raises(InputError) as caught:
            read()
        message = str(caught.value)
        assert "\n" not in message, "the CLI prints the error as one line"
        assert caught.value.path, "the error names the file"
        for fragment in case.expect:
            assert fragment in message, (fragment, message)
        return
    with warnings.catch_warnings(record=True) as caught_warnings:
        warnings.simplefilter("always")
        result = read()
    shown = [str(w.message) for w in caught_warnings if issubclass(w.category, UserWarning)]
    if case.outcome == "read":
        assert result is not None and not shown, shown
        return
    assert case.outcome == "skipped"
    assert any(all(f in message for f in case.expect) for message in shown), (case.expect, shown)
    # `--strict` (common.errors.strict_inputs) refuses what was skipped, with the same words and the file
    (tmp_path / "strict").mkdir()
    with pytest.raises(InputError) as caught, strict_inputs():
        case.build(tmp_path / "strict")()
    assert caught.value.path and "\n" not in str(caught.value) and "--strict" in str(caught.value)
    assert all(f in str(caught.value) for f in case.expect), (case.expect, str(caught.value))


def test_skipped_scans_and_frames_are_counted(tmp_path):
    """What a summary line needs: the skipped items come back as InputErrors, one per item."""
    from broken_inputs import UIDS, raw_of, write_luna16

    from apps.medical.reader import find_luna16_volumes, usable_volumes

    root = write_luna16(tmp_path / "luna")
    raw_of(root, 1).write_bytes(b"\0" * 10)
    with pytest.warns(UserWarning, match="skipping scan"):
        good, problems = usable_volumes(find_luna16_volumes(root))
    assert list(good) == [UIDS[0]] and len(problems) == 1 and UIDS[1] in str(problems[0])
    raw_of(root, 0).write_bytes(b"\0" * 10)  # every scan damaged: nothing to go on with
    with pytest.raises(InputError, match="truncated pixel data"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        usable_volumes(find_luna16_volumes(root))


@needs_real
def test_skipped_frames_are_returned_for_the_summary(tmp_path):
    from broken_inputs import write_kitti

    from apps.driving.dataset import read_driving_frames

    split = write_kitti(tmp_path / "kitti", second=True) / "training"
    (split / "image_2" / "000009.png").write_bytes(b"not a png")
    skipped: list[InputError] = []
    with pytest.warns(UserWarning, match="skipping frame 000009"):
        frames = read_driving_frames(split, ["000008", "000009"], skip_unreadable=True, skipped=skipped)
    assert [f.frame_id for f in frames] == ["000008"]
    assert len(skipped) == 1 and "000009.png" in str(skipped[0])
    (split / "image_2" / "000008.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="000008.png"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_driving_frames(split, ["000008", "000009"], skip_unreadable=True)
