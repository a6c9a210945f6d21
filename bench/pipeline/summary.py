"""Summary of bench/pipeline.sh: reads its JSON lines, prints the tables.

Usage: summary.py results.jsonl
"""
import json
import sys

MIB = 1024.0 * 1024.0


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    widths = sorted({r["r"]["width"] for r in rows}, reverse=True)
    torch = {}
    for r in rows:
        if r["variant"] == "torch":
            w = r["r"]["width"]
            torch.setdefault(w, []).append(r["r"])
    print()
    print("Pipeline benchmark: 8 x dense(width) ReLU + head(10), batch 256, SGD momentum;")
    print("pipeline = 2 stages (fc1..fc4 | fc5..fc8+head), 2 pinned threads, 1 BLAS thread each.")
    print("Every figure is a median of timed runs (samples/s). The machine may be shared with")
    print("other work: compare figures from one invocation only.")
    goals = []
    for w in widths:
        tb = max(torch.get(w, []), key=lambda t: t["samples_per_s"], default=None)
        if tb is not None:
            others = ", ".join("%d thr %.0f" % (t["threads"], t["samples_per_s"])
                               for t in sorted(torch[w], key=lambda t: t["threads"]))
            print()
            print("width %d: (c) PyTorch %s best of [%s] = %.0f samples/s"
                  % (w, tb.get("torch", ""), others, tb["samples_per_s"]))
        for variant in ("as set", "unset"):
            sel = [r["r"] for r in rows if r["variant"] == variant and r["r"]["width"] == w]
            if not sel:
                continue
            a = next(r for r in sel if r["mode"] == "unsplit" and r["threads"] == 1)
            b = next(r for r in sel if r["mode"] == "unsplit" and r["threads"] == 2)
            c = tb["samples_per_s"] if tb else float("nan")
            label = ("OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as set" if variant == "as set"
                     else "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset")
            print()
            print("width %d, farm with %s" % (w, label))
            print("  %-22s %10s %7s %7s %7s %9s %9s %9s %9s"
                  % ("config", "samples/s", "vs(a)", "vs(b)", "vs(c)", "bubble", "formula",
                     "buf MiB", "RSS MiB"))
            for name, r in (("(a) unsplit 1 thread", a), ("(b) unsplit 2 threads", b)):
                print("  %-22s %10.0f %7.2f %7.2f %7.2f %9s %9s %9s %9.1f"
                      % (name, r["samples_per_s"], r["samples_per_s"] / a["samples_per_s"],
                         r["samples_per_s"] / b["samples_per_s"], r["samples_per_s"] / c,
                         "", "", "", r["peak_rss_bytes"] / MIB))
            best = {}
            for r in sorted((r for r in sel if r["mode"] == "pipe"),
                            key=lambda r: (r["micro"], r["schedule"])):
                name = "pipe %s M=%d" % (r["schedule"], r["micro"])
                print("  %-22s %10.0f %7.2f %7.2f %7.2f %9.3f %9.3f %9.2f %9.1f"
                      % (name, r["samples_per_s"], r["samples_per_s"] / a["samples_per_s"],
                         r["samples_per_s"] / b["samples_per_s"], r["samples_per_s"] / c,
                         r["bubble_measured"], r["bubble_formula"], r["buffer_bytes"] / MIB,
                         r["peak_rss_bytes"] / MIB))
                m = r["micro"]
                if m not in best or r["samples_per_s"] > best[m]["samples_per_s"]:
                    best[m] = r
            for m in (1, 2, 4, 8, 16):
                g = next((r for r in sel if r["mode"] == "pipe" and r["micro"] == m
                          and r["schedule"] == "gpipe"), None)
                o = next((r for r in sel if r["mode"] == "pipe" and r["micro"] == m
                          and r["schedule"] == "1f1b"), None)
                if g and o and m >= 4:
                    print("  memory M=%d: 1f1b buffers %.2f MiB vs gpipe %.2f MiB (%s)"
                          % (m, o["buffer_bytes"] / MIB, g["buffer_bytes"] / MIB,
                             "1f1b lower" if o["buffer_bytes"] < g["buffer_bytes"]
                             else "1f1b NOT lower"))
            if w == 1024:
                for m, goal in ((8, 1.6), (16, 1.7)):
                    if m in best:
                        ratio = best[m]["samples_per_s"] / a["samples_per_s"]
                        goals.append("width %d, %s: M=%d best (%s) %.2fx (a), goal %.1fx: %s"
                                     % (w, variant, m, best[m]["schedule"], ratio, goal,
                                        "met" if ratio >= goal else "MISSED"))
                top = max(best.values(), key=lambda r: r["samples_per_s"])
                ratio = top["samples_per_s"] / c
                goals.append("width %d, %s: best pipeline (M=%d %s) %.2fx (c) PyTorch, goal 1.0x: %s"
                             % (w, variant, top["micro"], top["schedule"], ratio,
                                "met" if ratio >= 1.0 else "MISSED"))
    print()
    print("Goals:")
    for g in goals:
        print("  " + g)


main()
