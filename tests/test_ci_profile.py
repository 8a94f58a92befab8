"""Table tests of the CI resource profile (pure: options in, overrides and changes out)."""

from __future__ import annotations

import pytest

from ci_serve.smoke.profile import CPU_SHARE, HeadCapacity, apply_profile, fit_to_head

TWO = HeadCapacity(cpus=2)
FRUIT = {"fruit": {"MangoStand": {"user_config": {"price": 3}}, "OrangeStand": {}, "PearStand": {},
                   "FruitMarket": {"num_replicas": 2}}}

CASES = [
    # name, apps, head, expected overrides (subset checked exactly per deployment), expected change fields
    ("fits already: nothing changes",
     {"a": {"D": {"ray_actor_options": {"num_cpus": 0.5}}}}, TWO, {}, []),
    ("fruit on 2 CPUs: replicas to 1, CPUs scaled to fit",
     FRUIT, TWO,
     {("fruit", "FruitMarket"): {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.37}},
      ("fruit", "MangoStand"): {"ray_actor_options": {"num_cpus": 0.37}}},
     ["num_replicas", "ray_actor_options.num_cpus"]),
    ("one big replica is scaled down",
     {"a": {"D": {"ray_actor_options": {"num_cpus": 8}}}}, HeadCapacity(cpus=4),
     {("a", "D"): {"ray_actor_options": {"num_cpus": 3.0}}}, ["ray_actor_options.num_cpus"]),
    ("GPU dropped on a head without GPUs, other actor options kept",
     {"a": {"D": {"ray_actor_options": {"num_cpus": 1, "num_gpus": 1, "memory": 1000}}}}, TWO,
     {("a", "D"): {"ray_actor_options": {"num_cpus": 1, "memory": 1000}}}, ["ray_actor_options.num_gpus"]),
    ("GPU scaled on a head with one GPU",
     {"a": {"D": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0.1, "num_gpus": 2}}}},
     HeadCapacity(cpus=2, gpus=1),
     {("a", "D"): {"ray_actor_options": {"num_cpus": 0.1, "num_gpus": 1.0}}}, ["ray_actor_options.num_gpus"]),
    ("custom resource the head lacks is removed",
     {"a": {"D": {"ray_actor_options": {"num_cpus": 0.1, "resources": {"accelerator": 1}}}}}, TWO,
     {("a", "D"): {"ray_actor_options": {"num_cpus": 0.1, "resources": {}}}},
     ["ray_actor_options.resources.accelerator"]),
    ("autoscaling bounds clamped, min 0 kept",
     {"a": {"D": {"autoscaling_config": {"min_replicas": 0, "max_replicas": 10, "target_ongoing_requests": 3},
                  "ray_actor_options": {"num_cpus": 0.1}}}}, TWO,
     {("a", "D"): {"autoscaling_config": {"min_replicas": 0, "max_replicas": 1, "target_ongoing_requests": 3}}},
     ["autoscaling_config.max_replicas"]),
    ("autoscaling initial replicas clamped",
     {"a": {"D": {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 3, "max_replicas": 4},
                  "ray_actor_options": {"num_cpus": 0.1}}}}, TWO,
     {("a", "D"): {"autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}}},
     ["autoscaling_config.min_replicas", "autoscaling_config.max_replicas", "autoscaling_config.initial_replicas"]),
    ("num_replicas auto gets explicit bounds",
     {"a": {"D": {"num_replicas": "auto", "ray_actor_options": {"num_cpus": 0.1}}}}, TWO,
     {("a", "D"): {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}}},
     ["autoscaling_config.min_replicas", "autoscaling_config.max_replicas"]),
    ("zero-CPU replicas stay zero",
     {"a": {"D": {"num_replicas": 1, "ray_actor_options": {"num_cpus": 0}},
            "E": {"ray_actor_options": {"num_cpus": 3}}}}, TWO,
     {("a", "E"): {"ray_actor_options": {"num_cpus": 1.5}}}, ["ray_actor_options.num_cpus"]),
    ("placement group bundles scaled",
     {"a": {"D": {"placement_group_bundles": [{"CPU": 2}, {"CPU": 2, "GPU": 1}],
                  "ray_actor_options": {"num_cpus": 2}}}}, TWO,
     {("a", "D"): {"placement_group_bundles": [{"CPU": 0.75}, {"CPU": 0.75}],
                   "ray_actor_options": {"num_cpus": 0.75}}},
     ["placement_group_bundles", "ray_actor_options.num_cpus"]),
    ("two apps share one budget",
     {"a": {"D": {}}, "b": {"E": {}}}, TWO,
     {("a", "D"): {"ray_actor_options": {"num_cpus": 0.75}}, ("b", "E"): {"ray_actor_options": {"num_cpus": 0.75}}},
     ["ray_actor_options.num_cpus"]),
]


@pytest.mark.parametrize("apps,head,overrides,fields", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_fit_to_head(apps, head, overrides, fields) -> None:
    profile = fit_to_head(apps, head)
    got = {(a, d): o for a, ds in profile.overrides.items() for d, o in ds.items()}
    for key, want in overrides.items():
        assert got.get(key) == want, key
    if not overrides:
        assert got == {}
    assert sorted({c.field for c in profile.changes}) == sorted(set(fields))
    assert profile.cpus_after <= head.cpus * CPU_SHARE + 1e-9


def test_change_lines_are_readable() -> None:
    profile = fit_to_head(FRUIT, TWO)
    lines = [str(c) for c in profile.changes]
    assert "fruit/FruitMarket: num_replicas 2 -> 1" in lines
    assert "fruit/PearStand: ray_actor_options.num_cpus 1 -> 0.37" in lines


def test_apply_profile_updates_and_adds_entries() -> None:
    config = {"applications": [{"name": "fruit", "import_path": "fruit:deployment_graph",
                                "deployments": [{"name": "FruitMarket", "num_replicas": 2},
                                                {"name": "PearStand", "user_config": {"price": 4}}]},
                               {"name": "other", "import_path": "x:y"}]}
    out = apply_profile(config, fit_to_head(FRUIT, TWO))
    deps = {d["name"]: d for d in out["applications"][0]["deployments"]}
    assert deps["FruitMarket"] == {"name": "FruitMarket", "num_replicas": 1, "ray_actor_options": {"num_cpus": 0.37}}
    assert deps["PearStand"]["user_config"] == {"price": 4}  # untouched fields stay
    assert deps["OrangeStand"] == {"name": "OrangeStand", "ray_actor_options": {"num_cpus": 0.37}}
    assert "deployments" not in out["applications"][1]
    assert config["applications"][0]["deployments"][0]["num_replicas"] == 2  # input not modified
