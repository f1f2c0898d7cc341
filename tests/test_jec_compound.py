"""Why the JEC levels are evaluated one by one and not as the file's compound correction.

correctionlib offers ``{campaign}_L1L2L3Res_AK4PFchs``, one compound correction of the four
levels. Inside the tables it gives the numbers of L1FastJet, L2Relative and L3Absolute applied in
sequence bit for bit (the residual is 1 for simulation). Beyond the tables' |eta| edge (5.191) it
returns 1 (no correction), while the analysis clips inputs into the tables' range (ANALYSIS.md,
"Corrections"), which the pipeline can do level by level but not inside a compound evaluation.
So the pipeline keeps the levels; this test shows both facts on the real files and fails if a
new file or correctionlib changes them.
"""

from __future__ import annotations

import os
from pathlib import Path

import correctionlib
import numpy as np
import pytest

SHARED = Path(os.environ.get("INTCCMS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
JSONPOG = Path(os.environ.get("INTCCMS_JSONPOG", SHARED / "jsonpog-integration"))
CAMPAIGNS = {"2017": "Summer19UL17_V5_MC", "2018": "Summer19UL18_V5_MC"}
EDGE = 5.191


@pytest.mark.realdata
@pytest.mark.parametrize("era", sorted(CAMPAIGNS))
def test_compound_equals_the_levels_inside_the_tables_only(era: str) -> None:
    path = JSONPOG / "POG" / "JME" / f"{era}_UL" / "jet_jerc.json.gz"
    if not path.is_file():
        pytest.skip(f"real correction file absent: {path}")
    cset = correctionlib.CorrectionSet.from_file(str(path))
    campaign = CAMPAIGNS[era]
    rng = np.random.default_rng(5)
    n = 100_000
    eta = np.concatenate([rng.uniform(-EDGE + 1e-3, EDGE - 1e-3, n), rng.uniform(EDGE + 1e-3, 5.2, 2000)])
    inputs = {"JetA": rng.uniform(0.3, 0.7, eta.size), "JetEta": eta, "Rho": rng.uniform(2.0, 60.0, eta.size)}
    raw = rng.exponential(120.0, eta.size) + 8.0

    def evaluate(correction: correctionlib.highlevel.Correction, pt: np.ndarray) -> np.ndarray:
        values = {**inputs, "JetPt": pt}
        return np.asarray(correction.evaluate(*[values[i.name] for i in correction.inputs]))

    total = np.ones_like(raw)
    for level in ("L1FastJet", "L2Relative", "L3Absolute"):
        total = total * evaluate(cset[f"{campaign}_{level}_AK4PFchs"], raw * total)
    compound = evaluate(cset.compound[f"{campaign}_L1L2L3Res_AK4PFchs"], raw)
    inside = np.abs(eta) < EDGE
    np.testing.assert_array_equal((raw * compound)[inside], (raw * total)[inside])
    # beyond the edge: the compound leaves the jets uncorrected, the clipped levels correct them
    assert np.all(compound[~inside] == 1.0)
    inputs["JetEta"] = np.clip(eta, -np.nextafter(EDGE, 0.0), np.nextafter(EDGE, 0.0))
    clipped = np.ones_like(raw)
    for level in ("L1FastJet", "L2Relative", "L3Absolute"):
        clipped = clipped * evaluate(cset[f"{campaign}_{level}_AK4PFchs"], raw * clipped)
    assert np.all(clipped[~inside] != 1.0)
