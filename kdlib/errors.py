"""The exceptions kdlib raises. Every one carries a message a user can act on.

    KdlibError
    ├── ConfigError            bad parameters, found before anything is provisioned
    │   ├── ParametersError    an experiment's parameters (every problem names the field's path)
    │   ├── InventoryError     a bad SSH inventory (every problem names the host and the field)
    │   └── TraceDataError     a trace directory misses a file or column, holds a non-number, or is too short
    ├── BinaryError            a binary is missing, not executable, or failed to build
    │   └── ImageError         Kd's binaries could not be fetched from their container images
    │       ├── RegistryUnreachableError   no network, or the registry does not answer
    │       ├── ImageNotFoundError         no such image or tag
    │       ├── PlatformMissingError       the image has no build for this machine's platform
    │       └── BinaryNotInImageError      no layer of the image holds the component binary
    ├── ClusterError           a cluster could not be started, used or stopped
    │   ├── ClusterBusyError   another cluster already owns the state directory
    │   ├── ClusterStateError  the cluster is not running (not started yet, or closed)
    │   ├── ComponentError     a component died or never became healthy (with its log tail)
    │   ├── ApiError           the Kubernetes API refused a request or could not be reached
    │   └── RemoteError        a command on an SSH host failed (host, command, output tail)
    │       ├── HostUnreachable  an SSH host could not be reached, or its connection was lost
    │       └── RemoteLockBusy   another run holds the cluster's lock on the control-plane host
    ├── LogFormatError         a trace log or Dirigent CSV is not in the expected format
    ├── ExperimentError        an experiment could not run to completion
    │   └── SuiteBusyError     another experiment suite is running on this machine
    └── BookBuildError         the book failed, warned, or its pages are missing or load from a CDN
"""

from __future__ import annotations

import contextlib
from typing import Iterator


class KdlibError(Exception):
    """Root of every error kdlib raises on purpose."""

    def _render_traceback_(self) -> list[str]:
        # IPython (notebooks, papermill) shows this instead of a traceback: one clear line.
        return [f"{type(self).__name__}: {self}"]


class ConfigError(KdlibError):
    """Invalid parameters; raised before anything is provisioned."""


class ParametersError(ConfigError):
    """Parameters with problems; ``problems`` lists each as "<field path>: <what>", one line each."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"invalid {what}:\n  " + "\n  ".join(self.problems))


class InventoryError(ConfigError):
    """An SSH inventory with problems; ``problems`` lists each as "<where>: <field>: <what>"."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, list(problems)
        super().__init__(f"inventory {source}: " + "; ".join(self.problems))


class TraceDataError(ConfigError):
    """A trace directory is missing a file or column, holds a non-number, or is too short."""


class LogFormatError(KdlibError):
    """A trace log or Dirigent CSV is not in the expected format."""


class BinaryError(KdlibError):
    """A control-plane binary is missing, not executable, or could not be built."""


class ImageError(BinaryError):
    """Kd's control-plane binaries could not be fetched from their container images."""


class RegistryUnreachableError(ImageError):
    """No network, or the registry did not answer."""


class ImageNotFoundError(ImageError):
    """The registry has no such image, or no such tag of it."""


class PlatformMissingError(ImageError):
    """The image offers no build for this machine's platform."""


class BinaryNotInImageError(ImageError):
    """No layer of the image holds the component's binary."""


class ClusterError(KdlibError):
    """A cluster could not be started, used or stopped."""


class ClusterBusyError(ClusterError):
    """Another cluster already owns this state directory."""


class ClusterStateError(ClusterError):
    """The cluster is used in a state that does not allow it (not started, or closed)."""


class ComponentError(ClusterError):
    """A control-plane component died or did not become healthy in time."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        message = f"{component}: {reason}"
        if log_tail:
            message += f"\n--- last lines of the {component} log ---\n{log_tail}"
        super().__init__(message)


class ApiError(ClusterError):
    """The Kubernetes API answered an error, or could not be reached."""


@contextlib.contextmanager
def api_errors(doing: str) -> Iterator[None]:
    """Map the Kubernetes client's and urllib3's exceptions to :class:`ApiError`.

    The boundary where foreign errors become kdlib's: ``doing`` says what was being done.
    """
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as error:
        reason = (error.reason or "").strip()
        raise ApiError(f"{doing}: the API server answered {error.status} {reason}".rstrip()) from error
    except HTTPError as error:
        cause = getattr(error, "reason", None) or error
        raise ApiError(f"{doing}: the API server could not be reached ({cause})") from error


class RemoteError(ClusterError):
    """A command on an SSH host failed; names the host, the command and its output's tail."""

    def __init__(self, host: str, command: str, reason: str, output: str = "") -> None:
        self.host, self.command, self.reason, self.output = host, command, reason, output
        message = f"{host}: {reason}: {command}"
        tail = "\n".join(output.rstrip().splitlines()[-15:])
        if tail:
            message += f"\n--- last lines of its output on {host} ---\n{tail}"
        super().__init__(message)


class HostUnreachable(RemoteError):
    """An SSH host refused, timed out, failed authentication, or dropped its connection."""


class RemoteLockBusy(RemoteError):
    """Another run holds the cluster's lock on the control-plane host."""


class ExperimentError(KdlibError):
    """An experiment could not run to completion."""


class SuiteBusyError(ExperimentError):
    """Another experiment suite holds this machine's lock."""


class BookBuildError(KdlibError):
    """Jupyter Book failed, warned, or produced pages that are missing or load from a CDN."""

    def __init__(self, reason: str, command: list[str] | None = None, output: str = "") -> None:
        self.reason, self.command, self.output = reason, command, output
        message = reason
        if command:
            message += f"\ncommand: {' '.join(command)}"
        if output:
            tail = "\n".join(output.rstrip().splitlines()[-40:])
            message += f"\n--- last lines of the build output ---\n{tail}"
        super().__init__(message)
