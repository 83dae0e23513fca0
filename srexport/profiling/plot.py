"""`--plot`: a PNG of a profile, latency against patch size and throughput per precision.

matplotlib is optional (the `plot` extra); it is imported only here, when a plot is
asked for, with the Agg backend (no display needed).

Left panel: batch-1 latency per patch (median, p10-p90 band) against the patch edge, one
line per precision, from the profile's `sweep` (or the single measured point without a
sweep). Right panel: output megapixels per second per precision at the profiled patch
edge (patch inference), with the end-to-end throughput of the profiled precision.
"""

from __future__ import annotations

from pathlib import Path

from srexport.lazy import import_pyplot


def _pyplot():
    return import_pyplot()


def _series(profile: dict) -> dict[str, list[dict]]:
    rows = profile.get("sweep") or [{
        "precision": profile["precision"],
        "patch": profile["patch"]["height"],
        "latency_ms": profile["latency_ms"],
        "mpx_per_s": (profile["flops"]["output_shape"][2] * profile["flops"]["output_shape"][3])
        / profile["latency_ms"]["median"] * 1e-3,
    }]
    series: dict[str, list[dict]] = {}
    for row in rows:
        series.setdefault(row["precision"], []).append(row)
    for values in series.values():
        values.sort(key=lambda r: r["patch"])
    return series


def write_plot(profile: dict, path: str | Path) -> Path:
    """Draw `profile` (a `profile_bundle` result) into a PNG at `path`."""
    plt = _pyplot()
    path = Path(path)
    series = _series(profile)
    base = profile["patch"]["height"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for precision, rows in series.items():
        edges = [r["patch"] for r in rows]
        median = [r["latency_ms"]["median"] for r in rows]
        left.plot(edges, median, marker="o", label=precision)
        left.fill_between(edges, [r["latency_ms"]["p10"] for r in rows],
                          [r["latency_ms"]["p90"] for r in rows], alpha=0.2)
    left.set_xlabel("patch edge (graph input pixels)")
    left.set_ylabel("latency per patch, batch 1 (ms)")
    left.set_yscale("log")
    left.grid(True, which="both", alpha=0.3)
    left.legend(title="precision")
    left.set_title("latency vs patch size")

    names, rates = [], []
    for precision, rows in series.items():
        nearest = min(rows, key=lambda r: abs(r["patch"] - base))
        names.append(f"{precision}\n(patch {nearest['patch']})")
        rates.append(nearest["mpx_per_s"])
    bars = right.bar(names, rates, color="tab:blue", alpha=0.8, label="patch inference")
    right.bar_label(bars, fmt="%.3g")
    right.axhline(profile["mpx_per_s"], color="tab:red", linestyle="--",
                  label=f"end to end, {profile['precision']} ({profile['mpx_per_s']:.3g})")
    right.set_ylabel("output Mpx/s")
    right.set_title("throughput per precision")
    right.legend()

    device = profile["device"]
    fig.suptitle(
        f"{profile['model']} {profile['variant']} x{profile['scale']} on {profile['backend']} "
        f"({device['kind']}: {device['name']}, {device['threads']} threads)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
