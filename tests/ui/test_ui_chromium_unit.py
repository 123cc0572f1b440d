"""How the browser tests find Chromium: ``$SAGE_CHROMIUM``, else the usual names on PATH; with none, they fail and
say how to install it (a skip would let a run without a browser pass for one with it)."""

from __future__ import annotations

import pytest


def executable(path):
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_no_chromium_fails_and_says_how_to_install_it(chromium_lookup, monkeypatch, tmp_path):
    monkeypatch.delenv("SAGE_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception) as failed:
        chromium_lookup()
    assert "apt-get install chromium" in str(failed.value)
    assert "bash scripts/setup.sh --test" in str(failed.value)


def test_a_bad_sage_chromium_fails(chromium_lookup, monkeypatch, tmp_path):
    monkeypatch.setenv("SAGE_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(pytest.fail.Exception, match="SAGE_CHROMIUM=.*no-such-chromium.* is not an executable"):
        chromium_lookup()


def test_chromium_is_found_by_its_usual_names_or_sage_chromium(chromium_lookup, monkeypatch, tmp_path):
    monkeypatch.delenv("SAGE_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    browser = executable(tmp_path / "chromium-browser")
    assert chromium_lookup() == str(browser)
    chrome = executable(tmp_path / "google-chrome")
    assert chromium_lookup() == str(browser)  # chromium-browser comes before google-chrome
    monkeypatch.setenv("SAGE_CHROMIUM", str(chrome))
    assert chromium_lookup() == str(chrome)
