"""Print the memory planner's error against every measured vLLM calibration point.

Usage: ``python benchmarks/planner_calibration.py``. The points and their sources live in
``tuneship/planning/data/calibration.json``; the tests require every KV-cache prediction
to be within 5 %.
"""

from __future__ import annotations

from tuneship.planning.calibration import load_calibration_data, run_calibration


def main() -> None:
    """Print one row per calibration point, then the sources."""
    results = run_calibration()
    headers = ["point", "model", "setting", "KV measured", "KV planned", "error",
               "tokens measured", "tokens planned", "error"]  # fmt: skip
    rows = []
    for r in results:
        tokens_error = r.tokens_error
        rows.append(
            [
                r.point_id,
                r.model,
                r.setting,
                f"{r.measured_kv_cache_gib:.2f} GiB",
                f"{r.predicted_kv_cache_gib:.2f} GiB",
                f"{r.kv_error:+.2%}",
                f"{r.measured_kv_tokens:,}" if r.measured_kv_tokens else "-",
                f"{r.predicted_kv_tokens:,}",
                f"{tokens_error:+.2%}" if tokens_error is not None else "-",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    worst = max(abs(r.kv_error) for r in results)
    print(f"\nworst KV-cache error: {worst:.2%} over {len(results)} points")
    for r in results:
        if r.kind != "logged":
            print(f"point {r.point_id}: {r.kind}")
    print("\nsources:")
    for key, text in load_calibration_data()["sources"].items():
        print(f"  {key}: {text}")


if __name__ == "__main__":
    main()
