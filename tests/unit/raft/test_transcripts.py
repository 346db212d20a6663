"""Runs every tests/unit/raft/testdata/*.txt transcript (see transcript.py).
Set KVCORE_REWRITE=1 to regenerate the expected outputs."""
import os
import pathlib

import pytest

from .transcript import Env, parse, render, run_command

DATA = pathlib.Path(__file__).parent / "testdata"
FILES = sorted(DATA.glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_transcript(path):
    blocks = parse(path.read_text())
    env = Env()
    got = [(cm, cmd, run_command(env, cmd)) for cm, cmd, _ in blocks]
    if os.environ.get("KVCORE_REWRITE"):
        path.write_text(render(got))
        return
    for (_, cmd, want), (_, _, have) in zip(blocks, got):
        assert have == want, f"{path.name}: {cmd}\n--- want\n{want}\n--- got\n{have}"
