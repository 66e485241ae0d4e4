"""One filesystem layer for every path: local paths, ``file://``, ``s3://``, ``gs://``, ``hdfs://``, ``abfs://``.

Built on fsspec (s3fs, gcsfs, adlfs, pyarrow's HDFS): the same calls in the driver and inside
Spark tasks, credentials and endpoints from each store's standard environment (for S3:
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``), never
from curate's config, so nothing secret reaches a manifest or a log. Local paths keep POSIX
semantics (rename, ``O_EXCL``); object stores get conditional creates instead.
"""
from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import IO, Any

from curate import integrity
from curate.core import CurateError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "abfs": "azure", "abfss": "azure", "az": "azure"}
# Schemes served by a library that is installed but needs more than pip (pyarrow's HDFS: libhdfs and a JVM).
NATIVE_FIXES = {"hdfs": "pyarrow's HDFS client needs Hadoop's libhdfs and a JVM: set JAVA_HOME, HADOOP_HOME "
                        "and CLASSPATH=$(hadoop classpath --glob) (see docs/cluster.md)",
                "viewfs": "pyarrow's HDFS client needs Hadoop's libhdfs and a JVM: set JAVA_HOME, HADOOP_HOME "
                          "and CLASSPATH=$(hadoop classpath --glob) (see docs/cluster.md)"}


def scheme(uri: str | Path) -> str:
    """The URI scheme (``s3``, ``gs``…), or ``file`` for a local path."""
    m = _SCHEME.match(str(uri))
    return m.group(1).lower() if m else "file"


def is_remote(uri: str | Path) -> bool:
    return scheme(uri) != "file"


def strip_file_scheme(uri: str | Path) -> str:
    text = str(uri)
    return text[len("file://"):] if text.startswith("file://") else text


def resolve(uri: str | Path, base: str | Path) -> str:
    """An absolute location: URIs unchanged, local paths made absolute against ``base``."""
    text = str(uri)
    if is_remote(text):
        return text.rstrip("/") if len(text) > len(scheme(text)) + 3 else text
    p = Path(strip_file_scheme(text)).expanduser()
    return str(p if p.is_absolute() else (Path(base) / p).resolve())


def join(uri: str | Path, *parts: str) -> str:
    """Append path parts with ``/`` (works for local paths and URIs alike)."""
    text = str(uri)
    if not is_remote(text):
        return str(Path(strip_file_scheme(text)).joinpath(*parts))
    proto, _, rest = text.partition("://")
    return f"{proto}://{posixpath.normpath(posixpath.join(rest.rstrip('/'), *parts))}"


def name(uri: str | Path) -> str:
    return posixpath.basename(str(uri).rstrip("/"))


def parent(uri: str | Path) -> str:
    text = str(uri).rstrip("/")
    if not is_remote(text):
        return str(Path(strip_file_scheme(text)).parent)
    return text.rsplit("/", 1)[0]


def filesystem(uri: str | Path):
    """``(fsspec filesystem, path inside it)`` for ``uri``, with a one-line error naming the fix."""
    import fsspec

    text = str(uri)
    proto = scheme(text)
    if proto == "file":
        return fsspec.filesystem("file"), strip_file_scheme(text)
    try:
        fs, path = fsspec.core.url_to_fs(text)
    except ImportError as exc:
        extra = EXTRAS.get(proto)
        fix = f"install curate[{extra}]" if extra else f"install an fsspec filesystem for '{proto}://'"
        raise CurateError(f"{text}: no filesystem for '{proto}://' ({exc}); {fix}") from None
    except ValueError as exc:
        raise CurateError(f"{text}: unknown URI scheme '{proto}://' ({exc})") from None
    except OSError as exc:  # a client that cannot start (pyarrow's HDFS without libhdfs/JVM)
        fix = NATIVE_FIXES.get(proto, f"check the '{proto}://' filesystem's installation")
        raise CurateError(f"{text}: cannot start the '{proto}://' filesystem ({_first_line(exc)}); {fix}") from None
    return fs, path


def _unstrip(uri: str, fs_path: str) -> str:
    """Turn a path returned by a filesystem back into a URI of ``uri``'s scheme."""
    proto = scheme(uri)
    if proto == "file":
        return fs_path
    return f"{proto}://{fs_path.split('://', 1)[-1]}"


