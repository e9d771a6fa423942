#!/usr/bin/env bash
# Static checks for deploy/ and k8s/ (no Docker, no cluster). Usage: deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install --quiet --user pyyaml 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages pyyaml
fi

python3 - <<'PY'
import glob, os, re, sys, yaml

ALLOWED = set("""
TTSCM_CONFIG TTSCM_LISTEN_ADDR TTSCM_DATA_DIR TTSCM_NATS_URL NATS_URL TTSCM_NATS_STREAM_REPLICAS
TTSCM_MONGODB_URI MONGODB_URI
TTSCM_MONGODB_DATABASE TTSCM_LOG TTSCM_LOG_FORMAT TTSCM_OTLP_ENDPOINT TTSCM_REQUEST_TIMEOUT_MS
TTSCM_PUBLIC_URL TTSCM_IDENTITY__SIGNING_KEY TTSCM_IDENTITY__SIGNING_KID TTSCM_VAULT__KEYS
TTSCM_VAULT__ACTIVE_KID TTSCM_ENTRA__TENANT_ID TTSCM_ENTRA__CLIENT_ID TTSCM_ENTRA__CLIENT_SECRET
TTSCM_CONNECTWISE__SITE TTSCM_CONNECTWISE__COMPANY_ID TTSCM_CONNECTWISE__PUBLIC_KEY
TTSCM_CONNECTWISE__PRIVATE_KEY TTSCM_CONNECTWISE__CLIENT_ID TTSCM_CONNECTWISE__CODEBASE
TTSCM_CONNECTWISE__SYNC_INTERVAL_SECS TTSCM_ENTRA__REDIRECT_URL TTSCM_ENTRA__ALLOWED_TENANTS
TTSCM_ENTRA__ISSUER TTSCM_IDENTITY__ADMIN_EMAILS TTSCM_IDENTITY__ADMIN_OBJECT_IDS
TTSCM_IDENTITY__ISSUER TTSCM_IDENTITY__AUDIENCE TTSCM_IDENTITY__ACCESS_TOKEN_TTL_SECS
TTSCM_IDENTITY__REFRESH_TOKEN_TTL_SECS TTSCM_IDENTITY__SESSION_TTL_SECS TTSCM_EDGE__BODY_LIMIT
TTSCM_EDGE__TOKEN_CACHE_SECS""".split())
SECRETS = {"TTSCM_MONGODB_URI", "MONGODB_URI", "TTSCM_IDENTITY__SIGNING_KEY", "TTSCM_VAULT__KEYS",
           "TTSCM_ENTRA__CLIENT_SECRET", "TTSCM_CONNECTWISE__PRIVATE_KEY"}
COMPONENTS = ["edge", "identity", "company-sync", "credential", "vault"]
errors, notes = [], []
def err(msg): errors.append(msg)

# 1. every YAML parses
docs = {}
files = sorted(set(glob.glob("k8s/**/*.y*ml", recursive=True) + glob.glob("deploy/**/*.y*ml", recursive=True)))
for f in files:
    try:
        docs[f] = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    except yaml.YAMLError as e:
        err(f"{f}: YAML parse error: {e}")
notes.append(f"parsed {len(docs)} YAML files, {sum(map(len, docs.values()))} documents")

def env_check(where, names):
    for n in names:
        if n not in ALLOWED:
            err(f"{where}: env var {n} is not a known TTSCM setting")

# 2. k8s
objs = [(f, d) for f, ds in docs.items() if f.startswith("k8s/") for d in ds]
kust = next((d for f, d in objs if f == "k8s/kustomization.yaml"), None)
if not kust:
    err("k8s/kustomization.yaml missing")
    kust = {}
listed = set(kust.get("resources", []))
for f in docs:
    if f.startswith("k8s/") and f != "k8s/kustomization.yaml":
        base = os.path.relpath(f, "k8s")
        if base == "secret.example.yaml":
            if base in listed:
                err("kustomization must not list the Secret template")
        elif base not in listed:
            err(f"{f} not listed in kustomization.yaml resources")
for r in listed:
    if not os.path.exists(os.path.join("k8s", r)):
        err(f"kustomization lists missing file {r}")
kimages = {i["name"] for i in kust.get("images", [])}

