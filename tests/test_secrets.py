"""The secret masker: text, streams split across writes, files larger than a chunk, ::add-mask::."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlops import secrets
from mlops.secrets import Masker, MaskingStream, host_secret_names


def test_mask_text_bytes_and_their_escaped_forms() -> None:
    m = Masker()
    assert not m.active and m.mask("s3cr3t-value") == "s3cr3t-value"
    assert m.add("s3cr3t-value") and m.active
    assert m.mask("token=s3cr3t-value; again s3cr3t-value") == "token=***; again ***"
    assert m.mask_bytes(b"x s3cr3t-value y") == b"x *** y"
    m.add('quo"te\\and-more')
    assert m.mask(json.dumps({"error": 'quo"te\\and-more'})) == '{"error": "***"}'
    m.add("line-one-secret\nline-two-secret")
    assert m.mask("only line-two-secret here") == "only *** here"


def test_short_values_are_not_masked() -> None:
    m = Masker()
    assert not m.add("abc") and not m.active
    assert m.mask("abc abc") == "abc abc"
    assert m.add("abcd") and m.mask("abcd") == "***"


def test_longest_overlapping_value_wins() -> None:
    m = Masker()
    m.add("secret")
    m.add("secret-and-more")
    assert m.mask("a secret-and-more b") == "a *** b"


def test_stream_masks_values_split_across_writes() -> None:
    m = Masker()
    m.add("hunter2-password")
    out = io.StringIO()
    stream = MaskingStream(out, m)
    stream.write("user: hunter")  # print() writes in pieces: the value may straddle two writes
    assert out.getvalue() == "user: "
    stream.write("2-password\n")
    stream.write("done hunt")
    stream.flush()  # a held tail that never became a value comes out on flush
    assert out.getvalue() == "user: ***\ndone hunt"
    with pytest.raises(TypeError):
        stream.write(b"bytes")  # type: ignore[arg-type]


def test_mask_file_streams_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_CHUNK", 7)
    m = Masker()
    m.add("0123456789abcdef")
    log = tmp_path / "step.stdout"
    log.write_bytes(b"head 0123456789abcdef mid 0123456789abcdef0123456789abcdef tail 01234")
    assert m.mask_file(log)
    assert log.read_bytes() == b"head *** mid ****** tail 01234"
    clean = tmp_path / "clean.stdout"
    clean.write_bytes(b"nothing to see " * 10)
    assert not m.mask_file(clean) and clean.read_bytes() == b"nothing to see " * 10


def test_host_secret_names() -> None:
    env = {"GITHUB_TOKEN": "ghs_" + "x" * 36, "AWS_SECRET_ACCESS_KEY": "y" * 40, "AWS_SESSION_TOKEN": "z" * 100,
           "MY_API_KEY": "k" * 20, "DB_PASSWORD": "p" * 12, "SIGNING_KEY": "s" * 16,
           "AWS_ACCESS_KEY_ID": "AKIA" + "A" * 16, "PATH": "/usr/bin:/bin", "HOME": "/home/me",
           "KEYBOARD": "us-international", "SHORT_TOKEN": "abc"}
    assert host_secret_names(env) == ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_PASSWORD", "GITHUB_TOKEN",
                                      "MY_API_KEY", "SIGNING_KEY"]


def _child(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    prog = "from mlops import secrets\nsecrets.install()\n" + code
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), **env})


def test_add_mask_is_announced_first_under_github_actions() -> None:
    code = "secrets.register(['percent%-value', 'first-line\\nsecond-line'])\nprint('got percent%-value')\n"
    out = _child(code, {"GITHUB_ACTIONS": "true"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "::add-mask::percent%25-value"
    assert sorted(lines[1:3]) == ["::add-mask::first-line", "::add-mask::second-line"]
    assert lines[3:] == ["got ***"]
    quiet = _child(code, {})
    assert quiet.stdout == "got ***\n"


def test_installed_streams_mask_host_secrets_in_click_print_and_bytes() -> None:
    code = ("import click, os, sys\nv = os.environ['DEPLOY_TOKEN']\n"
            "click.echo(f'echo {v}')\nclick.echo(f'err {v}', err=True)\nprint('print', v, flush=True)\n"
            "sys.stdout.buffer.write(f'bytes {v}\\n'.encode()); sys.stdout.flush()\n")
    out = _child(code, {"DEPLOY_TOKEN": "tok-1234567890"})
    assert out.returncode == 0, out.stderr
    assert out.stdout == "echo ***\nprint ***\nbytes ***\n" and out.stderr == "err ***\n"
