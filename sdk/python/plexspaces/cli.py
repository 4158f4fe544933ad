"""``plexspaces-py build actor.py -o actor.wasm``: a Python actor into a WebAssembly component.

Runs componentize-py (offline: it bundles its own CPython build) against the WIT world
``plexspaces:actor/actor`` shipped inside this package (or ``--wit DIR``). The actor module is
imported once on the build machine first, so a missing ``@actor`` or ``@handler`` is reported
before the slow componentize step.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import _actor

PACKAGE_DIR = Path(__file__).resolve().parent
WIT_DIR = PACKAGE_DIR / "wit"
ENTRY_MODULE = "plexspaces_guest_entry"
_RESERVED = {"plexspaces", "wit_world", "componentize_py_types", ENTRY_MODULE}


class BuildError(Exception):
    pass


def check_actor_module(source: Path) -> _actor.ActorSpec:
    """Imports the actor module on this machine; returns its one ``@actor`` class."""
    before = len(_actor._REGISTRY)
    sys.path.insert(0, str(source.parent))
    try:
        importlib.import_module(source.stem)
    except Exception as e:
        raise BuildError(f"{source}: importing it failed: {type(e).__name__}: {e}") from None
    finally:
        sys.path.remove(str(source.parent))
    found = _actor._REGISTRY[before:]
    if len(found) != 1:
        names = ", ".join(s.cls.__name__ for s in found) or "none"
        raise BuildError(f"{source}: a component holds exactly one @actor class; found: {names}")
    return found[0]


def build(source: Path, output: Path, wit: Path = WIT_DIR, quiet: bool = False) -> _actor.ActorSpec:
    source = source.resolve()
    if source.suffix != ".py" or not source.is_file():
        raise BuildError(f"{source}: not a Python file")
    module = source.stem
    if not module.isidentifier() or module in _RESERVED:
        raise BuildError(f"{source}: the file name must be a Python module name other than {sorted(_RESERVED)}")
    if not (wit / "actor.wit").is_file():
        raise BuildError(f"{wit}: no actor.wit")
    spec = check_actor_module(source)
    with tempfile.TemporaryDirectory(prefix="plexspaces-py-") as tmp:
        tmpdir = Path(tmp)
        # Only the SDK's sources go in (not the site-packages it may be installed in).
        shutil.copytree(
            PACKAGE_DIR, tmpdir / "plexspaces", ignore=shutil.ignore_patterns("__pycache__", "wit", "cli.py")
        )
        (tmpdir / f"{ENTRY_MODULE}.py").write_text(
            f"import {module}  # noqa: F401  (registers the @actor class)\n"
            "from plexspaces._guest import WitWorld  # noqa: F401\n"
        )
        cmd = [
            sys.executable,
            "-c",
            "import sys, componentize_py; sys.argv[0] = 'componentize-py'; componentize_py.script()",
            "--wit-path",
            str(wit),
            "--world",
            "actor",
        ]
        if quiet:
            cmd.append("--quiet")
        cmd += [
            "componentize",
            ENTRY_MODULE,
            "--python-path",
            str(tmpdir),
            "--python-path",
            str(source.parent),
            "--output",
            str(output.resolve()),
        ]
        output.resolve().parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(cmd, cwd=tmpdir)
        if done.returncode != 0:
            raise BuildError(f"componentize-py failed (exit {done.returncode})")
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plexspaces-py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build an actor module into a WebAssembly component")
    b.add_argument("source", type=Path, help="the actor's Python file (one @actor class)")
    b.add_argument("-o", "--output", type=Path, help="the component to write (default: SOURCE with .wasm)")
    b.add_argument("--wit", type=Path, default=WIT_DIR, help="the WIT directory (default: the copy in this package)")
    b.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    output = args.output or args.source.with_suffix(".wasm")
    try:
        spec = build(args.source, output, args.wit, args.quiet)
    except BuildError as e:
        print(f"plexspaces-py: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        handlers = ", ".join(sorted(spec.handlers))
        print(f"built {output} ({spec.cls.__name__}: handlers {handlers}; facets {spec.facets or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