by_kind = lambda k: [(f, d) for f, d in objs if isinstance(d, dict) and d.get("kind") == k]
configmaps = {d["metadata"]["name"]: d.get("data", {}) for _, d in by_kind("ConfigMap")}
secrets = {d["metadata"]["name"]: {**d.get("data", {}), **d.get("stringData", {})} for _, d in by_kind("Secret")}
if not by_kind("Namespace"): err("no Namespace")
if not secrets: err("no Secret template")
for name, data in secrets.items():
    env_check(f"Secret {name}", data)
    for k, v in data.items():
        if k not in SECRETS: err(f"Secret {name}: {k} is not a secret setting (put it in the ConfigMap)")
        if "CHANGE_ME" not in str(v): err(f"Secret {name}: {k} must be a CHANGE_ME placeholder")
for name, data in configmaps.items():
    env_check(f"ConfigMap {name}", data)
    for k in data:
        if k in SECRETS: err(f"ConfigMap {name}: secret {k} belongs in the Secret")

images, seen = set(), set()
for f, d in by_kind("Deployment"):
    name = d["metadata"]["name"]
    spec = d["spec"]["template"]["spec"]
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True: err(f"{name}: pod securityContext.runAsNonRoot must be true")
    sel = d["spec"]["selector"]["matchLabels"]
    if any(d["spec"]["template"]["metadata"]["labels"].get(k) != v for k, v in sel.items()):
        err(f"{name}: selector does not match template labels")
    for c in spec["containers"]:
        where = f"{name}/{c['name']}"
        images.add(c.get("image"))
        args = c.get("args", [])
        comp = args[2] if args[:2] == ["serve", "--only"] and len(args) == 3 else None
        if comp not in COMPONENTS: err(f"{where}: args must be serve --only <component>, got {args}")
        seen.add(comp)
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}): err(f"{where}: resources.{kind}.{r} missing")
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True: err(f"{where}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False: err(f"{where}: allowPrivilegeEscalation must be false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []): err(f"{where}: must drop ALL capabilities")
        names = [e["name"] for e in c.get("env", [])]
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                if ref["name"] not in secrets or ref["key"] not in secrets[ref["name"]]:
                    err(f"{where}: secretKeyRef {ref['name']}/{ref['key']} not in the Secret template")
            elif e.get("name") in SECRETS:
                err(f"{where}: secret {e['name']} given as plain value")
        for ef in c.get("envFrom", []):
            cm = ef.get("configMapRef", {}).get("name")
            if cm is not None:
                if cm not in configmaps: err(f"{where}: unknown ConfigMap {cm}")
                else: names += list(configmaps[cm])
            if "secretRef" in ef: err(f"{where}: use secretKeyRef per key, not envFrom secretRef")
        env_check(where, names)
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if comp == "edge":
            if 3000 not in ports.values(): err(f"{where}: edge must expose 3000")
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                hg = c.get(probe, {}).get("httpGet", {})
                port = ports.get(hg.get("port"), hg.get("port"))
                if hg.get("path") != path or port != 3000:
                    err(f"{where}: {probe} must GET {path} on 3000")
        elif ports:
            err(f"{where}: only edge listens on HTTP; remove ports")
    if comp == "edge" and d["spec"].get("replicas", 1) < 2:
        err(f"{name}: edge needs >= 2 replicas")
missing = set(COMPONENTS) - seen
if missing: err(f"no Deployment for {sorted(missing)}")
if len(images) != 1: err(f"Deployments use different images: {images}")
elif not images <= kimages: err(f"image {images} has no entry in kustomization images")
image = next(iter(images), None)

svc = [d for _, d in by_kind("Service") if d["spec"].get("selector", {}).get("app.kubernetes.io/component") == "edge"]
if not svc: err("no Service for edge")
if not [d for _, d in by_kind("PodDisruptionBudget") if d["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/component") == "edge"]:
    err("no PodDisruptionBudget for edge")
sts = [d for _, d in by_kind("StatefulSet") if d["metadata"]["name"] == "nats"]
if not sts: err("no nats StatefulSet")
else:
    s = sts[0]
    c = s["spec"]["template"]["spec"]["containers"][0]
    if not c["image"].startswith("nats:2.10"): err("nats: image must be nats:2.10")
    if "-js" not in c.get("args", []): err("nats: JetStream (-js) not enabled")
    if not s["spec"].get("volumeClaimTemplates"): err("nats: no PVC")
    if not c.get("resources", {}).get("limits"): err("nats: no resource limits")
    if s["spec"]["serviceName"] not in [d["metadata"]["name"] for _, d in by_kind("Service")]:
        err("nats: no Service")

