"""The `edgeecg` command: one click group, each sub-command loaded only when called.

Loading lazily keeps `edgeecg infer` free of torch and fast to start, and lets
a machine without the `train`/`export` extras still run the runtime commands.
"""

from __future__ import annotations

import importlib
import sys

import click

from .errors import EdgeECGError

# sub-command -> "module:attribute"; the module is imported only when the command runs
COMMANDS = {
    "infer": ("edgeecg.infer_cli:infer", "classify ECG printout images, folders, a camera or a watched folder"),
    "models": ("edgeecg.infer_cli:models", "list the models shipped with edgeecg"),
    "digitize": ("edgeecg.digitize_cli:digitize", "read the 12 leads of printouts as signals (WFDB, CSV, JSON)"),
    "serve": ("edgeecg.serve:serve", "classify and digitize over HTTP, with a capture page for phones"),
    "bench": ("edgeecg.bench_cli:bench", "accuracy versus latency of every model/backend on this machine"),
    "render": ("edgeecg.render_cli:render", "render PTB-XL records as 12-lead ECG printouts"),
    "train": ("edgeecg.train.cli:train", "SSL pretraining + fine-tuning with group-aware k-fold CV"),
    "export": ("edgeecg.export.cli:export", "ONNX / FP16 / INT8 / TensorRT artifacts from a trained run"),
    "explain": ("edgeecg.train.explain_cli:explain", "Grad-CAM maps and shortcut stress tests"),
    "ablate": ("edgeecg.train.ablate:ablate", "train the paper's ablation variants and compare them"),
}
EXTRA_FOR = {"edgeecg.train": "train", "edgeecg.export": "export", "edgeecg.serve": "serve"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, help_text = COMMANDS[name]
        if ctx.resilient_parsing or "--help" in sys.argv[1:2]:
            # `edgeecg --help` lists commands without importing torch-heavy modules
            return click.Command(name, help=help_text, short_help=help_text)
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            extra = next((e for p, e in EXTRA_FOR.items() if module_name.startswith(p)), None)
            hint = f"; install it with: pip install -e '.[{extra}]'" if extra else ""
            raise EdgeECGError(f"`edgeecg {name}` needs a missing package ({exc.name}){hint}") from None
        return getattr(module, attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeecg")
def cli() -> None:
    """SimCardioNet ECG-printout classification: train, export, infer, bench."""


def main() -> None:
    """Console entry point: user errors become one line and exit code 2, never a traceback."""
    try:
        code = cli.main(standalone_mode=False)
    except EdgeECGError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
