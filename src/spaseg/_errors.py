"""One exception type for bad input, so that users see which sample, file and field is wrong."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """Bad user input: names the sample, the file and the field at fault.

    Parameters
    ----------
    message
        What is wrong and, where possible, how to fix it.
    sample
        Sample id from the sample sheet, if known.
    file
        The offending file.
    field
        The column, key or attribute at fault.
    """

    def __init__(
        self,
        message: str,
        *,
        sample: str | None = None,
        file: str | PathLike | None = None,
        field: str | None = None,
    ):
        self.sample, self.file, self.field = sample, file, field
        where = []
        if sample is not None:
            where.append(f"sample {sample!r}")
        if file is not None:
            where.append(f"file {str(file)!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class QCGateError(InputError):
    """A section failed a QC gate (``spaseg.pp.qc_gates``) and is stopped after QC."""
