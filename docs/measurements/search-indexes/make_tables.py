"""Print markdown before/after tables from results/*.json."""
import json, os
R = lambda n: json.load(open(os.path.join(os.path.dirname(__file__) or ".", "results", n + ".json")))
s, f, sn, fn = R("stock"), R("final"), R("stock_noparallel"), R("final_noparallel")
def scans(x):
    return "; ".join(dict.fromkeys(n.replace("Parallel ", "∥") for n in x["scans"]))
print("| query | rows | stock ms | final ms | speedup | stock plan (scan nodes) | final plan (scan nodes) | stock ms, no-parallel | final ms, no-parallel |")
print("|---|---|---|---|---|---|---|---|---|")
for q in s:
    sp = s[q]["median_ms"] / max(f[q]["median_ms"], 0.01)
    print(f"| {q} | {s[q]['rows']} | {s[q]['median_ms']} | {f[q]['median_ms']} | {sp:.0f}x | {scans(s[q])} | {scans(f[q])} | {sn[q]['median_ms']} | {fn[q]['median_ms']} |")
