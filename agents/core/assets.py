"""Models and data on cluster nodes without a shared filesystem: the driver serves them.

The training driver starts one :class:`AssetServer` actor on its own node, which reads the
driver's prepared offline defaults (:mod:`rlhf_env.data.assets`) and local model folders. Every
env runner and learner installs :class:`DriverAssets` as its asset source, so a process whose
node lacks an asset or a folder receives its files through Ray's object store, writes them into
its own cache (whole, atomically) and loads them from there. A node that has them loads them
from its own disk; what neither has is a one-line error naming the host and the command to run.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rlhf_env.data import assets
from rlhf_env.data.errors import MissingAssetError

SERVER = "rlhf_env_asset_server"


@ray.remote(num_cpus=0)
class AssetServer:
    """The driver node's offline defaults and folders, file by file."""

    def __init__(self, base_dir: str):
        self.base_dir = Path(base_dir)

    def host(self) -> str:
        return socket.gethostname()

    def asset_files(self, name: str) -> dict[str, bytes]:
        try:
            return assets.asset_files(name)
        except MissingAssetError:
            return {}

    def folder_files(self, path: str) -> dict[str, bytes]:
        folder = self.base_dir / Path(path).expanduser()  # relative paths: the driver's cwd
        if not folder.is_dir():
            return {}
        return {
            str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
        }


def serve_assets():
    """Start the driver's asset server on this (the driver's) node, once per Ray job; return
    its handle, which the caller must hold for as long as workers may need it (Ray stops an
    actor whose handles are all gone)."""
    node = ray.get_runtime_context().get_node_id()
    server = AssetServer.options(
        name=SERVER,
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    ).remote(os.getcwd())
    ray.get(server.host.remote())  # registered and running before any worker looks for it
    return server


class DriverAssets:
    """The asset source of a Ray worker: the driver's :class:`AssetServer`."""

    def __init__(self, server):
        self.server = server
        self.description = f"the driver on host {ray.get(server.host.remote())}"

    def asset_files(self, name: str) -> dict[str, bytes]:
        return ray.get(self.server.asset_files.remote(name))

    def folder_files(self, path: str) -> dict[str, bytes]:
        return ray.get(self.server.folder_files.remote(path))


def receive_assets_from_driver() -> None:
    """In a Ray actor of a training run (an env runner or learner; never the driver process,
    which reads its own disk): take missing assets from the driver's server."""
    if not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return
    try:
        server = ray.get_actor(SERVER)
    except ValueError:  # no training driver started one (e.g. an algorithm built by hand)
        return
    assets.use_asset_source(DriverAssets(server))
