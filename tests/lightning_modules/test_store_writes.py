"""Pointers and manifests in a local store are replaced whole: a reader never sees a part."""
from __future__ import annotations

import os
import threading

from lightning_modules.store import read_json, write_json


def test_a_reader_never_sees_a_half_written_json(tmp_path):
    url = str(tmp_path / "runs" / "latest.json")
    big = {"runs": [f"run-{i:06d}" for i in range(20_000)]}
    write_json(url, big)
    stop, bad = threading.Event(), []

    def reader() -> None:
        while not stop.is_set():
            try:
                got = read_json(url)
                if got is None or len(got["runs"]) != 20_000:
                    bad.append("short")
            except Exception as e:  # a cut JSON raises DataError
                bad.append(str(e)[:80])

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(60):
            write_json(url, {"runs": big["runs"][i:] + big["runs"][:i]})
    finally:
        stop.set()
        t.join()
    assert not bad, bad[:3]
    assert os.listdir(tmp_path / "runs") == ["latest.json"]  # no temporary file left behind
