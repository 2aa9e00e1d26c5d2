"""Content-addressed blob storage and artifact path checks."""

import hashlib

import pytest

from hub_ext.experiments.blobs import BlobStore, clean_artifact_path
from hub_ext.experiments.store.errors import TrackingError


@pytest.mark.parametrize("path", ["a", "model/flow.pt", "a b/c-d_e.f", "x/" * 10 + "y"])
def test_clean_paths_pass(path):
    assert clean_artifact_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a\\b", "a/", "a\x00b", "x" * 1025],
)
def test_dangerous_paths_are_refused(path):
    with pytest.raises(TrackingError) as err:
        clean_artifact_path(path)
    assert err.value.code == "INVALID_PARAMETER_VALUE"


def test_blob_is_hashed_deduplicated_and_verified(tmp_path):
    store = BlobStore(tmp_path, max_size=100)
    data = b"flow weights"
    digest = hashlib.sha256(data).hexdigest()
    w = store.writer()
    w.write(data[:4])
    w.write(data[4:])
    assert w.commit(digest) == digest
    assert store.path(digest).read_bytes() == data
    again = store.writer()
    again.write(data)
    assert again.commit() == digest  # stored once
    assert list((tmp_path / "tmp").iterdir()) == []
    bad = store.writer()
    bad.write(b"other")
    with pytest.raises(TrackingError, match="corrupt"):
        bad.commit(digest)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_oversize_blob_is_refused_and_nothing_left(tmp_path):
    store = BlobStore(tmp_path, max_size=10)
    w = store.writer()
    w.write(b"12345")
    with pytest.raises(TrackingError) as err:
        w.write(b"678901")
    assert err.value.code == "RESOURCE_LIMIT_EXCEEDED"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_blob_names_must_be_digests(tmp_path):
    with pytest.raises(TrackingError):
        BlobStore(tmp_path).path("../../etc/passwd")
