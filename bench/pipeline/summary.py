"""Summary of bench/pipeline.sh: reads its JSON lines, prints the tables.

Usage: summary.py results.jsonl

Each configuration was timed once per round, rounds interleaving all of
them. A figure is the median over rounds; a ratio is the median over rounds
of the ratio within a round (the two runs compared were minutes, not
seconds, apart at most). Baselines:
  a(M)  unsplit, 1 thread, the same M micro-batches accumulated: the same
        arithmetic as the pipeline (bitwise the same weights), the base of
        the ideal speed-up 2M/(M+1)
  a(1)  unsplit, 1 thread, whole batch
  b     unsplit, 2 BLAS threads, whole batch
  c     PyTorch, whole batch, best of 1 and 2 threads (best within the round)
"""
import json
import statistics
import sys

MIB = 1024.0 * 1024.0


def key(rec):
    r = rec["r"]
    if rec["variant"] == "torch":
        return ("torch", r["width"], r["threads"])
    if r["mode"] == "unsplit":
        return (rec["variant"], r["width"], "unsplit", r["threads"], r["micro"])
    return (rec["variant"], r["width"], "pipe", r["schedule"], r["micro"])


def main():
    recs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    runs = {}  # key -> {round: r}
    for rec in recs:
        runs.setdefault(key(rec), {})[rec["round"]] = rec["r"]
    rounds = sorted({rec["round"] for rec in recs})
    widths = sorted({rec["r"]["width"] for rec in recs}, reverse=True)

    def sps(k, rnd):
        r = runs.get(k, {}).get(rnd)
        return r["samples_per_s"] if r else None

    def torch_best(w, rnd):
        v = [x for x in (sps(("torch", w, 1), rnd), sps(("torch", w, 2), rnd)) if x]
        return max(v) if v else None

    def med(k):
        v = [r["samples_per_s"] for r in runs.get(k, {}).values()]
        return statistics.median(v) if v else float("nan")

    def ratio(num, den):
        """Median over rounds of num(round) / den(round); callables."""
        v = []
        for rnd in rounds:
            a, b = num(rnd), den(rnd)
            if a and b:
                v.append(a / b)
        return statistics.median(v) if v else float("nan")

    print()
    print("Pipeline benchmark: 8 x dense(width) ReLU + head(10), batch 256, SGD momentum;")
    print("pipeline = 2 stages (fc1..fc4 | fc5..fc8+head), 2 pinned threads, 1 BLAS thread")
    print("each. %d interleaved rounds; samples/s are medians over rounds, ratios medians of"
          % len(rounds))
    print("within-round ratios. a(M): unsplit, 1 thread, same M micro-batches; a(1): unsplit,")
    print("1 thread, whole batch; b: unsplit, 2 BLAS threads, whole batch; c: PyTorch, whole")
    print("batch, best of 1 and 2 threads. The machine may be shared with other work.")
    goals = []
    for w in widths:
        t1, t2 = med(("torch", w, 1)), med(("torch", w, 2))
        print()
        print("width %d: PyTorch %s: 1 thread %.0f, 2 threads %.0f samples/s"
              % (w, next((r["r"].get("torch", "") for r in recs if r["variant"] == "torch"), ""),
                 t1, t2))
        for variant in ("as set", "unset"):
            if not any(k[0] == variant and k[1] == w for k in runs):
                continue
            print()
            print("width %d, farm with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE %s"
                  % (w, "as set" if variant == "as set" else "unset for farm's commands"))
            a1 = (variant, w, "unsplit", 1, 1)
            bk = (variant, w, "unsplit", 2, 1)
            print("  unsplit 1 thread: " + ", ".join(
                "M=%d %.0f" % (m, med((variant, w, "unsplit", 1, m))) for m in (1, 2, 4, 8, 16))
                + "; 2 BLAS threads, M=1: %.0f" % med(bk))
            print("  %-3s %-6s %9s %7s %7s %7s %7s %7s %7s %8s %8s"
                  % ("M", "sched", "samples/s", "/a(M)", "/a(1)", "/b", "/c", "bubble",
                     "formula", "buf MiB", "RSS MiB"))
            best = {}
            for m in (1, 2, 4, 8, 16):
                am = (variant, w, "unsplit", 1, m)
                for s in ("1f1b", "gpipe"):
                    pk = (variant, w, "pipe", s, m)
                    if pk not in runs:
                        continue
                    rs = list(runs[pk].values())
                    p = lambda rnd, pk=pk: sps(pk, rnd)
                    row = {
                        "sched": s, "micro": m, "sps": med(pk),
                        "am": ratio(p, lambda rnd, am=am: sps(am, rnd)),
                        "a1": ratio(p, lambda rnd: sps(a1, rnd)),
                        "b": ratio(p, lambda rnd: sps(bk, rnd)),
                        "c": ratio(p, lambda rnd: torch_best(w, rnd)),
                        "bubble": statistics.median(r["bubble_measured"] for r in rs),
                        "formula": rs[0]["bubble_formula"],
                        "buf": rs[0]["buffer_bytes"] / MIB,
                        "rss": statistics.median(r["peak_rss_bytes"] for r in rs) / MIB,
                    }
                    print("  %-3d %-6s %9.0f %7.2f %7.2f %7.2f %7.2f %7.3f %7.3f %8.2f %8.1f"
                          % (m, s, row["sps"], row["am"], row["a1"], row["b"], row["c"],
                             row["bubble"], row["formula"], row["buf"], row["rss"]))
                    if m not in best or row["sps"] > best[m]["sps"]:
                        best[m] = row
            for m in (4, 8, 16):
                o = runs.get((variant, w, "pipe", "1f1b", m))
                g = runs.get((variant, w, "pipe", "gpipe", m))
                if o and g:
                    ob = next(iter(o.values()))["buffer_bytes"]
                    gb = next(iter(g.values()))["buffer_bytes"]
                    print("  memory M=%d: buffers 1f1b %.2f MiB vs gpipe %.2f MiB (%s); "
                          "peak RSS medians 1f1b %.1f MiB, gpipe %.1f MiB"
                          % (m, ob / MIB, gb / MIB, "1f1b lower" if ob < gb else "1f1b NOT lower",
                             statistics.median(r["peak_rss_bytes"] for r in o.values()) / MIB,
                             statistics.median(r["peak_rss_bytes"] for r in g.values()) / MIB))
            if w != 1024 or not best:
                continue
            for m, goal in ((8, 1.6), (16, 1.7)):
                if m in best:
                    r = best[m]
                    for name in ("am", "a1"):
                        goals.append("%s: M=%d (%s) %.2fx %s (ideal %.2f), goal %.1fx: %s"
                                     % (variant, m, r["sched"], r[name],
                                        "a(M)" if name == "am" else "a(1)", 2.0 * m / (m + 1),
                                        goal, "met" if r[name] >= goal else "MISSED"))
            top = max(best.values(), key=lambda r: r["sps"])
            goals.append("%s: best pipeline (M=%d %s, %.0f samples/s) %.2fx c, goal 1.0x: %s"
                         % (variant, top["micro"], top["sched"], top["sps"], top["c"],
                            "met" if top["c"] >= 1.0 else "MISSED"))
    if goals:
        print()
        print("Goals at width 1024 (best schedule per M):")
        for g in goals:
            print("  " + g)


main()
