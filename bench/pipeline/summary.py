"""Summary of bench/pipeline.sh: reads its JSON lines, prints the tables.

Usage: summary.py results.jsonl

Baselines, all samples/s medians:
  a(M)  unsplit, 1 thread, the same M micro-batches accumulated: the same
        arithmetic as the pipeline (bitwise the same weights), the base of
        the ideal speed-up 2M/(M+1)
  a(1)  unsplit, 1 thread, whole batch
  b(M), b(1)  the same with 2 BLAS threads
  c     PyTorch, whole batch, best of 1 and 2 threads
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
            torch.setdefault(r["r"]["width"], []).append(r["r"])
    print()
    print("Pipeline benchmark: 8 x dense(width) ReLU + head(10), batch 256, SGD momentum;")
    print("pipeline = 2 stages (fc1..fc4 | fc5..fc8+head), 2 pinned threads, 1 BLAS thread each.")
    print("Figures are medians of timed runs, in samples/s. a(M)/b(M): unsplit with the same M")
    print("micro-batches on 1 thread / 2 BLAS threads; a(1)/b(1): unsplit, whole batch;")
    print("c: PyTorch, whole batch, best of 1 and 2 threads. The machine may be shared with")
    print("other work: compare figures from one invocation only.")
    goals = []
    for w in widths:
        tb = max(torch.get(w, []), key=lambda t: t["samples_per_s"], default=None)
        c = tb["samples_per_s"] if tb else float("nan")
        if tb is not None:
            others = ", ".join("%d thread(s) %.0f" % (t["threads"], t["samples_per_s"])
                               for t in sorted(torch[w], key=lambda t: t["threads"]))
            print()
            print("width %d: c = PyTorch %s, best of [%s] = %.0f"
                  % (w, tb.get("torch", ""), others, c))
        for variant in ("as set", "unset"):
            sel = [r["r"] for r in rows if r["variant"] == variant and r["r"]["width"] == w]
            if not sel:
                continue
            a = {r["micro"]: r for r in sel if r["mode"] == "unsplit" and r["threads"] == 1}
            b = {r["micro"]: r for r in sel if r["mode"] == "unsplit" and r["threads"] == 2}
            label = "as set" if variant == "as set" else "unset for farm's commands"
            print()
            print("width %d, farm with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE %s" % (w, label))
            print("  unsplit:   " + "  ".join("M=%d a %.0f b %.0f" % (m, a[m]["samples_per_s"],
                                                                   b[m]["samples_per_s"])
                                             for m in sorted(a) if m in b))
            print("  %-3s %-6s %9s %7s %7s %7s %7s %7s %7s %7s %8s %8s"
                  % ("M", "sched", "samples/s", "a(M)", "a(1)", "b(M)", "b(1)", "c",
                     "bubble", "formula", "buf MiB", "RSS MiB"))
            best = {}
            pipes = sorted((r for r in sel if r["mode"] == "pipe"),
                           key=lambda r: (r["micro"], r["schedule"]))
            for r in pipes:
                m, v = r["micro"], r["samples_per_s"]
                print("  %-3d %-6s %9.0f %7.2f %7.2f %7.2f %7.2f %7.2f %7.3f %7.3f %8.2f %8.1f"
                      % (m, r["schedule"], v, v / a[m]["samples_per_s"], v / a[1]["samples_per_s"],
                         v / b[m]["samples_per_s"], v / b[1]["samples_per_s"], v / c,
                         r["bubble_measured"], r["bubble_formula"], r["buffer_bytes"] / MIB,
                         r["peak_rss_bytes"] / MIB))
                if m not in best or v > best[m]["samples_per_s"]:
                    best[m] = r
            for m in (4, 8, 16):
                g = next((r for r in pipes if r["micro"] == m and r["schedule"] == "gpipe"), None)
                o = next((r for r in pipes if r["micro"] == m and r["schedule"] == "1f1b"), None)
                if g and o:
                    print("  memory M=%d: buffers 1f1b %.2f MiB, gpipe %.2f MiB (%s); "
                          "peak RSS 1f1b %.1f MiB, gpipe %.1f MiB"
                          % (m, o["buffer_bytes"] / MIB, g["buffer_bytes"] / MIB,
                             "1f1b lower" if o["buffer_bytes"] < g["buffer_bytes"]
                             else "1f1b NOT lower", o["peak_rss_bytes"] / MIB,
                             g["peak_rss_bytes"] / MIB))
            if w != 1024 or not best:
                continue
            for m, goal in ((8, 1.6), (16, 1.7)):
                if m not in best:
                    continue
                r = best[m]
                for base, name in ((a[m], "a(M)"), (a[1], "a(1)")):
                    ratio = r["samples_per_s"] / base["samples_per_s"]
                    goals.append("%s: M=%d best (%s) %.2fx %s (ideal %.2f), goal %.1fx: %s"
                                 % (variant, m, r["schedule"], ratio, name, 2.0 * m / (m + 1),
                                    goal, "met" if ratio >= goal else "MISSED"))
            top = max(best.values(), key=lambda r: r["samples_per_s"])
            ratio = top["samples_per_s"] / c
            goals.append("%s: best pipeline (M=%d %s, %.0f) %.2fx c (PyTorch %.0f), goal 1.0x: %s"
                         % (variant, top["micro"], top["schedule"], top["samples_per_s"], ratio,
                            c, "met" if ratio >= 1.0 else "MISSED"))
    if goals:
        print()
        print("Goals at width 1024:")
        for g in goals:
            print("  " + g)


main()
