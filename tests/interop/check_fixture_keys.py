#!/usr/bin/env python3
"""Compare the shape of two JSON documents: key sets and value types, recursively.

    check_fixture_keys.py OURS FIXTURE

Values are not compared, only their JSON types (null, bool, int, float,
string, array, object; an integer is never accepted where the fixture has a
float or the other way round). Objects must have exactly the same keys.
Arrays: every element of ours must have the shape of the fixture's first
element; an empty array on either side only checks the type.

A file ending in .jsonl holds one document per line; then every line of OURS
must match at least one line of FIXTURE (the fixture's lines are the set of
allowed shapes, e.g. a request with a string payload and a reply with null).

Exit status 0 when the shapes agree, 1 with one line per difference when they
do not, 2 on usage or parse errors.
"""

import json
import sys


def type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not a JSON value: {value!r}")


def compare(ours, fixture, path="$"):
    """Return a list of human-readable differences (empty when equal in shape)."""
    t_ours, t_fix = type_name(ours), type_name(fixture)
    if t_ours != t_fix:
        return [f"{path}: type {t_ours} (ours) != {t_fix} (fixture)"]
    diffs = []
    if t_ours == "object":
        for key in sorted(fixture.keys() - ours.keys()):
            diffs.append(f"{path}.{key}: missing in ours")
        for key in sorted(ours.keys() - fixture.keys()):
            diffs.append(f"{path}.{key}: not in fixture")
        for key in sorted(ours.keys() & fixture.keys()):
            diffs.extend(compare(ours[key], fixture[key], f"{path}.{key}"))
    elif t_ours == "array" and ours and fixture:
        for i, item in enumerate(ours):
            diffs.extend(compare(item, fixture[0], f"{path}[{i}]"))
    return diffs


def load(path):
    with open(path, encoding="utf-8") as f:
        if path.endswith(".jsonl"):
            return [json.loads(line) for line in f if line.strip()]
        return json.load(f)


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    ours_path, fixture_path = argv[1], argv[2]
    try:
        ours, fixture = load(ours_path), load(fixture_path)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    jsonl = ours_path.endswith(".jsonl") or fixture_path.endswith(".jsonl")
    diffs = []
    if jsonl:
        ours_docs = ours if ours_path.endswith(".jsonl") else [ours]
        fixture_docs = fixture if fixture_path.endswith(".jsonl") else [fixture]
        for n, doc in enumerate(ours_docs, 1):
            attempts = [compare(doc, fx) for fx in fixture_docs]
            if all(attempts):
                best = min(attempts, key=len)
                diffs.extend(f"line {n}: {d}" for d in best)
        count = f"{len(ours_docs)} document(s)"
    else:
        diffs = compare(ours, fixture)
        count = "1 document"

    if diffs:
        for d in diffs:
            print(d)
        print(f"FAIL: {ours_path} differs in shape from {fixture_path}", file=sys.stderr)
        return 1
    print(f"OK: {ours_path} has the shape of {fixture_path} ({count})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
