"""Download and unpack the source packages, with a cache.

Debian: ``apt-get download`` into ``debs/`` then ``dpkg-deb -x`` into
``raw/PKG/``; a ``raw/PKG/.extracted`` stamp holds the .deb's sha256 so a
rebuild skips both steps when nothing changed. PyPI: ``pip download --no-deps``
(the wheel is a zip, read in place).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_deb(debs: Path, pkg: str) -> Path | None:
    found = sorted(debs.glob(f"{pkg}_*.deb"))
    return found[-1] if found else None


def apt_download(pkg: str, debs: Path, force: bool = False) -> Path:
    """Fetch PKG's .deb into ``debs`` (runs ``apt-get update`` once if apt does
    not know the package yet). Returns the .deb path."""
    debs.mkdir(parents=True, exist_ok=True)
    deb = _find_deb(debs, pkg)
    if deb is not None and not force:
        return deb
    cmd = ["apt-get", "download", pkg]
    res = subprocess.run(cmd, cwd=debs, capture_output=True, text=True)
    if res.returncode != 0:
        log.info("apt-get download %s failed (%s); running apt-get update", pkg, res.stderr.strip()[-200:])
        subprocess.run(["apt-get", "update"], capture_output=True, text=True, check=False)
        subprocess.run(cmd, cwd=debs, capture_output=True, text=True, check=True)
    deb = _find_deb(debs, pkg)
    if deb is None:
        raise FileNotFoundError(f"apt-get download {pkg} produced no .deb in {debs}")
    return deb


def extract_deb(deb: Path, dest: Path, force: bool = False) -> Path:
    """``dpkg-deb -x`` unless ``dest`` already holds this exact .deb (by sha256)."""
    stamp = dest / ".extracted"
    digest = sha256(deb)
    if not force and stamp.exists() and stamp.read_text().strip() == digest:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
    stamp.write_text(digest + "\n")
    return dest


def debian_package(pkg: str, out_dir: Path, force: bool = False) -> Path:
    """Download + extract one Debian package; returns its extracted root."""
    deb = apt_download(pkg, out_dir / "debs", force=force)
    return extract_deb(deb, out_dir / "raw" / pkg, force=force)


def pypi_wheel(name: str, out_dir: Path, force: bool = False) -> Path:
    """``pip download --no-deps NAME`` into ``out_dir/pypi``; returns the wheel."""
    dest = out_dir / "pypi"
    dest.mkdir(parents=True, exist_ok=True)
    pattern = name.replace("-", "_") + "-*.whl"
    found = sorted(dest.glob(pattern))
    if found and not force:
        return found[-1]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                    "-d", str(dest), name], check=True, capture_output=True, text=True)
    found = sorted(dest.glob(pattern))
    if not found:
        raise FileNotFoundError(f"pip download {name} produced no wheel in {dest}")
    return found[-1]