def _fresh(uri: str | Path):
    """``(fs, path)`` with fsspec's listing cache for ``path`` dropped: a commit protocol must
    see other writers' objects (s3fs caches listings per process)."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        fs.invalidate_cache(path)
    return fs, path


def exists(uri: str | Path) -> bool:
    fs, path = _fresh(uri)
    return fs.exists(path)


def isfile(uri: str | Path) -> bool:
    fs, path = _fresh(uri)
    return fs.isfile(path)


def isdir(uri: str | Path) -> bool:
    fs, path = _fresh(uri)
    return fs.isdir(path)


def open_file(uri: str | Path, mode: str = "rb") -> IO[Any]:
    """Open for reading or writing (binary unless ``mode`` has ``t``)."""
    fs, path = filesystem(uri)
    if "w" in mode and not is_remote(uri):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return fs.open(path, mode)


def read_bytes(uri: str | Path) -> bytes:
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def read_text(uri: str | Path) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Write a whole object: local files through a temporary name and a rename, objects by one PUT."""
    fs, path = filesystem(uri)
    if is_remote(uri):
        fs.pipe_file(path, data)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def write_text(uri: str | Path, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def create_exclusive(uri: str | Path, data: bytes) -> bool:
    """Create ``uri`` only if it does not exist; False when it already does.

    Locally ``O_CREAT | O_EXCL``; on S3 a conditional PUT (``If-None-Match: *``), which S3 and
    S3-compatible stores answer with 412 when the key exists. Other object stores fall back to
    fsspec's ``mode="create"`` where the backend supports it.
    """
    fs, path = filesystem(uri)
    if not is_remote(uri):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True
    if scheme(uri) in ("s3", "s3a"):
        return _s3_put_if_absent(fs, path, data)
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def _s3_put_if_absent(fs, path: str, data: bytes) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = path.split("/", 1)
    client = _boto_client(fs)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            return False
        raise
    fs.invalidate_cache(path)
    return True


def _boto_client(fs):
    """A synchronous boto3 S3 client with the same endpoint and credentials as ``fs``."""
    import boto3

    kwargs = {}
    endpoint = getattr(fs, "client_kwargs", {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return boto3.client("s3", **kwargs)


def remove(uri: str | Path, recursive: bool = False) -> None:
    """Delete a file or (with ``recursive``) a directory/prefix; a missing target is fine."""
    fs, path = filesystem(uri)
    try:
        fs.rm(path, recursive=recursive)
    except FileNotFoundError:
        pass


def makedirs(uri: str | Path) -> None:
    if not is_remote(uri):
        Path(strip_file_scheme(str(uri))).mkdir(parents=True, exist_ok=True)


def listdir(uri: str | Path) -> list[str]:
    """Names directly under ``uri`` (files and directories), sorted; [] when it does not exist."""
    fs, path = _fresh(uri)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(e.rstrip("/")) for e in entries if e.rstrip("/") != path.rstrip("/"))


def info(uri: str | Path) -> dict:
    """Size and a change token (mtime locally, ETag or mtime remotely) of one file."""
    fs, path = filesystem(uri)
    st = fs.info(path)
    token = st.get("mtime") or st.get("LastModified") or st.get("ETag") or st.get("etag") or st.get("updated")
    if not is_remote(uri):
        token = os.stat(path).st_mtime_ns
    return {"size": int(st.get("size") or 0), "token": str(token)}


def list_files(uri: str | Path, keep=lambda rel: True) -> tuple[str, list[str]]:
    """A file, a directory (recursive) or a glob → ``(root, sorted relative paths)``.

    ``keep(relative_path)`` filters the files of a directory (not an explicit file).
    """
    text = str(uri)
    fs, path = _fresh(text)
    if any(ch in path for ch in "*?["):
        matches = sorted(m for m in fs.glob(path) if fs.isfile(m))
        if not matches:
            return parent(text), []
        root_path = posixpath.commonpath([posixpath.dirname(m) for m in matches])
        root = _unstrip(text, root_path)
        return root, sorted(posixpath.relpath(m, root_path) for m in matches)
    if fs.isfile(path):
        return parent(text) if is_remote(text) else str(Path(path).parent), [name(text)]
    if not fs.isdir(path):
        raise CurateError(f"input not found: {text}")
    found = fs.find(path)
    rels = sorted(posixpath.relpath(f, path.rstrip("/")) for f in found)
    return text.rstrip("/") if is_remote(text) else path, [r for r in rels if keep(r)]


def local_copy(uri: str | Path, cache_dir: str | Path | None = None,
               companions: tuple[str, ...] = (".sha256", ".json")) -> Path:
    """A local path for ``uri``: the path itself when local, else a cached download.

    Models and tokenizers are opened by libraries that need a file on disk (fastText, FAISS,
    tokenizers); a remote one is copied once per content token into ``cache_dir`` (default
    ``$CURATE_CACHE`` or ``~/.cache/curate``) — on whichever machine asks, driver or executor —
    together with its ``companions`` that exist (the sha256 sidecar the loader verifies, the
    metadata file). Hash checks stay with the loader.
    """
    if not is_remote(uri):
        return Path(strip_file_scheme(str(uri)))
    import hashlib

    meta = info(uri)
    key = hashlib.sha256(f"{uri}\0{meta['size']}\0{meta['token']}".encode()).hexdigest()[:16]
    root = Path(cache_dir or os.environ.get("CURATE_CACHE") or Path.home() / ".cache" / "curate")
    target = root / key / name(uri)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in companions:
            if exists(f"{uri}{suffix}"):
                _download(f"{uri}{suffix}", target.with_name(target.name + suffix))
        _download(str(uri), target)
    return target


def put_file(local: str | Path, uri: str | Path) -> None:
    """Copy a local file to ``uri``: one upload to an object store; locally a temporary name and a rename."""
    fs_, path = filesystem(uri)
    if is_remote(uri):
        fs_.put_file(str(local), path)
        return
    import shutil

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(local, tmp)
    os.replace(tmp, target)


def put_tree(local_dir: str | Path, uri: str | Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Upload every file under ``local_dir`` to the same relative names under ``uri`` (sorted);
    names in ``skip`` (relative paths) are left out. Returns the relative paths uploaded."""
    root = Path(local_dir)
    done = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel not in skip:
            put_file(f, join(uri, *rel.split("/")))
            done.append(rel)
    return done


def _download(uri: str, target: Path) -> None:
    fs_, path = filesystem(uri)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fs_.get_file(path, str(tmp))
    os.replace(tmp, target)


def fetch(uri: str | Path) -> Path:
    """:func:`local_copy` with a one-line error for a missing file (the fetcher of curate.integrity)."""
    try:
        return local_copy(uri)
    except FileNotFoundError:
        raise CurateError(f"file not found: {uri}") from None


integrity.set_fetcher(fetch)  # the verified loaders (fastText, tokenizers) accept URIs through this


def check_reachable(uri: str | Path, *, for_writing: bool = False) -> None:
    """Fail fast, before any work, when a store cannot be used: no filesystem installed,
    unreachable endpoint, wrong credentials, missing bucket. One line naming the URI and the fix."""
    if not is_remote(uri):
        return
    fs, path = filesystem(uri)
    bucket = path.split("/", 1)[0]
    _probe_endpoint(uri, fs)
    try:
        fs.ls(bucket, detail=False)
    except FileNotFoundError:
        raise CurateError(f"{uri}: bucket '{bucket}' does not exist; create it or fix the URI") from None
    except PermissionError as exc:
        raise CurateError(f"{uri}: access denied ({_first_line(exc)}); check the store's credentials "
                          "(for S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE)") from None
    except OSError as exc:
        raise CurateError(f"{uri}: store not reachable ({_first_line(exc)}); check the endpoint "
                          "(for S3: AWS_ENDPOINT_URL / AWS_REGION) and the network") from None
    except Exception as exc:  # botocore raises its own types for bad credentials/endpoints
        if type(exc).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
            raise CurateError(f"{uri}: store not reachable ({_first_line(exc)}); check the endpoint "
                              "(for S3: AWS_ENDPOINT_URL / AWS_REGION) and the network") from None
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            raise CurateError(f"{uri}: no credentials found for the store; set AWS_ACCESS_KEY_ID / "
                              "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or an instance role)") from None
        raise CurateError(f"{uri}: cannot use the store ({type(exc).__name__}: {_first_line(exc)}); "
                          "check credentials and endpoint (AWS_* variables for S3)") from None


def _probe_endpoint(uri: str | Path, fs_, timeout: float = 5.0) -> None:
    """For an S3 store at an explicit endpoint (``AWS_ENDPOINT_URL``: MinIO, Ceph, a test server),
    one TCP connect first: a refused or silent endpoint fails in milliseconds, with a clear
    message, instead of after the client's retries."""
    if scheme(uri) not in ("s3", "s3a"):
        return
    endpoint = (getattr(fs_, "client_kwargs", {}) or {}).get("endpoint_url") or os.environ.get(
        "AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise CurateError(f"{uri}: store not reachable at {parts.scheme}://{parts.hostname}:{port} "
                          f"({exc.strerror or type(exc).__name__}); check AWS_ENDPOINT_URL and that the "
                          "store is running") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