# 3. compose
compose = docs.get("deploy/compose.yaml", [{}])[0]
ttscm_svcs = {n: s for n, s in compose.get("services", {}).items() if n in COMPONENTS}
if set(ttscm_svcs) != set(COMPONENTS): err(f"compose: need services {COMPONENTS}")
if "-js" not in compose.get("services", {}).get("nats", {}).get("command", []): err("compose: nats needs -js")
if not str(compose.get("services", {}).get("mongo", {}).get("image", "")).startswith("mongo:7"): err("compose: mongo:7 missing")
cimages = {s.get("image") for s in ttscm_svcs.values()}
if len(cimages) != 1: err(f"compose: ttscm services use different images {cimages}")
if image and cimages and next(iter(cimages)).split(":")[0] != image.split(":")[0].split("/")[-1]:
    err(f"compose image {cimages} and k8s image {image} differ in name")
for n, s in ttscm_svcs.items():
    if s.get("command") != ["serve", "--only", n]: err(f"compose {n}: command must be serve --only {n}")
    if (n == "edge") != bool(s.get("ports")): err(f"compose {n}: only edge publishes a port")
    if n == "edge" and not any(str(p).endswith(":3000") for p in s["ports"]): err("compose edge: publish 3000")
    env_check(f"compose {n}", s.get("environment", {}))
    for e in s.get("environment", {}):
        if e in SECRETS - {"TTSCM_MONGODB_URI", "MONGODB_URI"}: err(f"compose {n}: secret {e} inline; use env_file")
    for ef in s.get("env_file", []):
        p = ef["path"] if isinstance(ef, dict) else ef
        full = os.path.normpath(os.path.join("deploy", p))
        if not os.path.exists(full):
            if not (isinstance(ef, dict) and ef.get("required") is False): err(f"compose {n}: env_file {full} missing")
            continue
        keys = []
        for line in open(full):
            line = line.strip()
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                keys.append(k)
                if full.endswith(".example") and k in SECRETS and "CHANGE_ME" not in v:
                    err(f"{full}: {k} must be a CHANGE_ME placeholder")
        env_check(full, keys)

# 4. Dockerfile
df = open("deploy/Dockerfile").read()
stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", df, re.M | re.I)
want = [("rust:1.95-bookworm", "builder")]
if stages[:1] != want: err(f"Dockerfile: first stage must be rust:1.95-bookworm AS builder, got {stages[:1]}")
if len(stages) != 2 or stages[1][0] not in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12", "gcr.io/distroless/cc-debian12:nonroot"):
    err(f"Dockerfile: runtime stage must be debian:bookworm-slim or distroless cc, got {stages[1:]}")
tc = re.search(r'channel\s*=\s*"(\d+\.\d+)', open("rust-toolchain.toml").read())
if tc and f"rust:{tc.group(1)}-" not in df: err(f"Dockerfile: builder does not match rust-toolchain.toml {tc.group(1)}")
for needle, what in [("cargo build --release --locked -p ttscm", "release build"),
                     ("type=cache,target=/usr/local/cargo/registry", "registry cache mount"),
                     ("type=cache,target=/src/target", "target cache mount"),
                     ("ca-certificates", "ca-certificates"), ("EXPOSE 3000", "EXPOSE 3000"),
                     ('ENTRYPOINT ["ttscm"]', "ENTRYPOINT"), ('CMD ["serve"]', "CMD")]:
    if needle not in df: err(f"Dockerfile: {what} missing")
user = re.findall(r"^USER\s+(\S+)", df, re.M)
if not user or user[-1].split(":")[0] in ("root", "0"): err("Dockerfile: must end as a non-root USER")
if re.search(r"^HEALTHCHECK", df, re.M): err("Dockerfile: no HEALTHCHECK (k8s probes)")
ign = "deploy/Dockerfile.dockerignore"
if not os.path.exists(ign) or not {"target/", "data/"} <= set(open(ign).read().split()):
    err(f"{ign}: must ignore target/ and data/")

for n in notes: print("ok:", n)
errors = list(dict.fromkeys(errors))
for e in errors: print("FAIL:", e)
print("PASS" if not errors else f"{len(errors)} problem(s)")
sys.exit(1 if errors else 0)
PY

# Optional deeper checks when the tools happen to be installed (not required here).
if command -v kubectl >/dev/null 2>&1; then kubectl kustomize k8s >/dev/null && echo "ok: kubectl kustomize k8s"; fi
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  docker compose -f deploy/compose.yaml config -q && echo "ok: docker compose config"
fi
if command -v hadolint >/dev/null 2>&1; then hadolint deploy/Dockerfile && echo "ok: hadolint"; fi
