"""Fire N concurrent REST searches at a local mlflow server and sample pg_stat_activity, to see how
many PostgreSQL connections each uvicorn worker opens (pool default 5 + overflow 10 per engine)."""
import json, sys, threading, time, urllib.request
import psycopg
URL = sys.argv[1]; N = int(sys.argv[2])
body = json.dumps(json.loads(sys.argv[3]) if len(sys.argv) > 3 else {"experiment_ids": ["1"], "filter": "metrics.acc > 0.5", "order_by": ["metrics.loss ASC"], "max_results": 500}).encode()
peak = {"n": 0, "by_state": {}}
stop = False
def sampler():
    with psycopg.connect("host=127.0.0.1 port=55433 user=postgres dbname=mlflow", autocommit=True) as c:
        while not stop:
            rows = c.execute("select state, count(*) from pg_stat_activity where datname='mlflow' and backend_type='client backend' and pid<>pg_backend_pid() group by 1").fetchall()
            n = sum(r[1] for r in rows)
            if n > peak["n"]: peak.update(n=n, by_state=dict(rows))
            time.sleep(0.01)
errors = []
def call():
    try:
        req = urllib.request.Request(URL + "/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=120).read()
    except Exception as e:
        errors.append(repr(e)[:200])
t = threading.Thread(target=sampler); t.start()
t0 = time.time(); ths = [threading.Thread(target=call) for _ in range(N)]
[x.start() for x in ths]; [x.join() for x in ths]
stop = True; t.join()
print(json.dumps({"concurrent_requests": N, "wall_s": round(time.time() - t0, 2), "peak_client_connections": peak, "errors": errors[:3], "n_errors": len(errors)}))
