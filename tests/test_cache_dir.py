"""One rule for the user cache folder, shared by the baselines' builds and the SAE weights."""

from pathlib import Path

from prismflow.baselines._cache import default_cache_dir
from prismflow.cache import user_cache_dir


def test_one_rule_for_every_cache(monkeypatch, tmp_path):
    from prismflow.remidi.reconstruction.sae import sae_cache_dir

    monkeypatch.delenv("PRISMFLOW_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "prismflow"
    assert Path(default_cache_dir("force")) == tmp_path / "xdg" / "prismflow" / "force"
    assert sae_cache_dir() == user_cache_dir()
    monkeypatch.setenv("PRISMFLOW_CACHE", str(tmp_path / "mine"))
    assert Path(default_cache_dir("odffp")) == tmp_path / "mine" / "odffp"
    assert sae_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("PRISMFLOW_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert user_cache_dir("x") == tmp_path / "home" / ".cache" / "prismflow" / "x"
