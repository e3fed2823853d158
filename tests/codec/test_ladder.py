"""Complexity-aware encoding: choices are Lagrangian-optimal under the budget, real bitstreams of
the chosen package decode through the ladder by fingerprint, and bad ladders or budgets are
typed errors."""

import itertools

import numpy as np
import pytest

from jaxlic.cli import main
from jaxlic.codec import decompress
from jaxlic.codec.ladder import Budget, Coded, Rung, build_ladder, choose, code_all, decoder_fps, package_for
from jaxlic.errors import ConfigError, ModelMismatchError
from jaxlic.images import read_image, write_image

from small_packages import ARCHS, smooth_image


@pytest.fixture(scope="module")
def rungs(packages):
    """The factorized and hyperprior packages (each compiles its networks once in this module)."""
    return build_ladder((arch, packages[arch]) for arch in ARCHS[:2])


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(5)
    return [(f"img{i}", smooth_image(rng, 64, 64)) for i in range(2)]


def synthetic(seed=0, kmacs=(1.0, 3.0, 9.0), n=4):
    """Rungs of these kMAC/pixel (no packages: choosing needs none) and random (bpp, MSE) per
    image and rung."""
    rng = np.random.default_rng(seed)
    bpp = rng.uniform(0.1, 1.0, (n, len(kmacs)))
    mse = rng.uniform(5, 100, (n, len(kmacs)))
    coded = Coded([f"i{i}" for i in range(n)], np.full((n, 2), 64), [[b""] * len(kmacs)] * n, bpp, mse)
    return [Rung(f"r{k:g}", None, k) for k in kmacs], coded


def assignments(coded, kmac, distortion="mse"):
    """Every assignment of a rung to each image, with its mean bpp, distortion and kMAC/pixel."""
    for picks in itertools.product(range(len(kmac)), repeat=len(coded.names)):
        rows = (np.arange(len(picks)), list(picks))
        yield np.mean(coded.bpp[rows]), np.mean(getattr(coded, distortion)[rows]), np.mean(kmac[list(picks)])


@pytest.mark.parametrize("seed", range(3))
def test_mean_budget_choice_is_optimal_for_its_complexity(seed):
    rungs, coded = synthetic(seed)
    kmac, lmbda = np.array([r.kmac for r in rungs]), 0.01
    unbounded = choose(coded, rungs, lmbda=lmbda)
    assert unbounded.mu == 0 and unbounded.kmac > 1.0
    budget = (1.0 + unbounded.kmac) / 2
    choice = choose(coded, rungs, Budget(kmac=budget, mean=True), lmbda=lmbda)
    rows = (np.arange(4), choice.rungs)
    cost = np.mean(coded.bpp[rows] + lmbda * coded.mse[rows])
    assert choice.kmac <= budget and choice.mu > 0
    # Everett: no assignment of equal or lower mean complexity has a lower mean bpp + lambda * MSE.
    best = min(b + lmbda * m for b, m, k in assignments(coded, kmac) if k <= choice.kmac + 1e-12)
    assert cost == pytest.approx(best, rel=1e-12)
    with pytest.raises(ConfigError, match="least mean is 1.00 kMAC"):
        choose(coded, rungs, Budget(kmac=0.5, mean=True), lmbda=lmbda)
    capped = choose(coded, rungs, Budget(kmac=3.0), lmbda=lmbda)  # every rung coded, the cap still holds
    assert (kmac[capped.rungs] <= 3.0).all()


def test_target_bpp_is_met_with_least_distortion():
    rungs, coded = synthetic(seed=4)
    kmac = np.array([r.kmac for r in rungs])
    for budget in (Budget(), Budget(kmac=4.0, mean=True)):
        choice = choose(coded, rungs, budget, bpp=0.5)
        psnr = np.mean(coded.psnr[np.arange(4), choice.rungs])
        assert choice.bpp <= 0.5 and 0 < choice.lmbda < 1e6
        best = max(p for b, p, k in assignments(coded, kmac, "psnr")
                   if b <= choice.bpp + 1e-12 and k <= choice.kmac + 1e-12)
        assert psnr == pytest.approx(best, rel=1e-12)
    with pytest.raises(ConfigError, match="below the lowest rate"):
        choose(coded, rungs, bpp=0.01)


