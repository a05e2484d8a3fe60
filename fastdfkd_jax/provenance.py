"""Where a result was computed: the device, the code's commit and the package versions.

Written into every run's `summary.json` (`environment`), so a stored record says what made it.
"""

import importlib.metadata
import os
import platform
import subprocess

import jax

# The packages whose versions can move a result.
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def device_description() -> str:
    """E.g. '1 x cpu (cpu), 2 host CPU cores, x86_64, jax 0.10.2'."""
    device = jax.devices()[0]
    return (
        f"{jax.device_count()} x {device.platform} ({device.device_kind}), "
        f"{os.cpu_count()} host CPU cores, {platform.processor() or platform.machine()}, "
        f"jax {jax.__version__}"
    )


DIRTY = "+dirty"  # a commit's suffix when tracked files differed from it


def commit() -> str | None:
    """The repository's HEAD commit, '+dirty' when tracked files differ; None outside git."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        return subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (DIRTY if dirty else "")


SHORT_COMMIT = 12  # hex digits of a commit named in a table


def short_commit(full: str) -> str:
    """A `commit()` as tables name it: its first `SHORT_COMMIT` digits, '+dirty' kept."""
    head, dirty, _ = full.partition(DIRTY)
    return head[:SHORT_COMMIT] + dirty


def package_versions() -> dict[str, str | None]:
    """{package: installed version or None}."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


def environment() -> dict:
    """{'device', 'platform', 'commit', 'packages'} of this process."""
    return dict(
        device=device_description(),
        platform=jax.devices()[0].platform,
        commit=commit(),
        packages=package_versions(),
    )
