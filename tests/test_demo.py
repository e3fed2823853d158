"""The README's main job: its data choice does not depend on the working directory, and the
whole demo runs on the built-in images, with the shipped models and from scratch (slow: it
trains and builds VTA bundles)."""

from pathlib import Path

import pytest

from jaxlic.demo import HELD_OUT, REFERENCE_MODEL, REPOSITORY, demo_data, run_demo

SHARED = REPOSITORY.parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "kodak").is_dir(), reason="../shared/data is not beside the repository")
def test_shared_data_is_found_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXLIC_SHARED_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    folders, images, where = demo_data(2)
    assert folders == (str(SHARED / "train"),) and len(images) == 2 and where.startswith("Kodak")


def test_built_in_images_without_shared_data(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLIC_SHARED_DATA", str(tmp_path / "missing"))
    folders, images, where = demo_data(2)
    assert folders == () and sorted(name for name, _ in images) == sorted(HELD_OUT) and "scikit-image" in where


@pytest.mark.slow
def test_demo_runs_end_to_end_on_built_in_images(tmp_path, monkeypatch):
    """The default path: shipped models against JPEG, a short fine-tune, the shipped integer model
    deployed through VTA bundles."""
    monkeypatch.setenv("JAXLIC_SHARED_DATA", str(tmp_path / "missing"))
    summary = run_demo(tmp_path / "demo", steps=5, progress=False)
    shipped = [p for p in summary["points"] if p["model"] == f"jaxlic {REFERENCE_MODEL}"]
    assert summary["images"] == "scikit-image held-out photos" and len(shipped) >= 4
    assert summary["bd_rate_vs_jpeg"] < 0 and all(p["gain_db"] > 0 for p in shipped)
    assert summary["deploy"]["identical"] == summary["deploy"]["images"] == len(HELD_OUT)
    assert (tmp_path / "demo" / "rd.png").is_file() and (tmp_path / "demo" / "fine-tune" / "model.jxlm").is_file()


@pytest.mark.slow
def test_demo_from_scratch_trains_quantizes_and_deploys(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLIC_SHARED_DATA", str(tmp_path / "missing"))
    summary = run_demo(tmp_path / "demo", steps=20, progress=False, from_scratch=True)
    assert summary["images"] == "scikit-image held-out photos" and summary["points"][0]["bpp"] > 0
    assert summary["deploy"]["identical"] == summary["deploy"]["images"] == len(HELD_OUT)
    assert (tmp_path / "demo" / "rd.png").is_file() and Path(summary["deploy"]["integer_package"]).is_file()
