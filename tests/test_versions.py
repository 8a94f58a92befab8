"""Table tests for the Ray pin and version-skew rules (ci_serve.cluster.versions), and the summary's lines."""

from __future__ import annotations

import pytest

from ci_serve.action.summary import ray_section
from ci_serve.cluster import versions
from ci_serve.errors import InputError


@pytest.mark.parametrize("text,pin", [
    ("ray[serve]==2.40.0\nfastapi==0.115.6\n", "2.40.0"),
    ("fastapi==0.115.6\nray==2.9.3  # the cluster's\n", "2.9.3"),
    ("RAY[serve,default] === 2.52.1 ; python_version >= '3.9'\n", "2.52.1"),
    ("ray[serve]>=2.40\n", None),  # a range: no exact version to compare
    ("# ray[serve]==2.40.0\nrequests\n", None),
    ("raydp==1.6.0\n", None),  # another package whose name starts with "ray"
    ("", None),
], ids=["serve-extra", "plain-with-comment", "extras-marker-triple-eq", "range", "commented-out", "raydp", "empty"])
def test_pinned_ray(text: str, pin: str | None) -> None:
    assert versions.pinned_ray(text) == pin


@pytest.mark.parametrize("line,mentions", [
    ("ray[serve]==2.40.0", True), ("ray", True), ("ray>=2", True), ("ray ; python_version>'3'", True),
    ("raydp==1.6.0", False), ("ray-tune-extra", False), ("fastapi", False), ("# ray", False),
])
def test_mentions_ray(line: str, mentions: bool) -> None:
    assert versions.mentions_ray(line) is mentions


@pytest.mark.parametrize("cluster,app,same,expect", [
    ("2.40.0", "2.60.0", False, ["FastAPI", "token authentication"]),
    ("2.60.0", "2.40.0", False, ["FastAPI", "token authentication"]),  # either direction
    ("2.52.1", "2.60.0", False, []),  # nothing known between them, still a mismatch
    ("2.9.3", "2.40.0", False, ["DAGDriver"]),
    ("2.40.0", "2.40.0", True, []),
    ("2.40", "2.40.0", True, []),
], ids=["old-cluster", "new-cluster", "nothing-known", "very-old", "same", "same-short"])
def test_compare(cluster: str, app: str, same: bool, expect: list[str]) -> None:
    skew = versions.compare(cluster, app, "requirements.txt")
    assert skew.same is same
    assert len(skew.differences) == len(expect)
    for word, text in zip(expect, skew.differences, strict=True):
        assert word in text
    assert bool(skew.lines()) is not same


def test_check_skew_warns_records_and_refuses_when_required(tmp_path, capsys) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("ray[serve]==2.60.0\n")
    skew = versions.check_skew("2.40.0", str(req), None, require_same=False)
    assert skew is not None and skew["same"] is False
    err = capsys.readouterr().err
    assert "WARN  Ray version skew: the cluster runs Ray 2.40.0, the app pins Ray 2.60.0" in err
    assert "token authentication exists only from Ray 2.52" in err
    assert skew["cluster"] == "2.40.0" and skew["app"] == "2.60.0"
    with pytest.raises(InputError) as info:
        versions.check_skew("2.40.0", None, "2.60.0", require_same=True)
    assert info.value.exit_code == 2 and "--require-same-ray" in info.value.message
    assert isinstance(info.value, versions.SkewRefused) and info.value.record["same"] is False  # for the report
    same = versions.check_skew("2.60.0", None, "2.60.0", require_same=True)
    assert same is not None and same["same"] is True


def test_require_same_ray_without_a_pin_is_bad_input() -> None:
    with pytest.raises(InputError, match="needs the app's Ray version"):
        versions.check_skew("2.60.0", None, None, require_same=True)
    assert versions.check_skew("2.60.0", None, None, require_same=False) is None


def test_missing_requirements_file_is_bad_input(tmp_path) -> None:
    with pytest.raises(InputError, match="cannot read the requirements file"):
        versions.app_ray_pin(str(tmp_path / "nope.txt"), None)


def test_summary_says_which_ray_ran_and_warns_of_skew() -> None:
    lines = "\n".join(ray_section({"ray_version": "2.40.0", "ray_skew": versions.compare(
        "2.40.0", "2.60.0", "requirements.txt").as_dict()}))
    assert "Ran on **Ray 2.40.0**." in lines
    assert "Ray version skew:** the cluster runs Ray 2.40.0, the app pins Ray 2.60.0 (requirements.txt)" in lines
    assert "token authentication" in lines
    assert ray_section({"ray_skew": versions.compare("2.60.0", "2.60.0", "x").as_dict()}) == []


@pytest.mark.parametrize("line,cluster,words,recorded", [
    ("ray[serve,default]>=2.40,<2.41", "2.60.0", ["Ray version skew: the cluster runs Ray 2.60.0, outside the range"],
     True),
    ("ray[serve,default]>=2.40,<2.41", "2.40.0", ["allows a range of Ray", "not compared"], False),
    ("fastapi==0.115.6", "2.40.0", ["pins no Ray", "not compared"], False),
], ids=["range-missed", "range-met", "no-pin"])
def test_skew_without_an_exact_pin_says_why(tmp_path, capsys, line: str, cluster: str, words: list[str],
                                            recorded: bool) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(f"# app\n\n{line}\n")
    skew = versions.check_skew(cluster, str(req), None, require_same=False)
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert (skew is not None) is recorded
    if skew is not None:  # the job summary shows it like an exact-pin skew
        assert skew["same"] is False
        with pytest.raises(InputError, match="outside the range") as info:
            versions.check_skew(cluster, str(req), None, require_same=True)
        assert info.value.exit_code == 2
