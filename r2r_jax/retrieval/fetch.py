"""`r2r data fetch`: download a named set's files, resumably, and keep only bytes with the table's SHA-256.

Each file is downloaded to `<file>.part` beside its final name. A `.part` left by an interrupted download is
continued with an HTTP Range request (a server that ignores Range answers 200 and the file starts again); the
finished `.part` is hashed and renamed onto the final name only when its SHA-256 and size are the table's, so a
file under its final name is always a verified one. A `.part` whose bytes turn out wrong is deleted.

`url_base` replaces every URL of the table with `<url_base>/<set>/<file>`: a mirror is laid out like the data
directory itself (serving a copy of `$R2R_DATA` over HTTP makes one), and tests point it at a local server.
"""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from r2r_jax.data.datasets import KNOWN_SETS, DatasetError, KnownFile, check_name, data_dir, read_manifest, sha256_file

_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(?:\d+|\*)")
USER_AGENT = "r2r-jax data fetch"


class FetchError(RuntimeError):
    """A download that failed or delivered other bytes than the table's (not the user's input: exit 1)."""


def file_url(name: str, entry: KnownFile, url_base: str | None) -> str:
    return f"{url_base.rstrip('/')}/{name}/{entry.name}" if url_base else entry.url


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _resume_offset(response, offset: int, size: int) -> int:
    """Where the response's bytes start: `offset` for a 206 that continues the .part, 0 when the server sent the
    whole file (it ignored the Range header). A file of another size than the table's is refused before any
    byte is written, and a range that does not continue the .part is a server error."""
    if not offset or response.status == 200:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) != size:
            raise FetchError(f"{response.url} serves {int(length):,} bytes, not the table's {size:,}; nothing kept")
        return 0
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if response.status != 206 or not match or int(match.group(1)) != offset:
        raise FetchError(f"{response.url}: asked for bytes from {offset}, got status {response.status} "
                         f"{response.headers.get('Content-Range', '')!r}")
    return offset


def _transfer(url: str, part: Path, have: int, size: int, timeout: float) -> int:
    """Append the rest of the file to `part` (or rewrite it, when the server sends it whole); bytes received."""
    received = 0
    with _open(url, have, timeout) as response:
        try:
            start = _resume_offset(response, have, size)
        except FetchError:
            part.unlink(missing_ok=True)  # what the server offers does not continue it
            raise
        part.parent.mkdir(parents=True, exist_ok=True)  # only once there are bytes to keep
        with open(part, "ab" if start else "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                received += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    return received


def download(url: str, target: Path, entry: KnownFile, timeout: float = 60.0) -> int:
    """Download `url` to `target` through `<target>.part`; returns the bytes transferred by this call."""
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if have > entry.size:  # not a prefix of the file the table names
        part.unlink()
        have = 0
    received = 0
    if have < entry.size:
        try:
            received = _transfer(url, part, have, entry.size, timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not have:
                raise FetchError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
            part.unlink()  # the server's file is not longer than the .part: not the file it was started from
            return download(url, target, entry, timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None) or e
            kept = f"; {part} keeps the {part.stat().st_size:,} bytes so far: fetch again to resume" \
                if part.is_file() and part.stat().st_size else ""
            raise FetchError(f"cannot download {url}: {reason}{kept}") from None
    size = part.stat().st_size
    if size < entry.size:  # the connection ended early: keep what came, the next fetch continues from there
        raise FetchError(f"the download of {url} stopped after {size:,} of {entry.size:,} bytes; {part} keeps "
                         "them: fetch again to resume")
    digest = sha256_file(part)
    if size != entry.size or digest != entry.sha256:
        part.unlink()
        raise FetchError(f"{url} gave {size:,} bytes with SHA-256 {digest}, not the table's {entry.size:,} bytes "
                         f"with {entry.sha256}; nothing kept")
    os.replace(part, target)
    return received


def fetch_set(name: str, url_base: str | None = None, timeout: float = 60.0,
              log: Callable[[str], None] = print) -> list[Path]:
    """Download every file of known set `name` that is not already present and verified; the set's files."""
    check_name(name)
    if name not in KNOWN_SETS:
        if read_manifest(name) is not None:
            raise DatasetError(f"dataset {name} is your own set: there is nothing to fetch (r2r data add "
                               f"{name} FOLDER --beir --overwrite replaces it)")
        raise DatasetError(f"unknown dataset {name!r}: r2r data fetch knows {', '.join(KNOWN_SETS)}")
    paths = []
    for entry in KNOWN_SETS[name].files:
        target = data_dir() / name / entry.name
        paths.append(target)
        if target.is_file() and target.stat().st_size == entry.size and sha256_file(target) == entry.sha256:
            log(f"{name}/{entry.name}: already present and verified")
            continue
        url = file_url(name, entry, url_base)
        received = download(url, target, entry, timeout)
        resumed = entry.size - received
        log(f"{name}/{entry.name}: {entry.size:,} bytes from {url}" +
            (f" (resumed after {resumed:,})" if received and resumed else "") + ", SHA-256 verified")
    return paths
