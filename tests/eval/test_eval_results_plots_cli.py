"""Results files (CompressAI schema), reference curves, RD plots and the eval commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from skimage.data import astronaut

import jaxlic.cli
from jaxlic.cli import main
from jaxlic.errors import DataError
from jaxlic.eval.codecs import sweep
from jaxlic.eval.plots import plot_rd
from jaxlic.eval.reference_curves import reference_curve, reference_curves, reference_names
from jaxlic.eval.results import curve, load_results, make_record, save_results, validate_results
from jaxlic.images import write_image

GOOD = {"name": "x", "description": "d", "results": {"bpp": [0.1, 0.2], "psnr-rgb": [30.0, 32.0]}}


def test_make_record_has_compressai_keys() -> None:
    image = astronaut()[:176, :176]
    record = make_record("JPEG", "test", sweep("jpeg", [("a", image)], [30, 60], progress=False), [30, 60])
    assert set(record) == {"name", "description", "results"}
    assert set(record["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time", "quality"}
    assert record["results"]["quality"] == [30.0, 60.0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("name"), "name"),
        (lambda r: r["results"].pop("bpp"), "bpp"),
        (lambda r: r["results"].pop("psnr-rgb"), "none of"),
        (lambda r: r["results"].update({"psnr-rgb": [30.0]}), "same"),
        (lambda r: r["results"].update({"psnr-rgb": [30.0, float("nan")]}), "numbers"),
        (lambda r: r["results"].update({"bpp": [-1.0, 0.2]}), ">= 0"),
        (lambda r: r.update({"description": 3}), "description"),
    ],
)
def test_schema_rejects(mutate: object, message: str) -> None:
    record = json.loads(json.dumps(GOOD))
    mutate(record)
    with pytest.raises(DataError, match=message):
        validate_results(record)


def test_save_load_round_trip_and_bad_files(tmp_path: Path) -> None:
    save_results(tmp_path / "one.json", GOOD)
    assert json.loads((tmp_path / "one.json").read_text()) == GOOD  # a single record, as CompressAI writes
    assert load_results(tmp_path / "one.json") == [GOOD]
    save_results(tmp_path / "two.json", [GOOD, GOOD])
    assert load_results(tmp_path / "two.json") == [GOOD, GOOD]
    with pytest.raises(DataError):
        save_results(tmp_path / "bad.json", {"name": "x"})
    assert not (tmp_path / "bad.json").exists()
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        load_results(tmp_path / "broken.json")
    with pytest.raises(DataError, match="cannot read"):
        load_results(tmp_path / "missing.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json", "one.json", "two.json"]


def test_reference_curves() -> None:
    assert reference_names() == ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "JPEG", "BPG", "VTM", "LALIC", "ELIC"]
    for record in reference_curves():
        bpp, quality = curve(record)
        assert len(bpp) in (6, 8, 19) and bpp == sorted(bpp) and quality == sorted(quality)
    jpeg = reference_curve("jpeg")
    jpeg["results"]["bpp"].clear()  # copies: the stored curves cannot be changed by callers
    assert len(reference_curve("JPEG")["results"]["bpp"]) == 19
    with pytest.raises(DataError, match="available"):
        reference_curve("h266")
    with pytest.raises(DataError, match="ms-ssim-rgb"):
        curve(reference_curve("VTM"), "ms-ssim-rgb")


def test_plot_writes_png(tmp_path: Path) -> None:
    other = {"name": "y", "description": "", "results": {"bpp": [0.2, 0.5], "psnr-rgb": [29.0, 33.0], "ms-ssim-rgb": [0.95, 0.98]}}
    with pytest.warns(UserWarning, match="has no ms-ssim-rgb") as caught:
        plot_rd([GOOD, other], tmp_path / "rd.png", metrics=("psnr-rgb", "ms-ssim-rgb"), references=[reference_curve("JPEG")])
    assert sorted(str(w.message).split()[0] for w in caught) == ["JPEG", "x"]
    with Image.open(tmp_path / "rd.png") as png:
        assert png.format == "PNG" and png.width > png.height
    with pytest.raises(DataError):
        plot_rd([], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_cli_bench_bdrate_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Only this command group: the test must not depend on the other groups registering cleanly.
    monkeypatch.setattr(jaxlic.cli, "COMMAND_MODULES", ("jaxlic.cli.eval_cmds",))
    write_image(tmp_path / "data" / "a.png", astronaut()[:176, :192])
    write_image(tmp_path / "data" / "sub" / "b.png", astronaut()[200:376, 250:442])
    out = tmp_path / "r.json"
    args = ["bench-codecs", "--data", str(tmp_path / "data"), "--codec", "jpeg", "--codec", "webp", "--quality", "20", "40", "60", "80"]
    assert main([*args, "--out", str(out), "--plot", str(tmp_path / "rd.png")]) == 0
    records = load_results(out)
    assert [r["name"] for r in records] == ["JPEG", "WEBP"] and (tmp_path / "rd.png").is_file()
    assert main(["bdrate", str(out)]) == 0
    assert "WEBP: BD-rate" in capsys.readouterr().out
    assert main(["plot", str(out), "ref:JPEG", "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").is_file()
    assert main(["bdrate", "ref:JPEG", "ref:VTM", "--method", "cubic"]) == 0
    assert main(["bdrate", str(out), "ref:nope"]) == 2
    assert main(["bench-codecs", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
