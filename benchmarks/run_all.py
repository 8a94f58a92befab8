"""Run every benchmark of issue 7 in one invocation and write docs/benchmarks.md.

    .venv/bin/python -m benchmarks.run_all [--quick] [--only smoke deploy gate validate image] [--out FILE]

A full run takes about 10 minutes on 2 cores; --quick (one smoke pair, one round of each) about 5.
Nothing here is asserted in the test suite: the numbers are measured and written down, with the
machine, the date and the load average at the time (other work on the machine slows every number).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import bench_deploy
from benchmarks.bench_deploy import SPLIT
from benchmarks.common import REPO, machine, median, table

BENCHES = ("smoke", "validate", "deploy", "gate", "image")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def bench_smoke(pairs: int) -> dict:
    """Alternating pairs of bench_smoke's own run_smoke / run_manual (its method, its numbers)."""
    from benchmarks import bench_smoke as bs

    smoke_runs, manual_runs, failures = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        for i in range(pairs):
            order = [("smoke", bs.run_smoke), ("manual", bs.run_manual)]
            if i % 2:
                order.reverse()
            for name, fn in order:
                try:
                    result = fn(Path(tmp))
                except SystemExit as exc:  # a failed run is reported, the others still count
                    failures.append(f"pair {i + 1} {name}: {' '.join(str(exc).split())[:200]}")
                    print(f"  {failures[-1]}", flush=True)
                    continue
                (smoke_runs if name == "smoke" else manual_runs).append(result)
                print(f"  pair {i + 1} {name}: {result['total_s']:.1f}s ok={result['ok']}", flush=True)
    if not smoke_runs or not manual_runs:
        raise SystemExit("; ".join(failures) or "no run")
    smoke_med = median([r["total_s"] for r in smoke_runs])
    manual_med = median([r["total_s"] for r in manual_runs])
    steps = list(smoke_runs[0]["timings"]) if smoke_runs else []
    ratio = smoke_med / manual_med
    return {"smoke_s": [round(r["total_s"], 1) for r in smoke_runs],
            "manual_s": [round(r["total_s"], 1) for r in manual_runs],
            "smoke_median_s": round(smoke_med, 1), "manual_median_s": round(manual_med, 1),
            "ratio": round(ratio, 2), "met": ratio <= 0.6 and all(r["ok"] for r in smoke_runs + manual_runs),
            "smoke_steps": {k: round(median([r["timings"].get(k, 0.0) for r in smoke_runs]), 2) for k in steps},
            "smoke_python_s": round(median([r["total_s"] - sum(r["timings"].values()) for r in smoke_runs]), 2),
            "manual_first_answer_s": round(median([r["first_answer_s"] for r in manual_runs]), 1),
            "manual_stop_s": round(median([r["stop_s"] for r in manual_runs]), 1),
            "manual_with_stop_s": round(median([r.get("with_stop_s", r["total_s"]) for r in manual_runs]), 1),
            "manual_left": sum(r["left_after_120s"] for r in manual_runs), "failures": failures}


def run_one(name: str, quick: bool) -> dict:
    if name == "smoke":
        return bench_smoke(1 if quick else 3)
    if name == "validate":
        from benchmarks import bench_validate
        runs = 3 if quick else 5
        cpu0 = bench_deploy.children_cpu()
        result = bench_validate.bench(200, runs)
        result["cpu_s"] = round((bench_deploy.children_cpu() - cpu0) / runs, 3)
        return result
    if name == "deploy":
        return bench_deploy.bench(1 if quick else 3)
    if name == "gate":
        from benchmarks import bench_gate
        return bench_gate.bench((1, 10), 1 if quick else 3)
    from benchmarks import bench_image
    return bench_image.bench()


def yes(met: bool | None) -> str:
    return "not measured" if met is None else ("yes" if met else "**no**")


