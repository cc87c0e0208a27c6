"""benchmarks/sampler_sweep.py --merge-card: a new sweep replaces a modality's sampler only where it is better."""

import pytest


def _sampling(choices: dict, n=32, seed=1, legacy=False):
    setting = {"steps": 50, "eta": 0.0, "guidance": 1.0}
    out = {"per_modality": {m: {"sampler": s, **setting} for m, (s, _) in choices.items()},
           "chosen_on": f"validation-split Fréchet distance, {n} samples per modality and setting (sweep)",
           "fd_val": {m: v for m, (_, v) in choices.items()},
           "fd_test": {m: v + 1 for m, (_, v) in choices.items()}}
    if not legacy:
        out.update(n=n, seed=seed)
    return out


def test_merge_keeps_the_better_choice_per_modality(load_benchmark):
    sw = load_benchmark("sampler_sweep")
    old = _sampling({"brain_mri": ("ddim", 30.0), "chest_xray": ("ddim", 2.6)}, legacy=True)
    new = _sampling({"brain_mri": ("ddpm", 25.0), "chest_xray": ("ddpm", 3.0)})
    merged, kept = sw.merge_sampling(old, new)
    assert kept == ["chest_xray"]
    assert merged["per_modality"]["brain_mri"]["sampler"] == "ddpm" and merged["fd_val"]["brain_mri"] == 25.0
    assert merged["per_modality"]["chest_xray"]["sampler"] == "ddim" and merged["fd_test"]["chest_xray"] == 3.6
    assert "merged with" in merged["chosen_on"] and merged["n"] == 32
    # the inputs are not modified
    assert new["per_modality"]["chest_xray"]["sampler"] == "ddpm"


def test_merge_refuses_distances_from_another_draw(load_benchmark):
    sw = load_benchmark("sampler_sweep")
    old = _sampling({"brain_mri": ("ddim", 30.0)}, n=64)
    with pytest.raises(SystemExit, match="not comparable"):
        sw.merge_sampling(old, _sampling({"brain_mri": ("ddpm", 25.0)}, n=32))
    assert sw.merge_sampling(None, old)[1] == []


def test_merge_keeps_the_best_setting_of_each_sampler(load_benchmark):
    """A card records each sampler's best per modality, so a caller who names the sampler the card did not choose
    (the demo's DDIM, the service's default) still gets a tuned setting after a merge."""
    sw = load_benchmark("sampler_sweep")
    old = _sampling({"brain_mri": ("ddim", 30.0), "chest_xray": ("ddim", 2.6)}, legacy=True)
    new = _sampling({"brain_mri": ("ddpm", 25.0), "chest_xray": ("ddpm", 3.0)})
    new["by_sampler"] = {"ddpm": {m: {"steps": 50, "eta": 0.0, "guidance": 1.0, "fd_val": v, "fd_test": v + 1}
                                  for m, v in new["fd_val"].items()}}
    merged, _ = sw.merge_sampling(old, new)
    assert merged["by_sampler"]["ddim"]["brain_mri"]["fd_val"] == 30.0
    assert merged["by_sampler"]["ddpm"]["chest_xray"]["fd_val"] == 3.0
    assert merged["by_sampler"]["ddpm"]["brain_mri"]["fd_val"] == 25.0
    # a later sweep replaces a sampler's setting only where it is better
    newer = _sampling({"brain_mri": ("ddim", 28.0), "chest_xray": ("ddim", 2.9)})
    newer["by_sampler"] = {"ddim": {m: {"steps": 100, "eta": 1.0, "guidance": 1.0, "fd_val": v, "fd_test": v}
                                    for m, v in newer["fd_val"].items()}}
    again, kept = sw.merge_sampling(merged, newer)
    # brain's overall choice stays the better DDPM (25 < 28), but its DDIM setting is the new, better one
    assert kept == ["brain_mri", "chest_xray"] and again["per_modality"]["brain_mri"]["sampler"] == "ddpm"
    assert again["by_sampler"]["ddim"]["brain_mri"]["steps"] == 100
    assert again["by_sampler"]["ddim"]["chest_xray"]["fd_val"] == 2.6
    assert again["by_sampler"]["ddpm"]["brain_mri"]["fd_val"] == 25.0
