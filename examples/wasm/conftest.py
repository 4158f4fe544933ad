import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Node  # noqa: E402


@pytest.fixture
def fresh_node(tmp_path):
    """A new node process with an empty data dir, killed after the test."""
    node = Node(tmp_path / "data", tmp_path / "node.log").start()
    try:
        yield node
    finally:
        node.kill9()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node process shared by a module's tests."""
    d = tmp_path_factory.mktemp("node")
    node = Node(d / "data", d / "node.log").start()
    try:
        yield node
    finally:
        node.kill9()
