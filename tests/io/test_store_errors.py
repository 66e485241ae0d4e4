"""Stores that cannot be used stop ``curate run`` before any work, with one line naming the URI
and the fix, exit code 2; and no secret reaches a manifest, a lease, a shard or the log.

Wrong credentials need a store that checks them: this module starts its own moto server with
IAM authentication on (``INITIAL_NO_AUTH_ACTION_COUNT``: the first three requests create a user,
its access key and an allow-all policy; every later request must be signed by that key). What
moto cannot simulate: DNS failures, timeouts of a silent endpoint, expired session tokens and
bucket policies that deny a valid key (each surfaces through the same code paths as the
refused endpoint and the rejected key tested here). The secrets test runs a real pipeline
into the shared moto server (which accepts any key) with a marker as the secret key.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner

from curate.cli import main
from curate.io import fs

s3server = pytest.importorskip("s3server")
s3fs = pytest.importorskip("s3fs")
pytest.importorskip("moto")

BUCKET = "auth-bucket"
MARKER = "SECRET-MARKER-7f3a9c1e5b"


@pytest.fixture(scope="module")
def auth_store():
    """A moto S3 server that checks signatures: ``{endpoint, key, secret}`` of its one valid user."""
    import boto3

    port = s3server._free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(os.devnull, "wb")
    proc = subprocess.Popen(s3server.die_with_parent([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                                      "-p", str(port)]),
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}, stdout=log, stderr=log)
    try:
        s3server._wait_until_up(proc, endpoint, os.devnull)
        session = boto3.session.Session(**{"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap",
                                           "region_name": "us-east-1"})
        iam = session.client("iam", endpoint_url=endpoint)
        iam.create_user(UserName="curate")
        key = iam.create_access_key(UserName="curate")["AccessKey"]
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="curate", PolicyName="all", PolicyDocument=json.dumps(policy))
        creds = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
        boto3.session.Session(aws_access_key_id=creds["key"], aws_secret_access_key=creds["secret"],
                              region_name="us-east-1").client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield {"endpoint": endpoint, **creds}
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.fixture
def store_env(monkeypatch, auth_store):
    """Point this process's AWS variables at the checking server (valid key); fresh s3fs clients."""
    def use(**overrides):
        env = {**s3server.aws_env(auth_store["endpoint"]), "AWS_ACCESS_KEY_ID": auth_store["key"],
               "AWS_SECRET_ACCESS_KEY": auth_store["secret"], **overrides}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s3fs.S3FileSystem.clear_instance_cache()

    use()
    yield use
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def pipeline(tmp_path):
    """A valid pipeline over a small local input; ``curate run`` on it with ``--input/--output`` overrides."""
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": f"doc {i}"}) + "\n"
                                               for i in range(20)))
    path = tmp_path / "p.yaml"
    path.write_text(f"name: p\ninput: {tmp_path / 'in.jsonl'}\noutput: {tmp_path / 'out'}\nstages: [exact_dedup]\n")

    def run(*args: str):
        result = CliRunner().invoke(main, ["run", str(path), *args])
        return result.exit_code, result.output

    return run


def one_line_error(code: int, output: str) -> str:
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def test_the_checking_store_accepts_its_key(store_env, pipeline):
    """The control: with the right key the same checks pass (so the failures below are the store's answer)."""
    fs.check_reachable(f"s3://{BUCKET}/out")
    fs.write_bytes(f"s3://{BUCKET}/probe", b"ok")
    assert fs.read_bytes(f"s3://{BUCKET}/probe") == b"ok"


def test_unreachable_store(store_env, pipeline):
    port = s3server._free_port()  # nothing listens there
    store_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}")
    line = one_line_error(*pipeline("--output", f"s3://{BUCKET}/out"))
    assert line == (f"error: s3://{BUCKET}/out: store not reachable at http://127.0.0.1:{port} (Connection refused); "
                    "check AWS_ENDPOINT_URL and that the store is running")


@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_wrong_credentials(store_env, pipeline, auth_store, wrong):
    if wrong == "secret":
        store_env(AWS_SECRET_ACCESS_KEY="not-the-secret")
    else:
        store_env(AWS_ACCESS_KEY_ID="AKIAUNKNOWNKEY000000")
    line = one_line_error(*pipeline("--output", f"s3://{BUCKET}/out"))
    assert line.startswith(f"error: s3://{BUCKET}/out: access denied (")
    assert line.endswith("check the store's credentials (for S3: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / "
                         "AWS_PROFILE)")
    assert ("signature" if wrong == "secret" else "Access Key Id") in line
    assert "not-the-secret" not in line and auth_store["secret"] not in line


