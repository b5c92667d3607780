"""Reader for NetHack's ``dlb`` archives (``nhdat``) and its text obfuscation.

Written from inspection of the Debian ``nhdat`` file so the build needs no
``dlb`` binary. Layout: a header line ``VERSION NFILES DIRSIZE DATASTART TOTAL``
followed by NFILES lines ``<flag><name> <offset>`` (flag ``n`` = stored
uncompressed); each member runs from its offset to the next member's offset
(the last to TOTAL). The first member, ``Directory``, is the header itself.

Text members (rumors, oracles, quest.dat strings, ...) are lightly obfuscated:
each byte that has bit 5 or 6 set is XORed with a rotating mask 1,2,4,8,16
(the mask advances on every byte, and restarts on every line).
"""

from __future__ import annotations

from pathlib import Path


class DlbError(ValueError):
    """The bytes do not look like a dlb archive."""


def read_dlb(data: bytes) -> dict[str, bytes]:
    """Parse a whole dlb archive into ``{member name: bytes}``."""
    try:
        header, rest = data.split(b"\n", 1)
        fields = header.split()
        nfiles, total = int(fields[1]), int(fields[4])
    except (ValueError, IndexError) as e:
        raise DlbError(f"bad dlb header: {data[:60]!r}") from e
    dir_lines = rest.split(b"\n", nfiles)[:nfiles]
    entries: list[tuple[str, int]] = []
    for raw in dir_lines:
        name, offset = raw[1:].rsplit(None, 1)
        entries.append((name.strip().decode("latin-1"), int(offset)))
    bounds = [off for _, off in entries] + [min(total, len(data))]
    return {name: data[bounds[i]:bounds[i + 1]] for i, (name, _) in enumerate(entries)}


def read_dlb_file(path: Path) -> dict[str, bytes]:
    return read_dlb(path.read_bytes())


def write_dlb(members: dict[str, bytes]) -> bytes:
    """Build a dlb archive (used by tests to exercise the reader)."""
    names = ["Directory", *members]
    # The directory size depends on the offsets' width; iterate until stable.
    width = 1
    while True:
        lines = [f"n{n} {0:>{width}}" for n in names]
        dir_size = sum(len(x) + 1 for x in lines)
        header_guess = f"{1:3} {len(names):8} {dir_size:8} {0:8} {0:8}\n"
        start = len(header_guess) + dir_size
        total = start + sum(len(v) for v in members.values())
        if len(str(total)) <= width:
            break
        width += 1
    offsets, pos = [0], start
    for v in members.values():
        offsets.append(pos)
        pos += len(v)
    header = f"{1:3} {len(names):8} {dir_size:8} {start:8} {total:8}\n".encode()
    body = "".join(f"n{n} {o:>{width}}\n" for n, o in zip(names, offsets)).encode()
    assert len(header) + len(body) == start
    return header + body + b"".join(members.values())


def xcrypt(line: bytes) -> bytes:
    """Undo (or apply: it is an involution) the per-line XOR obfuscation."""
    out = bytearray()
    mask = 1
    for c in line:
        if c & 0x60:
            c ^= mask
        out.append(c)
        mask <<= 1
        if mask >= 32:
            mask = 1
    return bytes(out)


def decode_lines(data: bytes) -> list[str]:
    """Split an obfuscated text member into decoded lines."""
    return [xcrypt(x).decode("latin-1") for x in data.split(b"\n")]
