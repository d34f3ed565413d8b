"""Run and lane ids: valid names, and run ids that sort by start time."""

from __future__ import annotations

import time

import pytest

from spine.base.ids import id_problem, new_run_id, slugify


def test_run_ids_started_in_the_same_second_sort_by_start() -> None:
    ids = []
    for _ in range(12):
        ids.append(new_run_id())
        time.sleep(0.02)
    assert ids == sorted(ids)
    assert all(id_problem(i) is None for i in ids)


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Make the greeting friendlier!", "make-the-greeting-friendlier"),
        ("   ", "lane"),
        ("ünïcode only", "unicode-only"),
        ("Fix café parser ☕", "fix-cafe-parser"),
        ("Straße \uff26\uff35\uff2c\uff2c width", "strasse-full-width"),  # fullwidth FULL
        ("日本語のテスト", "lane"),
        ("☕" * 50 + "x", "x"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug
    assert id_problem(slugify(text)) is None


@pytest.mark.parametrize("bad", ["", "a/b", "-x", ".x", "x.lock", "a..b", "a b", "x" * 101, "x."])
def test_invalid_ids(bad: str) -> None:
    assert id_problem(bad) is not None
