"""`npc-brain eval ...`: one entry point for the evaluations.

    npc-brain eval lines  [--bundle DIR] [--compare DIR] ...   character fidelity (npc_brain.eval_lines)
    npc-brain eval vision ...                                  scene reading (npc_brain.eval_vision)
    npc-brain eval scene  [--bundle DIR]                       screenshot -> line, end to end (npc_brain.eval_scene)
"""

from __future__ import annotations

import sys

USAGE = "usage: npc-brain eval {lines,vision,scene} [options]   (npc-brain eval lines --help)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    what, rest = argv[0], argv[1:]
    if what == "lines":
        from npc_brain import eval_lines

        return int(eval_lines.main(rest) or 0)
    if what == "scene":
        from npc_brain import eval_scene

        return int(eval_scene.main(rest) or 0)
    if what == "vision":
        from npc_brain import eval_vision

        return int(eval_vision.main(rest) or 0)
    print(f"error: unknown evaluation {what!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