def targets(r: dict) -> list[list[object]]:
    rows: list[list[object]] = []
    s = r.get("smoke")
    rows.append(["smoke <= 0.6x `serve run` + curl, to its last checked answer",
                 f"{s['smoke_median_s']} s vs {s['manual_median_s']} s = **{s['ratio']}x**" if s else "not measured",
                 yes(s["met"] if s else None)])
    d = r.get("deploy")
    rows.append(["unchanged deploy < 2 s, no write",
                 f"{d['noop_median_s']} s (CPU {d.get('noop_cpu_median_s')} s), {d['noop_writes']} write(s)"
                 if d else "not measured",
                 yes(d["noop_met"] if d else None)])
    rows.append(["blue-green: checks passed -> live answers from new < 1 s",
                 f"median {d['switch_latency_median_s']} s, max {d['switch_latency_max_s']} s" if d else "not measured",
                 yes(d["switch_met"] if d else None)])
    g = r.get("gate")
    rows.append(["gate notices RUNNING < 0.5 s", f"first ready poll: max {g['max_first_poll_s']} s; gate returns "
                 f"(after its confirming poll): median {g['median_notice_s']} s, max {g['max_notice_s']} s"
                 if g else "not measured", yes(g["notice_met"] if g else None)])
    rows.append(["gate <= 4 dashboard requests/s, 1 or 10 apps",
                 f"max {g['max_requests_in_1s']} in any 1 s window, {g['max_rate_per_s']}/s average at most"
                 if g else "not measured", yes(g["rate_met"] if g else None)])
    v = r.get("validate")
    rows.append(["validate --no-import, 200 apps < 1 s",
                 f"{v['median_s']} s (CPU {v.get('cpu_s')} s)" if v else "not measured",
                 yes(v["met"] if v else None)])
    i = r.get("image")
    rows.append(["action image < 700 MiB", f"{i['size_mib']} MiB" if i and i.get("size_mib") else
                 (i or {}).get("note", "not measured"), yes(i["met"] if i else None)])
    return rows


