#!/usr/bin/env python3
"""Generates N valid product files for the validate benchmark.

Each file is one of the example products with a unique name and a few varied values, so the
benchmark reads realistic files (YAML, schema, SQL, cron and naming checks all run).

Usage: scripts/gen_products.py OUT_DIR [N=1000]
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "products").glob("*.yaml"))


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    out.mkdir(parents=True, exist_ok=True)
    texts = [(t.stem, t.read_text()) for t in TEMPLATES]
    for i in range(count):
        stem, text = texts[i % len(texts)]
        name = f"{stem}_{i:05d}"
        text = text.replace(f"name: {stem}", f"name: {name}", 1)
        text = text.replace("retries: 2", f"retries: {i % 5}", 1)
        folder = out / f"team_{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.yaml").write_text(text)
    print(f"wrote {count} products to {out}")


if __name__ == "__main__":
    main()
