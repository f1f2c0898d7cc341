"""The reference Z' -> tt (single muon) selection as a coffea processor, nominal only.

The selection of ANALYSIS.md ("Selection") on NanoEvents with coffea's behaviours: four-vector
sums for ``mtt``. Unlike the facility's configured analysis it applies no correction (no JEC,
no scale factors, no lumi mask), so its numbers are the analysis's nominal before corrections:
``genWeight``-weighted, un-normalised histograms per dataset, with the sum of ``genWeight`` of the
events read, for σ·L/Σw afterwards (on pre-skimmed NanoAOD take Σw from the ``Runs`` trees).

    intccms run processor processor=zprime_ttbar
"""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
from coffea import processor


class ZPrimeTTbarProcessor(processor.ProcessorABC):
    """Muon + boosted top + b-tagged jet + MET: the ``CMS_WORKSHOP`` channel and its ``mtt``."""

    def __init__(self, btag_wp_medium: dict[str, float], triggers: dict[str, list[str]],
                 met_min: float = 50.0, lepton_met_min: float = 150.0) -> None:
        self.btag_wp_medium = dict(btag_wp_medium)
        self.triggers = {era: list(paths) for era, paths in triggers.items()}
        self.met_min = met_min
        self.lepton_met_min = lepton_met_min

    def process(self, events):
        meta = events.metadata
        dataset, era, is_data = meta["dataset"], meta["era"], meta["is_data"]
        cutflow = processor.defaultdict_accumulator(int)
        cutflow["all events"] += len(events)
        sumw = processor.defaultdict_accumulator(float)
        sumw[dataset] += 0.0 if is_data else float(ak.sum(events.genWeight))

        # Trigger and MET filter (the skim, applied again so unskimmed input agrees).
        fired = np.zeros(len(events), dtype=bool)
        for path in self.triggers[era]:
            fired = fired | ak.to_numpy(events.HLT[path])
        events = events[fired & ak.to_numpy(events.PuppiMET.pt > self.met_min)]
        cutflow["trigger and MET"] += len(events)

        muons = events.Muon
        muons = muons[(muons.pt > 55) & (np.abs(muons.eta) < 2.4) & muons.tightId & (muons.miniIsoId >= 2)]
        jets = events.Jet
        jets = jets[(jets.jetId >= 4) & (np.abs(jets.eta) < 2.5) & (jets.pt > 30)]
        jets = jets[ak.argsort(jets.pt, axis=1, ascending=False)]
        fatjets = events.FatJet
        fatjets = fatjets[(fatjets.pt > 500) & (fatjets.particleNet_TvsQCD > 0.5)]

        baseline = (ak.num(muons) == 1) & (ak.num(jets) >= 2)
        cutflow["one muon, two jets"] += int(ak.sum(baseline))
        met = events.PuppiMET
        btag = ak.sum(jets.btagDeepFlavB > self.btag_wp_medium[era], axis=1) >= 1
        lepton_met = ak.fill_none(ak.firsts(muons.pt), -np.inf) + met.pt > self.lepton_met_min
        selected = baseline & btag & (met.pt > self.met_min) & lepton_met & (ak.num(fatjets) == 1)
        cutflow["CMS_WORKSHOP"] += int(ak.sum(selected))

        ev, mu, fj, jet = events[selected], muons[selected][:, 0], fatjets[selected][:, 0], jets[selected][:, 0]
        nu = ak.zip({"pt": ev.PuppiMET.pt, "eta": ak.zeros_like(ev.PuppiMET.pt), "phi": ev.PuppiMET.phi,
                     "mass": ak.zeros_like(ev.PuppiMET.pt)}, with_name="PtEtaPhiMLorentzVector",
                    behavior=mu.behavior)
        mtt = (mu + fj + jet + nu).mass
        weight = np.ones(len(ev)) if is_data else ev.genWeight

        h = (
            hist.Hist.new.StrCat([], growth=True, name="dataset", label="Dataset")
            .Reg(20, 200.0, 3000.0, name="mtt", label=r"$m_{t\bar{t}}$ [GeV]")
            .Weight()
        )
        h.fill(dataset=dataset, mtt=mtt, weight=weight)
        return {"CMS_WORKSHOP": {"mtt": h}, "cutflow": {dataset: cutflow}, "sumw": sumw}

    def postprocess(self, accumulator):
        return accumulator