def render(r: dict, meta: dict) -> str:
    out = ["# Benchmarks", "",
           f"Generated by `.venv/bin/python -m benchmarks.run_all{' --quick' if meta['quick'] else ''}` on "
           f"{meta['date']} ({meta['minutes']:.1f} min). Machine: {meta['machine']}.", "",
           f"Load average (1/5/15 min) at the start: {meta['load_start']}; at the end: {meta['load_end']}. "
           + ("**The machine was loaded by other work while this ran** (other test suites starting Ray heads): "
              "every time below is slower than on an idle runner, and ratios between runs of one invocation "
              "are the fairer reading. For the single-process targets (unchanged deploy, validate) the CPU time the "
              "process used is given too: it hardly grows with the load and is close to what an idle runner "
              "takes, waiting on the network aside." if meta["loaded"] else "The machine was otherwise idle."), "",
           "## Targets (issue 7)", "", table(["target", "measured", "met?"], targets(r)), ""]
    if r.get("errors"):
        out += ["Benchmarks that failed to run:", ""] + [f"- {k}: `{v}`" for k, v in r["errors"].items()] + [""]
    s = r.get("smoke")
    if s:
        out += ["## Smoke test: `ci-serve smoke` vs `serve run` + curl, to its last checked answer", "",
                "Same app (examples/fruit, 4 deployments, 1 replica of 0.25 CPU each), same requests, "
                "alternating runs; see benchmarks/bench_smoke.py.", "",
                table(["", "median s", "runs"], [
                    ["ci-serve smoke", s["smoke_median_s"], " ".join(map(str, s["smoke_s"]))],
                    ["serve run + curl, to the last checked answer", s["manual_median_s"],
                     " ".join(map(str, s["manual_s"]))],
                    ["(beside: the same, then a clean stop)", s.get("manual_with_stop_s", ""), ""]]), "",
                *([f"Failed runs, left out of the medians: {'; '.join(s['failures'])}.", ""] if s.get("failures")
                  else []),
                "Where the manual way's time goes (medians): start to first right answer (Ray start, controller, "
                f"proxy, replicas) {s['manual_first_answer_s']} s; the rest is the remaining checks. "
                f"A clean stop until no process is left takes another {s['manual_stop_s']} s, not counted "
                "(a CI runner reaps what is left). Both sides poll every 0.2 s.", "",
                "Where the smoke test's time goes (median per step of its report):", "",
                table(["step", "median s"], [[k, v] for k, v in s["smoke_steps"].items()]
                      + [["(Python start-up and imports, outside steps)", s["smoke_python_s"]]]), ""]
    d = r.get("deploy")
    if d:
        out += ["## Deploy", "", "One head (2 CPUs), app tests/apps/deploy_v1|v2 on /shop, every request through a "
                "counting proxy; see benchmarks/bench_deploy.py.", "",
                f"First deploy (nothing live, blue-green): {d['first_deploy_s']} s.", "",
                "Unchanged redeploy (whole `ci-serve deploy` process; in-process = from the command's start, "
                "after Python start-up and the CLI's imports; the steps are the report's):", "",
                table(["total s", "CPU s", "in-process s", "steps s", "result", "PUTs", "GETs",
                       "last_deployed_time_s moved"],
                      [[e["total_s"], e.get("cpu_s"), e["in_process_s"],
                        ", ".join(f"{k} {v}" for k, v in (e.get("steps") or {}).items()), e["result"], e["puts"],
                        e["gets"], e["last_deployed_time_moved"]] for e in d["noop"]]), "",
                "`ship code` imports Ray to hash the working_dir the way Ray does (about 0.5 s of imports "
                "on an idle core); the hash decides whether the code changed, so it is not skipped.", "",
                "Blue-green release (code changed), median split from the report's steps:", "",
                table(["part", "median s"], [[k, v] for k, v in d["blue_green_split_s"].items()]), "",
                "Steps per group: " + "; ".join(f"{k} = {' + '.join(v)}" for k, v in SPLIT.items())
                + " (a step a deploy does not have counts 0).", "",
                table(["release", "total s", "switch latency s", "live polls", "failed live polls"],
                      [[n + 1, e["total_s"], e["switch_latency_s"], e["live_polls"], e["live_poll_errors"]]
                       for n, e in enumerate(d["blue_green"])]), "",
                "Switch latency: from the log line closing `check candidate` to the first answer from the new "
                "version on the live prefix (a client polling it every 20 ms).", ""]
    g = r.get("gate")
    if g:
        out += ["## Gate", "", "N-1 steady applications, one new one written beside them; the product's gate "
                "(`wait_ready` over a default DashboardClient) through a counting proxy, a separate poller reading "
                "the dashboard every 50 ms for the reference; see benchmarks/bench_gate.py. Latencies are relative "
                "to the poller's first sighting of RUNNING + HEALTHY (its own resolution is ~50 ms + one round "
                "trip, so small negative values mean a tie).", "",
                table(["apps on cluster", "gate s", "requests", "req/s", "max in 1 s", "first ready poll s",
                       "gate returned s"],
                      [[e["apps_on_cluster"], e["gate_s"], e["requests"], e["rate_per_s"], e["max_in_1s"],
                        e["first_ready_poll_s"], e["notice_s"]] for e in g["runs"]]), "",
                "The gate returns after two ready polls in a row (docs/deploy.md), so its return is the first "
                "ready poll plus one poll interval (0.3 s) and a round trip.", ""]
    v = r.get("validate")
    if v:
        out += ["## Validate", "", f"{v['name']}, whole process: median {v['median_s']} s "
                f"(runs {', '.join(map(str, v['runs']))}); see benchmarks/bench_validate.py.", ""]
    i = r.get("image")
    if i:
        out += ["## Action image", ""]
        if i.get("size_mib"):
            out += [f"`{i['name'].split()[-1]}` as built by tests/container: {i['size_mib']} MiB "
                    f"({i['size_bytes'] / 1e6:.0f} MB). Layers:", "",
                    table(["MiB", "layer"], [[la["size_mib"], f"`{la['created_by']}`"] for la in i["layers"]]), ""]
        else:
            out += [i["note"], ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one smoke pair and one round of each (about 5 min)")
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES))
    parser.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    first_load = os.getloadavg()[0]
    meta = {"quick": args.quick, "machine": machine(), "load_start": load(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    results: dict = {"errors": {}}
    for name in args.only:
        print(f"== {name} (load {load()})", flush=True)
        try:
            results[name] = run_one(name, args.quick)
        except (Exception, SystemExit) as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            results["errors"][name] = " ".join(str(exc).split())[:300] or type(exc).__name__
    meta.update(load_end=load(), minutes=(time.monotonic() - started) / 60,
                loaded=max(first_load, os.getloadavg()[0]) > (os.cpu_count() or 1) * 0.75)
    text = render(results, meta)
    Path(args.out).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, **results}, indent=2, default=str))
    print(text)
    return 0 if not results["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
