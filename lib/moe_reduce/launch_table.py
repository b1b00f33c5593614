"""variant="auto": which kernel variant and threadgroup size to launch for a shape, from a table measured on
the GPU host (`python -m moe_reduce tune`, shipped as launch_table.json beside this file), with a stated
rule where the table has no entry. `python -m moe_reduce.launch_table TUNED.json` puts the cards of a table that
`tune` wrote into the shipped one (other cards kept)."""
from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TABLE_FILE = "launch_table.json"
DEFAULT_THREADS = 256  # threadgroup size when a variant is named and no size is given
RULE = ("vec_k", 256)  # no card measured on this backend (host, Metal): 16-byte rows, top_k unrolled


@dataclass(frozen=True)
class Choice:
    """A launch choice and where it came from."""

    variant: str
    threads: int
    source: str  # "table: <card> <dtype> n_tokens=.. h=.. top_k=.." or "rule: ..."


@functools.cache
def load_table() -> dict:
    """The shipped table: {"cards": {card: [entry, ...]}, ...}; an empty one if the file is absent."""
    path = resources.files("moe_reduce") / TABLE_FILE
    return json.loads(path.read_text()) if path.is_file() else {"cards": {}}


def card_of(backend: str, device: str | None, table: dict) -> tuple[str | None, str]:
    """The table's card for a device: the one whose name occurs in the device's name, else the first card
    measured on the same backend (a GPU of the same kind stands in for one not measured), else None; and a
    note saying which rule matched."""
    names = sorted(table["cards"], key=len, reverse=True)
    exact = next((c for c in names if device and c in device), None)
    if exact:
        return exact, exact
    same = next((c for c in table["cards"] if table.get("backend", {}).get(c) == backend), None)
    return same, f"{same} (nearest measured card)"


def distance(entry: dict, n_tokens: int, h: int, top_k: int) -> tuple[float, float, float]:
    """How far an entry's shape is from the asked one: top_k first, then h, then n_tokens (log2 steps)."""
    return (abs(entry["top_k"] - top_k), abs(math.log2(entry["h"] / h)), abs(math.log2(entry["n_tokens"] / n_tokens)))


def choose(backend: str, device: str | None, dtype: str, n_tokens: int, h: int, top_k: int,
           table: dict | None = None) -> Choice:
    """The table's entry nearest to this shape on this card and dtype (GPU backends), else the rule."""
    table = load_table() if table is None else table
    card, note = card_of(backend, device, table)
    entries = [e for e in table["cards"].get(card, []) if e["dtype"] == dtype]
    if not entries:
        return Choice(*RULE, f"rule: {RULE[0]} with {RULE[1]} threads (no card measured on {backend}"
                             f"{' for ' + dtype if card else ''})")
    e = min(entries, key=lambda e: distance(e, n_tokens, h, top_k))
    return Choice(e["variant"], e["threads"],
                  f"table: {note} {dtype} n_tokens={e['n_tokens']} h={e['h']} top_k={e['top_k']}")


def merged(shipped: dict, tuned: dict) -> dict:
    """The shipped table with each card of the tuned one put in or replaced (entries, source, backend)."""
    return {**shipped, **{key: {**shipped.get(key, {}), **tuned.get(key, {})} for key in ("cards", "source", "backend")}}


def install(tuned_file: Path) -> Path:
    """Merge a tuned table file into the shipped launch_table.json (in a checkout); return its path."""
    shipped = Path(__file__).with_name(TABLE_FILE)
    table = merged(json.loads(shipped.read_text()) if shipped.is_file() else {"cards": {}},
                   json.loads(tuned_file.read_text()))
    shipped.write_text(json.dumps(table, indent=1) + "\n")
    load_table.cache_clear()
    return shipped


def main(argv: list[str]) -> None:
    """`python -m moe_reduce.launch_table TUNED.json`: install, and say where."""
    if len(argv) != 1:
        sys.exit("usage: python -m moe_reduce.launch_table TUNED.json (a launch_table.json written by `tune`)")
    print(f"installed the cards of {argv[0]} in {install(Path(argv[0]))}")


if __name__ == "__main__":
    main(sys.argv[1:])
