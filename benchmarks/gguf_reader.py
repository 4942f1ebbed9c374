"""Reading a GGUF's header: ``gguf.GGUFReader`` against ``gemma_panel.models.gguf_reader``.

    python benchmarks/gguf_reader.py [PATH.gguf]   # default: the bundled Gemma 3 270M

Prints the seconds each takes to read the file's fields and tensor list (the 270M's
262,144-piece vocabulary is most of it) and the ratio, measured one after the other in this
process, and checks the two agree on every field's contents.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    import gguf

    from gemma_panel.models.gguf_reader import read_gguf

    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        from gemma_panel.models.loader import bundled_gguf_path

        path = str(bundled_gguf_path())
    started = time.perf_counter()
    theirs = gguf.GGUFReader(path)
    theirs_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = read_gguf(path)
    ours_s = time.perf_counter() - started
    same = all(ours.fields[k].contents() == f.contents() for k, f in theirs.fields.items())
    print(f"{path}: {len(theirs.fields)} fields, {len(theirs.tensors)} tensors")
    print(f"  gguf.GGUFReader  {theirs_s:8.2f} s")
    print(f"  read_gguf        {ours_s:8.2f} s   ({theirs_s / ours_s:.0f}x; same contents: {same})")


if __name__ == "__main__":
    main()
