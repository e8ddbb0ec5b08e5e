"""The backtest plot's reference pictures: each is in docs/images, shown on the backtest
page, and a PNG of the size the plot gives its panels (regenerate them with
``python -m tests.docs.backtest_images docs/images``)."""

from __future__ import annotations

import struct

import pytest
import yaml

from agentmedic.api.validation import validate_policy
from agentmedic.backtest.plot import DPI, figure_size

from .backtest_images import Picture, pictures
from .markdown import ROOT

PAGE = ROOT / "docs" / "backtest.md"


def _panels(picture: Picture) -> int:
    policy, problems = validate_policy(yaml.safe_load(picture.policy))
    assert not problems, problems
    assert policy is not None
    conditions = sum(len(r.all_of) + len(r.any_of) for r in policy.spec.rules)
    return conditions + (policy.spec.budget is not None)


@pytest.mark.parametrize("picture", pictures(), ids=lambda p: p.file)
def test_a_reference_picture_is_shown_and_has_the_size_of_its_panels(picture: Picture) -> None:
    path = ROOT / "docs" / "images" / picture.file
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    w, h = figure_size(_panels(picture))
    assert (width, height) == (round(w * DPI), round(h * DPI))
    assert len(data) < 200_000  # a reference picture, not a poster
    assert f"](images/{picture.file})" in PAGE.read_text()


def test_every_backtest_picture_in_docs_images_comes_from_the_script() -> None:
    committed = {p.name for p in (ROOT / "docs" / "images").glob("backtest-*.png")}
    assert committed == {p.file for p in pictures()}