def test_per_image_cap_codes_only_what_fits(rungs, images):
    cap = min(r.kmac for r in rungs)
    coded = code_all(rungs, images, Budget(kmac=cap), progress=False)
    fits = np.array([r.kmac <= cap for r in rungs])
    assert np.isnan(coded.bpp[:, ~fits]).all() and not np.isnan(coded.bpp[:, fits]).any()
    choice = choose(coded, rungs, Budget(kmac=cap), lmbda=0.01)
    assert fits[choice.rungs].all()
    with pytest.raises(ConfigError, match=f"the cheapest is {min(rungs, key=lambda r: r.kmac).name}"):
        code_all(rungs, images, Budget(kmac=0.5 * min(r.kmac for r in rungs)), progress=False)


def test_chosen_streams_decode_by_fingerprint(rungs, images):
    coded = code_all(rungs, images, progress=False)
    choice = choose(coded, rungs, lmbda=0.01)
    for i, (_, image) in enumerate(images):
        data = coded.data[i][choice.rungs[i]]
        name, package = package_for([(r.name, r.package) for r in rungs], data)
        assert name == rungs[choice.rungs[i]].name
        decoded = decompress(package, data)
        assert np.mean((decoded.astype(np.float64) - image) ** 2) == coded.mse[i, choice.rungs[i]]
    with pytest.raises(ModelMismatchError, match="not in the ladder"):
        package_for([(rungs[0].name, rungs[0].package)], coded.data[0][1])


def test_bad_ladders_and_budgets(rungs, packages):
    with pytest.raises(ConfigError, match="empty"):
        build_ladder([])
    with pytest.raises(ConfigError, match="same package"):
        build_ladder([("a", rungs[0].package), ("b", rungs[0].package)])
    for bad in (dict(kmac=-1.0), dict(fps=10.0), dict(mean=True)):
        with pytest.raises(ConfigError):
            Budget(**bad)
    with pytest.raises(ConfigError, match="decoder graph"):
        decoder_fps(packages["mbt2018-mean"].config, "zcu104", (64, 64))


def test_fps_budget_uses_the_vta_cycle_model(rungs, images):
    fps = {r.name: decoder_fps(r.package.config, "zcu104", (64, 64)) for r in rungs}
    slow, fast = sorted(fps, key=fps.get)
    assert fps[fast] > fps[slow] > 0
    coded = code_all(rungs, images, Budget(fps=fps[fast], board="zcu104"), progress=False)
    assert [np.isnan(coded.bpp[0, i]) for i in range(2)] == [r.name == slow for r in rungs]
    with pytest.raises(ConfigError, match=f"the cheapest is {fast} at .* {fps[fast]:.2f} fps on zcu104"):
        code_all(rungs, images, Budget(fps=2 * fps[fast], board="zcu104"), progress=False)


def test_cli_round_trip_and_errors(packages, rungs, images, tmp_path, capsys):
    paths = {}
    for arch in ARCHS[:2]:
        paths[arch] = tmp_path / f"{arch}.jxlm"
        packages[arch].save(paths[arch])
    for name, image in images:
        write_image(tmp_path / "in" / f"{name}.png", image)
    ladder = ["--ladder", str(paths["bmshj2018-hyperprior"]), str(paths["bmshj2018-factorized"])]
    factorized = rungs[ARCHS.index("bmshj2018-factorized")]
    assert factorized.kmac < rungs[ARCHS.index("bmshj2018-hyperprior")].kmac
    # The cap admits only the factorized package, so only it is coded (and compiled).
    assert main(["compress", str(tmp_path / "in"), str(tmp_path / "bits"), *ladder, "--bpp", "4",
                 "--budget-kmac", repr(factorized.kmac)]) == 0
    assert f"bmshj2018-factorized.jxlm: {factorized.kmac:.2f} kMAC/pixel, 2 image(s)" in capsys.readouterr().out
    assert main(["decompress", str(tmp_path / "bits"), str(tmp_path / "out"), *ladder]) == 0
    coded = code_all([factorized], images, progress=False)
    for i, (name, image) in enumerate(images):
        decoded = read_image(tmp_path / "out" / f"{name}.png")
        assert (tmp_path / "bits" / f"{name}.jxlc").read_bytes() == coded.data[i][0]
        assert np.mean((decoded.astype(np.float64) - image) ** 2) == coded.mse[i, 0]
    assert main(["decompress", str(tmp_path / "bits"), str(tmp_path / "out2"), "--ladder", ladder[1]]) == 2
    assert "not in the ladder" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "in"), str(tmp_path / "b2"), "--model", ladder[1], "--lambda", "0.01"]) == 2
    assert "options of --ladder" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "in"), str(tmp_path / "b3"), *ladder]) == 2
    assert "needs a target" in capsys.readouterr().err
