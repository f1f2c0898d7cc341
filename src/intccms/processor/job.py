"""What a processor run adds around coffea: ``events.metadata`` per dataset and ``postprocess()``
as coffea's Runner calls it (the run itself: :mod:`intccms.execute.processor_run`)."""

from __future__ import annotations

from typing import Any

from intccms.config.processor_loader import LoadedProcessor
from intccms.plan.run import RunPlan
from intccms.processor.task import ProcessorError

OUTPUT_FOLDER = "processor"


def dataset_metadata(plan: RunPlan) -> dict[str, dict[str, Any]]:
    """What each dataset adds to ``events.metadata`` (as a coffea fileset's ``metadata`` would)."""
    return {name: {"era": ds.era, "process": ds.process, "xsec": ds.xsec, "is_data": ds.is_data,
                   "luminosity": plan.eras[ds.era].luminosity}
            for name, ds in plan.datasets.items()}


def postprocess(loaded: LoadedProcessor, output: Any) -> Any:
    """``postprocess()`` on the driver as coffea's Runner calls it: a None return keeps the output."""
    try:
        replaced = loaded.instance.postprocess(output)
    except Exception as err:
        msg = f"{loaded.class_path}.postprocess() raised {type(err).__name__}: {err}"
        raise ProcessorError(msg) from err
    return output if replaced is None else replaced


__all__ = ["dataset_metadata", "postprocess"]
