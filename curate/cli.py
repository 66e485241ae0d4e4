"""The ``curate`` command line.

Core commands live here; further subcommands are auto-discovered from
``curate/commands/*.py`` (each module exposes a click command or group named ``command``,
or a list of them named ``commands``).
Errors are one line with a non-zero exit code; ``--verbose`` shows tracebacks.
"""
from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import click

from curate.core import CurateError

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1


class CurateGroup(click.Group):
    """A click group that turns exceptions into one-line errors unless --verbose."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except CurateError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except Exception as exc:  # anything else: still one line unless --verbose
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(f"error: {type(exc).__name__}: {first[:500]} (rerun with --verbose for the traceback)",
                       err=True)
            sys.exit(EXIT_FAILURE)


@click.group(cls=CurateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="curate")
@click.pass_context
def main(ctx, verbose):
    """curate: from raw text to ordered, selected pretraining data."""
    ctx.ensure_object(dict)["verbose"] = verbose


spark_options = [
    click.option("--master", default=None, help="Spark master (default: $CURATE_SPARK_MASTER or local[*])."),
    click.option("--conf", "conf", multiple=True, metavar="K=V", help="Extra Spark configuration (repeatable)."),
]


def with_spark_options(fn):
    for option in reversed(spark_options):
        fn = option(fn)
    return fn


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", default=None, help="Override the pipeline's input path.")
@click.option("--output", "output_path", default=None, help="Override the pipeline's output directory.")
@with_spark_options
@click.option("--from", "from_stage", default=None, metavar="STAGE", help="Rebuild STAGE and every later stage.")
@click.option("--only", default=None, metavar="STAGE", help="Run only STAGE (its input must be complete).")
@click.option("--force", is_flag=True, help="Rebuild every stage, even complete ones.")
@click.option("--take-over", is_flag=True,
              help="Take the output's lease from another run (only when that run is known to be dead).")
def run(pipeline, input_path, output_path, master, conf, from_stage, only, force, take_over):
    """Run PIPELINE (YAML); complete stages are skipped, changed ones refused."""
    from curate.engine.runner import run_pipeline
    from curate.engine.spark import parse_conf

    result = run_pipeline(pipeline, input=input_path, output=output_path, master=master,
                          conf=parse_conf(conf), force=force, from_stage=from_stage, only=only,
                          take_over=take_over)
    click.echo(format_stats_table(result.output_dir))


@main.command()
@click.argument("pipeline", type=click.Path(dir_okay=False))
def validate(pipeline):
    """Check PIPELINE without running anything."""
    from curate.config import load_pipeline

    p = load_pipeline(pipeline)
    click.echo(f"ok: pipeline '{p.name}', {len(p.stages)} stage(s): "
               + ", ".join(s.dirname for s in p.stages))


@main.command()
@click.argument("output")
@click.option("--json", "as_json", is_flag=True, help="Print the stats as JSON.")
def stats(output, as_json):
    """Rows in/out, rejected by reason and quarantined, per stage of a run."""
    if as_json:
        click.echo(json.dumps(collect_stats(output), indent=2, sort_keys=True))
    else:
        click.echo(format_stats_table(output))


@main.command("stages")
def list_stages():
    """List registered stages and their parameters with defaults."""
    from curate.config import describe_stages

    for name, summary, params in describe_stages():
        click.echo(f"{name}: {summary}")
        for pname, default, required in params:
            click.echo(f"    {pname} = {'(required)' if required else repr(default)}")


def collect_stats(output: str | Path) -> dict[str, dict]:
    from curate.io import fs
    from curate.io.shards import load_manifest

    if not fs.exists(output):
        raise CurateError(f"output not found: {output}")
    out = {}
    for name in fs.listdir(output):
        if name.startswith((".", "_")):
            continue
        manifest = load_manifest(fs.join(output, name))
        if manifest is not None:
            out[name] = manifest.get("stats", {})
    if not out:
        raise CurateError(f"no complete stages under {output}")
    return out


STANDARD_STATS = {"rows_in", "rows_out", "rejected", "quarantined", "quarantine_reasons", "chars_out",
                  "chars_rejected", "file_problems", "repairs", "files", "source_stage", "skipped_records"}


def format_stats_table(output: Path) -> str:
    """The funnel table, then each stage's own scalar stats (e.g. ordering coherence)."""
    all_stats = collect_stats(output)
    rows = [("stage", "rows in", "rows out", "removed", "detail")]
    for name, st in all_stats.items():
        removed = st.get("quarantined", 0) + sum(st.get("rejected", {}).values())
        detail = st.get("quarantine_reasons") or st.get("rejected") or {}
        rows.append((name, f"{st.get('rows_in', 0):,}", f"{st.get('rows_out', 0):,}", f"{removed:,}",
                     ", ".join(f"{k}={v:,}" for k, v in detail.items())))
        if st.get("skipped_records"):  # web archives: not documents by design, so not "removed"
            rows[-1] = (*rows[-1][:4], rows[-1][4] + "; skipped records: "
                        + ", ".join(f"{k}={v:,}" for k, v in st["skipped_records"].items()))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) if i == 0 else r[i].rjust(widths[i]) for i in range(4))
             + ("  " + r[4] if r[4] else "") for r in rows]
    for name, st in all_stats.items():
        extra = {k: v for k, v in st.items() if k not in STANDARD_STATS and isinstance(v, (int, float, str))}
        if extra:
            lines.append(f"{name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in extra.items()))
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _discover_commands() -> None:
    import curate.commands as pkg

    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{pkg.__name__}.{mod.name}")
        for command in getattr(module, "commands", None) or [getattr(module, "command", None)]:
            if isinstance(command, click.Command) and command.name not in main.commands:
                main.add_command(command)


_discover_commands()
