"""The tracking client splits output into request bodies the service accepts."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("lines", "sizes"),
    [
        ([], [0]),
        (["x"] * 12_001, [5_000, 5_000, 2_001]),
        (["y" * 400_000] * 5, [2, 2, 1]),  # about 1 MiB a request
        (["z" * 3_000_000, "a"], [1, 1]),  # a long line goes alone
    ],
)
def test_the_client_sends_a_burst_of_output_in_bodies_the_service_accepts(lines, sizes):
    from latticehub.client.active import _log_pieces

    pieces = _log_pieces(lines)
    assert [len(p) for p in pieces] == sizes
    assert [line for piece in pieces for line in piece] == lines  # order kept, nothing lost
