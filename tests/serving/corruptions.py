"""Ways a router folder can be damaged, for the reload tests and ``benchmarks/reliability.py``.

Each corruption takes a copy of a good router folder and damages it in place. Most remove
``manifest.json`` first so that the damage reaches the loader, the native code and the smoke routing
(with the manifest, checksums catch them first); ``with_manifest`` ones keep it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Corruption:
    name: str
    damage: Callable[[Path], None]
    with_manifest: bool = False

    def apply(self, folder: Path) -> None:
        if not self.with_manifest:
            (folder / "manifest.json").unlink(missing_ok=True)
        self.damage(folder)


def _meta(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads((folder / "router.json").read_text())
    change(meta)
    (folder / "router.json").write_text(json.dumps(meta))


def _json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _tear_middle(path: Path) -> None:
    """Keep the first half and the last 3,000 bytes: the closing sections are there, the trees are not whole."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-3000:])


def _booster(folder: Path) -> Path:
    return sorted(folder.glob("quality_lightgbm_*.txt"))[0]


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2
    data[i] = ord("7") if data[i] != ord("7") else ord("3")
    path.write_bytes(bytes(data))


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.__setitem__(key, value)


def _dir_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("lightgbm_truncated_half", lambda f: _truncate(_booster(f), 0.5)),
    Corruption("lightgbm_truncated_tail", lambda f: _truncate(_booster(f), 0.97)),
    Corruption("lightgbm_torn_middle", lambda f: _tear_middle(_booster(f))),
    Corruption("lightgbm_empty", lambda f: _booster(f).write_bytes(b"")),
    Corruption("lightgbm_missing", lambda f: _booster(f).unlink()),
    Corruption("lightgbm_garbage", lambda f: _booster(f).write_bytes(bytes(range(256)) * 64)),
    Corruption("router_json_missing", lambda f: (f / "router.json").unlink()),
    Corruption("router_json_truncated", lambda f: _truncate(f / "router.json", 0.5)),
    Corruption("router_json_a_directory", lambda f: _dir_instead(f / "router.json")),
    Corruption("models_a_string", lambda f: _meta(f, _set("models", "x"))),
    Corruption("one_model_removed", lambda f: _meta(f, lambda m: m.__setitem__("models", m["models"][:-1]))),
    Corruption("models_duplicated", lambda f: _meta(f, lambda m: m.__setitem__("models", m["models"][:1] * len(m["models"])))),
    Corruption("default_rule_bogus", lambda f: _meta(f, _set("default_rule", "bogus"))),
    Corruption("cost_model_nan", lambda f: _meta(f, lambda m: m["cost_model"]["per_token"].__setitem__(0, float("nan")))),
    Corruption("knob_tables_empty", lambda f: _meta(f, _set("knob_tables", {}))),
    Corruption("embedder_fingerprint_changed", lambda f: _meta(f, lambda m: m["embedder"].__setitem__("fingerprint", "0" * 16))),
    Corruption("version_missing", lambda f: _meta(f, lambda m: m.pop("version"))),
    Corruption("quality_json_missing", lambda f: (f / "quality.json").unlink()),
    Corruption("quality_more_bags_than_files", lambda f: _json(f / "quality.json", lambda q: q["params"].__setitem__("bags", q["params"]["bags"] + 1))),
    Corruption("quality_calibrators_garbage", lambda f: _json(f / "quality.json", _set("calibrators", [{"kind": "x"}]))),
    Corruption("arrays_truncated", lambda f: _truncate(f / "quality_arrays.npz", 0.5)),
    Corruption("arrays_missing", lambda f: (f / "quality_arrays.npz").unlink()),
    Corruption("catalog_invalid_yaml", lambda f: (f / "catalog_snapshot.yaml").write_text("models: [unclosed\n  - : :")),
    Corruption("catalog_unknown_field", lambda f: (f / "catalog_snapshot.yaml").write_text(
        "\n".join(f"{m}:\n  not_a_field: 1" for m in json.loads((f / "router.json").read_text())["models"]) + "\n")),
    Corruption("checksum_mismatch_flipped_byte", lambda f: _flip_byte(_booster(f)), with_manifest=True),
    Corruption("checksum_file_missing", lambda f: (f / "quality.json").unlink(), with_manifest=True),
    Corruption("checksum_lightgbm_truncated", lambda f: _truncate(_booster(f), 0.5), with_manifest=True),
)


def damaged_copy(good: Path, corruption: Corruption, into: Path) -> Path:
    """A copy of ``good`` at ``into`` damaged by ``corruption`` (``into`` is replaced)."""
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(good, into)
    corruption.apply(into)
    return into
