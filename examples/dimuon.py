"""Opposite-sign dimuon mass per dataset, in the style of coffea's documentation.

Runs as it is in a notebook (``processor.Runner``) and on the facility::

    intccms run processor processor=dimuon            # conf/processor/dimuon.yaml
    intccms run processor processor.class=dimuon.DimuonProcessor 'processor.python_path=[examples]'
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
from coffea import processor


class DimuonProcessor(processor.ProcessorABC):
    """Events with exactly two good opposite-sign muons: their invariant mass, and a cutflow."""

    def __init__(self, pt_min: float = 20.0, eta_max: float = 2.4, bins: int = 60,
                 mass_max: float = 300.0) -> None:
        self.pt_min = pt_min
        self.eta_max = eta_max
        self.bins = bins
        self.mass_max = mass_max

    def process(self, events):
        dataset = events.metadata["dataset"]
        is_data = events.metadata.get("is_data", not hasattr(events, "genWeight"))
        cutflow = processor.defaultdict_accumulator(int)
        cutflow["all events"] += len(events)

        muons = events.Muon
        good = muons[(muons.pt > self.pt_min) & (np.abs(muons.eta) < self.eta_max) & muons.tightId]
        two = ak.num(good) == 2
        cutflow["two good muons"] += int(ak.sum(two))
        pairs = good[two]
        opposite = pairs[:, 0].charge != pairs[:, 1].charge
        cutflow["opposite sign"] += int(ak.sum(opposite))
        dimuon = pairs[opposite][:, 0] + pairs[opposite][:, 1]

        weight = np.ones(len(dimuon)) if is_data else events.genWeight[two][opposite]
        mass = (
            hist.Hist.new.StrCat([], growth=True, name="dataset", label="Dataset")
            .Reg(self.bins, 0.0, self.mass_max, name="mass", label=r"$m_{\mu\mu}$ [GeV]")
            .Weight()
        )
        mass.fill(dataset=dataset, mass=dimuon.mass, weight=weight)
        sumw = processor.defaultdict_accumulator(float)
        sumw[dataset] += float(len(events)) if is_data else float(ak.sum(events.genWeight))
        return {"mass": mass, "cutflow": {dataset: cutflow}, "sumw": sumw}

    def postprocess(self, accumulator):
        return accumulator
