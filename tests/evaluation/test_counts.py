from collections import Counter

import pytest

from medfake.evaluation.build import BuildError, _load_reals, build_dataset, plan_build


def test_per_generator_counts_override(real_folder):
    recs = _load_reals(real_folder, None, 0)
    items = plan_build(recs, real_folder, synthetic=["dcgan"], manipulated=["copy-move", "retouch"], per_modality=4,
                       real_per_modality=None, seed=0, counts={"retouch": 1, "dcgan": 2})
    c = Counter((i["kind"], i["generator"]) for i in items)
    mods = len({r.modality for r in recs})
    assert c[("manipulated", "copy-move")] == 4 * mods
    assert c[("manipulated", "retouch")] == 1 * mods
    assert c[("synthetic", "dcgan")] == 2 * mods


def test_counts_must_name_included_generators(real_folder, tmp_path):
    with pytest.raises(BuildError, match="does not include"):
        build_dataset(real_folder, tmp_path / "b", synthetic=[], manipulated=["retouch"], per_modality=1,
                      counts={"repaint": 3}, progress=False)
    assert not (tmp_path / "b" / "manifest.csv").exists()
