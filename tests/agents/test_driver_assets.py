"""The driver serves its model folders and offline defaults to Ray actors whose disk lacks them
(nodes without a shared filesystem): a real asset server and a real actor whose working folder
and cache are empty."""

import os

import ray

from agents.core.assets import serve_assets
from rlhf_env.data.tiny import tiny_model


def test_an_actor_receives_a_folder_and_an_asset_it_lacks(tmp_path, monkeypatch, ray_session):
    driver_dir = tmp_path / "driver"
    tiny_model().save_pretrained(driver_dir / "policy")
    monkeypatch.chdir(driver_dir)  # "./policy" exists only in the driver's working folder
    server = serve_assets()
    node_dir = tmp_path / "node"
    (node_dir / "cache").mkdir(parents=True)

    @ray.remote(num_cpus=0)
    class Node:
        def __init__(self, folder: str):
            os.chdir(folder)  # a node's own disk: no ./policy, an empty cache
            os.environ["RLHF_ENV_CACHE"] = os.path.join(folder, "cache")

        def load(self) -> tuple[str, str, int]:
            from agents.core.assets import receive_assets_from_driver
            from rlhf_env.data.assets import asset_path
            from rlhf_env.data.models import load_causal_lm, resolve_model_path

            receive_assets_from_driver()
            path = resolve_model_path("./policy")
            model = load_causal_lm(path)
            return path, str(asset_path("fortunes")), model.config.vocab_size

    path, fortunes, vocab = ray.get(Node.remote(str(node_dir)).load.remote())
    assert path.startswith(str(node_dir / "cache" / "received"))
    assert vocab == tiny_model().config.vocab_size
    assert fortunes == str(node_dir / "cache" / "data" / "fortunes.txt")
    assert (node_dir / "cache" / "data" / "fortunes.txt.complete").is_file()
    del server
