"""Shared helpers: DB URI, realistic MLflow payload generators, PostgreSQL CPU sampling."""
import os
import random
import time

from mlflow.entities import Metric, Param, RunTag

DB_URI = os.environ.get("ROWSIZE_DB_URI", "postgresql://postgres@127.0.0.1:55432/mlflow")
ARTIFACT_ROOT = "s3://acme-mlflow-artifacts/mlflow"  # realistic remote artifact root (affects runs.artifact_uri)
PG_DATA = "/tmp/rowsize-pg/data"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --- realistic payloads -------------------------------------------------------------------
METRIC_KEYS = ["train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate",
               "grad_norm", "epoch_time_s", "val_f1", "train/throughput", "gpu_mem_gb"]  # avg 10.3 chars

NAMED_PARAMS = ["lr", "batch_size", "epochs", "optimizer", "weight_decay", "momentum", "dropout",
                "seed", "model_name", "num_layers", "hidden_size", "warmup_steps", "scheduler",
                "max_grad_norm", "precision", "num_workers"]


def make_params(rng):
    vals = {
        "lr": f"{rng.choice([1, 2, 3, 5])}e-{rng.randint(2, 5)}", "batch_size": str(rng.choice([16, 32, 64, 128, 256])),
        "epochs": str(rng.randint(1, 100)), "optimizer": rng.choice(["adam", "adamw", "sgd", "lion"]),
        "weight_decay": str(round(rng.random() / 10, 4)), "momentum": "0.9", "dropout": str(round(rng.random() / 2, 2)),
        "seed": str(rng.randint(0, 100000)), "model_name": rng.choice(["resnet50", "vit-b-16", "bert-base-uncased", "llama-3-8b"]),
        "num_layers": str(rng.choice([12, 24, 32])), "hidden_size": str(rng.choice([768, 1024, 4096])),
        "warmup_steps": str(rng.choice([0, 500, 1000])), "scheduler": rng.choice(["cosine", "linear", "constant"]),
        "max_grad_norm": "1.0", "precision": rng.choice(["bf16", "fp16", "fp32"]), "num_workers": str(rng.choice([4, 8])),
    }
    params = [Param(k, vals[k]) for k in NAMED_PARAMS]
    for i in range(len(NAMED_PARAMS), 30):  # param_16 .. param_29: short numbers / strings
        v = rng.choice([str(rng.randint(0, 1000)), f"{rng.random():.6f}", rng.choice(["true", "false", "none", "auto"])])
        params.append(Param(f"param_{i}", v))
    return params  # 30 params


def make_user_tags(rng, i):
    return [
        RunTag("team", rng.choice(["vision", "nlp", "recsys", "speech"])),
        RunTag("dataset", rng.choice(["imagenet-1k", "c4-en-v3", "librispeech-960h", "movielens-25m"])),
        RunTag("model_family", rng.choice(["resnet", "transformer", "two-tower"])),
        RunTag("stage", rng.choice(["dev", "staging", "prod"])),
        RunTag("owner", rng.choice(["alice@example.com", "bob.smith@example.com"])),
        RunTag("ticket", f"ML-{rng.randint(1000, 9999)}"),
        RunTag("framework", rng.choice(["pytorch", "tensorflow", "jax"])),
        RunTag("git_branch", rng.choice(["main", "feature/new-aug", "exp/lr-sweep-42"])),
        RunTag("sweep_id", f"sweep-{i // 50:05d}"),
        RunTag("mlflow.note.content", "baseline run for capacity test"),
    ]  # 10 user tags


def make_system_tags(rng):
    """Tags the fluent API (mlflow.start_run) attaches at create_run time (plus mlflow.runName added by the store)."""
    return [
        RunTag("mlflow.user", rng.choice(["alice", "bob", "svc-training"])),
        RunTag("mlflow.source.name", "/home/alice/projects/train/train.py"),
        RunTag("mlflow.source.type", "LOCAL"),
        RunTag("mlflow.source.git.commit", "%040x" % rng.getrandbits(160)),
    ]


def make_metrics(run_idx, keys, steps, t0_ms):
    """Metrics for one run: all `keys` at every step in `steps`; timestamps in ms (1 step = 1.5 s)."""
    out = []
    for s in steps:
        ts = t0_ms + s * 1500 + run_idx
        for j, k in enumerate(keys):
            out.append(Metric(k, 1.0 / (1 + s) + j * 0.01 + (run_idx % 97) * 1e-4 + random.random() * 1e-3, ts, s))
    return out


# --- PostgreSQL CPU accounting -----------------------------------------------------------------
def _postmaster_pid():
    with open(os.path.join(PG_DATA, "postmaster.pid")) as f:
        return int(f.readline())


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    # fields after comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    return int(rest[1]), int(rest[11]), int(rest[12]), int(rest[13]), int(rest[14])


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pg_cpu_snapshot():
    """CPU ticks of the postgres server: {'backend': client backends, 'background': walwriter,
    checkpointer, autovacuum etc. incl. reaped children (postmaster cutime/cstime)}."""
    pm = _postmaster_pid()
    backend = background = 0
    _, u, s, cu, cs = _stat(pm)
    background += u + s + cu + cs  # exited children (e.g. autovacuum workers) are reaped by postmaster
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        pid = int(d)
        try:
            ppid, u, s, _, _ = _stat(pid)
        except (OSError, ValueError):
            continue
        if ppid != pm:
            continue
        cmd = _cmdline(pid)
        if "127.0.0.1(" in cmd or "[local]" in cmd:  # "postgres: user db host(port) state"
            backend += u + s
        else:
            background += u + s
    return {"backend": backend / CLK_TCK, "background": background / CLK_TCK}


class Meter:
    """Measures wall, client process CPU and PostgreSQL CPU over a block."""

    def __enter__(self):
        self.pg0 = pg_cpu_snapshot()
        self.p0 = time.process_time()
        self.w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.py_cpu = time.process_time() - self.p0
        pg1 = pg_cpu_snapshot()
        self.pg_backend = pg1["backend"] - self.pg0["backend"]
        self.pg_background = pg1["background"] - self.pg0["background"]
        return False