def test_missing_bucket_for_output_and_input(store_env, pipeline):
    fix = "does not exist; create it or fix the URI"
    line = one_line_error(*pipeline("--output", "s3://no-such-bucket-x/out"))
    assert line == f"error: s3://no-such-bucket-x/out: bucket 'no-such-bucket-x' {fix}"
    line = one_line_error(*pipeline("--input", "s3://no-such-bucket-y/raw/"))
    assert line == f"error: s3://no-such-bucket-y/raw/: bucket 'no-such-bucket-y' {fix}"


def test_a_missing_model_uri_in_a_stage_stops_the_run_before_any_work(store_env, tmp_path):
    """Stage parameters are checked too: a fastText model that is not in the bucket, or in a bucket
    that does not exist, fails with one line before the lease is taken or Spark starts."""
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "one document"}\n')
    for model, expected in [(f"s3://{BUCKET}/models/missing.bin",
                             f"error: stage 'fasttext_score': s3://{BUCKET}/models/missing.bin does not exist"),
                            ("s3://no-such-bucket-z/m.bin",
                             "error: s3://no-such-bucket-z/m.bin: bucket 'no-such-bucket-z' does not exist;"
                             " create it or fix the URI")]:
        path = tmp_path / "p.yaml"
        path.write_text(f"name: p\ninput: {tmp_path / 'in.jsonl'}\noutput: {tmp_path / 'out'}\n"
                        f"stages:\n  - fasttext_score: {{model: '{model}'}}\n")
        result = CliRunner().invoke(main, ["run", str(path)])
        assert one_line_error(result.exit_code, result.output) == expected
        assert not (tmp_path / "out" / "_lease").exists() and not (tmp_path / "out" / "00-read").exists()


@pytest.mark.parametrize("uri,module,extra", [("gs://b/out", "gcsfs", "gcs"), ("abfs://c/out", "adlfs", "azure")])
def test_scheme_without_an_installed_filesystem(pipeline, uri, module, extra):
    try:
        __import__(module)
        pytest.skip(f"{module} is installed here")
    except ImportError:
        pass
    line = one_line_error(*pipeline("--output", uri))
    assert line.startswith(f"error: {uri}: no filesystem for '{uri.split(':')[0]}://' (")
    assert line.endswith(f"install curate[{extra}]")


def test_hdfs_without_a_usable_client(pipeline):
    """pyarrow is installed but its HDFS client needs libhdfs and a JVM environment it does not find."""
    from curate.core import CurateError

    try:
        fs.filesystem("hdfs://namenode:8020/out")
    except CurateError:
        pass
    else:
        pytest.skip("pyarrow's HDFS client starts here")
    line = one_line_error(*pipeline("--output", "hdfs://namenode:8020/out"))
    assert line.startswith("error: hdfs://namenode:8020/out: cannot start the 'hdfs://' filesystem (")
    assert line.endswith("set JAVA_HOME, HADOOP_HOME and CLASSPATH=$(hadoop classpath --glob) (see docs/cluster.md)")


def test_no_secret_in_manifests_leases_shards_or_logs(spark, pipeline, monkeypatch, capfd):
    """A real run into s3:// with the secret key set to a marker, also passed on the command line
    as ``--conf spark.executorEnv.AWS_SECRET_ACCESS_KEY=…``: the marker is in no object of the
    output and in nothing printed."""
    s3server.start()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", MARKER)
    s3fs.S3FileSystem.clear_instance_cache()
    out = f"s3://{s3server.BUCKET}/secrets-{uuid.uuid4().hex[:8]}/out"
    conf = f"spark.executorEnv.AWS_SECRET_ACCESS_KEY={MARKER}"
    monkeypatch.setattr(sys, "argv", ["curate", "run", "p.yaml", "--output", out, "--conf", conf])
    env = spark.sparkContext.environment  # what the Python workers of this session get (executorEnv)
    saved = dict(env)
    env.update({**s3server.aws_env(os.environ["AWS_ENDPOINT_URL"]), "AWS_SECRET_ACCESS_KEY": MARKER})
    try:
        code, output = pipeline("--output", out, "--conf", conf)
    finally:
        env.clear()
        env.update(saved)
        s3fs.S3FileSystem.clear_instance_cache()
    printed = output + "".join(capfd.readouterr())
    assert code == 0, output
    root, files = fs.list_files(out)
    assert {"00-read/_manifest.json", "01-exact_dedup/_manifest.json", "final/_manifest.json"} <= set(files)
    assert any(f.startswith("_lease/") for f in files) and any(f.endswith(".parquet") for f in files)
    leaked = [f for f in files if MARKER.encode() in fs.read_bytes(fs.join(root, f))]
    assert leaked == []
    assert MARKER not in printed and "01-exact_dedup" in printed
    lease = [json.loads(fs.read_bytes(fs.join(root, f))) for f in files if f.startswith("_lease/")][0]
    assert "AWS_SECRET_ACCESS_KEY=***" in lease["command"]
