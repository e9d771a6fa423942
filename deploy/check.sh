#!/usr/bin/env bash
# Strict, offline checks of deploy/ and k8s/ (no Docker, no cluster). Usage: deploy/check.sh
#
#  1. tools: kustomize + kubeconform (tests/tools/deploy-tools.sh, cached), PyYAML (pip if missing)
#  2. a temp copy of deploy/ and k8s/ without git-ignored files (no real secrets are read), where
#     `${TTSCM_BIN:-target/debug/ttscm} mesh init` writes k8s/mesh and deploy/mesh and the
#     secrets/*.env.example templates stand in for secrets/*.env
#  3. kustomize build k8s, twice: as shipped, and with components/nats-tls (nats.conf from
#     `mesh init --tls-dir /etc/nats/tls`)
#  4. kubeconform -strict on both renders against the schemas vendored in deploy/schemas
#     (Kubernetes 1.30 + cert-manager; a kind without a schema fails), plus a self-test that a
#     typo'd field is rejected
#  5. policy checks (python, below) of the renders, the sources, compose and the Dockerfile
#  6. when installed: nats-server -t on the generated nats.conf, docker compose config, hadolint
# Prints ok:/FAIL: lines; exits non-zero on any problem.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
TTSCM_BIN=${TTSCM_BIN:-target/debug/ttscm}
[[ $TTSCM_BIN == */* && $TTSCM_BIN != /* ]] && TTSCM_BIN="$REPO/$TTSCM_BIN"

failed=0
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failed=1; }
die() { echo "FAIL: $*"; exit 1; }

# ---- 1. tools --------------------------------------------------------------------------------
if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install --quiet --user pyyaml 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages pyyaml
fi
TOOLS=$(tests/tools/deploy-tools.sh) || die "could not install kustomize/kubeconform (tests/tools/deploy-tools.sh)"
KUSTOMIZE="$TOOLS/kustomize"
KUBECONFORM="$TOOLS/kubeconform"
ok "tools: kustomize $("$KUSTOMIZE" version), kubeconform $("$KUBECONFORM" -v)"

# ---- 2. temp copy + generated mesh -----------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ttscm-deploy-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
SRC="$TMP/src"
list_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard -- deploy k8s rust-toolchain.toml
  else
    find deploy k8s rust-toolchain.toml -type f ! -path '*/mesh/*' ! -path 'k8s/secrets/*.env' \
      ! -name ttscm.env
  fi
}
while IFS= read -r f; do
  [[ -f $f ]] || continue
  mkdir -p "$SRC/$(dirname "$f")"
  cp "$f" "$SRC/$f"
done < <(list_files)
ok "copied $(find "$SRC" -type f | wc -l) files of deploy/ and k8s/ (git-ignored files left out)"

[[ -x $TTSCM_BIN ]] || die "no ttscm binary at $TTSCM_BIN: build it (cargo build) or set TTSCM_BIN"
mesh_init() {  # mesh_init OUT [--tls-dir DIR]
  if ! "$TTSCM_BIN" mesh init --out "$@" >"$TMP/mesh-init.log" 2>&1; then
    cat "$TMP/mesh-init.log"
    die "$TTSCM_BIN mesh init --out $* failed"
  fi
}
mesh_init "$SRC/k8s/mesh"
mesh_init "$SRC/deploy/mesh"
for f in "$SRC"/k8s/secrets/*.env.example; do cp "$f" "${f%.example}"; done
# The TLS variant: its own copy, nats.conf with the certificate directory, the component enabled.
mkdir -p "$TMP/tls" && cp -r "$SRC/k8s" "$TMP/tls/k8s" && rm -rf "$TMP/tls/k8s/mesh"
mesh_init "$TMP/tls/k8s/mesh" --tls-dir /etc/nats/tls
printf '\ncomponents:\n  - components/nats-tls\n' >>"$TMP/tls/k8s/kustomization.yaml"
ok "generated k8s/mesh, deploy/mesh (and a TLS variant) with $TTSCM_BIN mesh init"

# ---- 3. kustomize build ----------------------------------------------------------------------
RENDER="$TMP/render"
mkdir -p "$RENDER"
build() {  # build NAME DIR
  if "$KUSTOMIZE" build "$2" >"$RENDER/$1.yaml" 2>"$TMP/kustomize.err"; then
    ok "kustomize build k8s ($1): $(grep -c '^kind:' "$RENDER/$1.yaml") resources"
  else
    fail "kustomize build k8s ($1): $(cat "$TMP/kustomize.err")"
    : >"$RENDER/$1.yaml"
  fi
}
build base "$SRC/k8s"
build nats-tls "$TMP/tls/k8s"

# ---- 4. kubeconform -strict ------------------------------------------------------------------
SCHEMAS="$REPO/deploy/schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"
conform() {  # conform FILE... ; no -ignore-missing-schemas: a kind without a schema fails
  "$KUBECONFORM" -strict -summary -schema-location "$SCHEMAS" "$@"
}
for r in base nats-tls; do
  if out=$(conform "$RENDER/$r.yaml" 2>&1); then
    ok "kubeconform -strict ($r, Kubernetes 1.30 + cert-manager schemas): ${out##*$'\n'}"
  else
    fail "kubeconform -strict ($r):"$'\n'"$out"
  fi
done
# Self-test: the schema check must reject a typo'd field.
sed '0,/^  selector:/s//  replica: 2\n  selector:/' "$RENDER/base.yaml" >"$TMP/typo.yaml"
if out=$(conform "$TMP/typo.yaml" 2>&1); then
  fail "kubeconform self-test: a Deployment with 'replica:' was accepted"
elif grep -q "additional properties 'replica' not allowed" <<<"$out"; then
  ok "kubeconform self-test: a typo'd field ('replica:') is rejected"
else
  fail "kubeconform self-test: unexpected output: $out"
fi

# ---- 5. policy checks ------------------------------------------------------------------------
SRC="$SRC" RENDER="$RENDER" TLS_MESH="$TMP/tls/k8s/mesh" python3 - <<'PY' || failed=1
import base64, glob, ipaddress, os, re, sys, yaml

SRC, RENDER = os.environ["SRC"], os.environ["RENDER"]
ALLOWED = set("""
TTSCM_CONFIG TTSCM_LISTEN_ADDR TTSCM_DATA_DIR TTSCM_NATS_URL NATS_URL TTSCM_NATS_STREAM_REPLICAS
TTSCM_MONGODB_URI MONGODB_URI
TTSCM_MONGODB_DATABASE TTSCM_LOG TTSCM_LOG_FORMAT TTSCM_OTLP_ENDPOINT TTSCM_REQUEST_TIMEOUT_MS
TTSCM_PUBLIC_URL TTSCM_IDENTITY__SIGNING_KEY TTSCM_IDENTITY__SIGNING_KID TTSCM_VAULT__KEYS
TTSCM_VAULT__CHECKPOINT_KEY
TTSCM_VAULT__ACTIVE_KID TTSCM_ENTRA__TENANT_ID TTSCM_ENTRA__CLIENT_ID TTSCM_ENTRA__CLIENT_SECRET
TTSCM_CONNECTWISE__SITE TTSCM_CONNECTWISE__COMPANY_ID TTSCM_CONNECTWISE__PUBLIC_KEY
TTSCM_CONNECTWISE__PRIVATE_KEY TTSCM_CONNECTWISE__CLIENT_ID TTSCM_CONNECTWISE__CODEBASE
TTSCM_CONNECTWISE__SYNC_INTERVAL_SECS TTSCM_ENTRA__REDIRECT_URL TTSCM_ENTRA__ALLOWED_TENANTS
TTSCM_ENTRA__ISSUER TTSCM_IDENTITY__ADMIN_EMAILS TTSCM_IDENTITY__ADMIN_OBJECT_IDS
TTSCM_IDENTITY__ISSUER TTSCM_IDENTITY__AUDIENCE TTSCM_IDENTITY__ACCESS_TOKEN_TTL_SECS
TTSCM_IDENTITY__REFRESH_TOKEN_TTL_SECS TTSCM_IDENTITY__SESSION_TTL_SECS TTSCM_EDGE__BODY_LIMIT
TTSCM_EDGE__TOKEN_CACHE_SECS
TTSCM_NATS__USER TTSCM_NATS__PASSWORD TTSCM_NATS__TOKEN TTSCM_NATS__NKEY_SEED
TTSCM_NATS__CREDS_FILE TTSCM_NATS__TLS_CA TTSCM_NATS__TLS_CERT TTSCM_NATS__TLS_KEY
TTSCM_NATS__TLS_REQUIRED TTSCM_MESH__PRINCIPAL_KEY TTSCM_MESH__TRUSTED_KEYS TTSCM_METRICS_ADDR
TTSCM_WEBHOOK__ALLOW_PRIVATE TTSCM_WEBHOOK__ALLOW_HTTP TTSCM_WEBHOOK__DISABLE_AFTER_FAILURES
TTSCM_WEBHOOK__ROTATION_GRACE_SECS TTSCM_WEBHOOK__TIMEOUT_SECS TTSCM_WEBHOOK__CONCURRENCY
TTSCM_WEBHOOK__KEEP_DAYS""".split())
SECRETS = {"TTSCM_MONGODB_URI", "MONGODB_URI", "TTSCM_IDENTITY__SIGNING_KEY", "TTSCM_VAULT__KEYS",
           "TTSCM_VAULT__CHECKPOINT_KEY",
           "TTSCM_ENTRA__CLIENT_SECRET", "TTSCM_CONNECTWISE__PRIVATE_KEY", "TTSCM_NATS__PASSWORD",
           "TTSCM_NATS__TOKEN", "TTSCM_NATS__NKEY_SEED", "TTSCM_MESH__PRINCIPAL_KEY"}
COMPONENTS = ["edge", "identity", "company-sync", "credential", "vault", "webhook"]
MESH_SECRET = {"TTSCM_NATS__NKEY_SEED", "TTSCM_MESH__PRINCIPAL_KEY"}     # mesh/<component>.env
OWN = {  # each component's own secrets (secrets/<component>.env): all it may hold / must hold
    "edge": (set(), set()),
    "identity": ({"TTSCM_MONGODB_URI", "TTSCM_IDENTITY__SIGNING_KEY", "TTSCM_ENTRA__CLIENT_SECRET"},
                 {"TTSCM_MONGODB_URI", "TTSCM_IDENTITY__SIGNING_KEY"}),
    "company-sync": ({"TTSCM_MONGODB_URI", "TTSCM_CONNECTWISE__PRIVATE_KEY"}, {"TTSCM_MONGODB_URI"}),
    "credential": ({"TTSCM_MONGODB_URI"}, {"TTSCM_MONGODB_URI"}),
    "vault": ({"TTSCM_VAULT__KEYS", "TTSCM_VAULT__CHECKPOINT_KEY"},
              {"TTSCM_VAULT__KEYS", "TTSCM_VAULT__CHECKPOINT_KEY"}),
    "webhook": ({"TTSCM_MONGODB_URI"}, {"TTSCM_MONGODB_URI"}),
}
STORE = {"identity", "company-sync", "credential", "webhook"}   # MongoDB egress
METRICS_PORT = 9090                                  # /metrics (TTSCM_METRICS_ADDR in configmap.yaml)
HTTPS = {"identity", "company-sync", "webhook"}     # Entra ID / ConnectWise / webhook receivers
GENERATED = ["nats-config", "ttscm-mesh"] + [f"ttscm-{c}" for c in COMPONENTS]
TLS_CA_DIR = "/etc/ttscm/nats-ca"
SEED = re.compile(r"\bS[UAO][A-Z2-7]{40,}")         # an nkey seed (user/account/operator)
errors, oks = [], []
err = errors.append

def env_check(where, names):
    for n in names:
        if n not in ALLOWED: err(f"{where}: env var {n} is not a known TTSCM setting")

def read_env(path):
    """KEY=VALUE lines -> dict; '# KEY=VALUE' lines -> second dict."""
    active, commented = {}, {}
    for line in open(path):
        line = line.strip()
        m = re.match(r"^#\s*((?:TTSCM_|MONGODB_|NATS_)[A-Z0-9_]*)=(.*)$", line)
        if m: commented[m.group(1)] = m.group(2)
        elif line and not line.startswith("#"):
            k, sep, v = line.partition("=")
            if not sep: err(f"{path}: not KEY=VALUE: {line[:20]}...")
            active[k] = v
    return active, commented

def base_name(name):
    for g in GENERATED:
        if name == g or re.fullmatch(re.escape(g) + r"-[a-z0-9]{10}", name): return g
    return name

# ---- sources ---------------------------------------------------------------------------------
os.chdir(SRC)
docs = {}
for f in sorted(set(glob.glob("k8s/**/*.y*ml", recursive=True) + glob.glob("deploy/**/*.y*ml", recursive=True))):
    try: docs[f] = [d for d in yaml.safe_load_all(open(f)) if d is not None]
    except yaml.YAMLError as e: err(f"{f}: YAML parse error: {e}")
oks.append(f"parsed {len(docs)} YAML files, {sum(map(len, docs.values()))} documents")

kust = (docs.get("k8s/kustomization.yaml") or [{}])[0]
listed = set(kust.get("resources", []))
for f in docs:
    if f.startswith("k8s/") and "/" not in f[4:] and f != "k8s/kustomization.yaml" and f[4:] not in listed:
        err(f"{f} not listed in k8s/kustomization.yaml resources")
for r in listed:
    if not os.path.exists(os.path.join("k8s", r)): err(f"k8s/kustomization.yaml lists missing {r}")
for f, ds in docs.items():
    for d in ds:
        if f.startswith("k8s/") and isinstance(d, dict) and d.get("kind") == "Secret":
            err(f"{f}: a Secret manifest; secrets come only from secretGenerator (git-ignored env files)")
gens = {g["name"]: g for g in kust.get("secretGenerator", [])}
for c in COMPONENTS:
    want = [f"mesh/{c}.env"] + ([f"secrets/{c}.env"] if OWN[c][0] else [])
    got = gens.get(f"ttscm-{c}", {})
    if got.get("envs") != want or set(got) - {"name", "envs"}:
        err(f"k8s/kustomization.yaml: secretGenerator ttscm-{c} must be envs {want}, got {got}")
if set(gens) != {f"ttscm-{c}" for c in COMPONENTS}: err(f"secretGenerator: unexpected {sorted(gens)}")
cmg = {g["name"]: g for g in kust.get("configMapGenerator", [])}
if cmg.get("nats-config", {}).get("files") != ["nats.conf=mesh/nats.conf"]: err("configMapGenerator nats-config must be files [nats.conf=mesh/nats.conf]")
if cmg.get("ttscm-mesh", {}).get("envs") != ["mesh/mesh.env"]: err("configMapGenerator ttscm-mesh must be envs [mesh/mesh.env]")
comp = (docs.get("k8s/components/nats-tls/kustomization.yaml") or [{}])[0]
if comp.get("kind") != "Component": err("k8s/components/nats-tls/kustomization.yaml must be a kustomize Component")

examples = sorted(glob.glob("k8s/secrets/*.env.example"))
for c in COMPONENTS:
    may, must = OWN[c]
    path = f"k8s/secrets/{c}.env.example"
    if not may:
        if os.path.exists(path): err(f"{path}: {c} has no secrets of its own besides mesh/{c}.env")
        continue
    if not os.path.exists(path): err(f"{path} missing"); continue
    active, commented = read_env(path)
    keys = set(active) | set(commented)
    if keys != may: err(f"{path}: keys {sorted(keys)} must be exactly {c}'s own secrets {sorted(may)}")
    if not must <= set(active): err(f"{path}: {sorted(must - set(active))} must be set (not commented)")
    for k, v in {**active, **commented}.items():
        if "CHANGE_ME" not in v: err(f"{path}: {k} must be a CHANGE_ME placeholder")
for p in examples:
    if os.path.basename(p)[:-len(".env.example")] not in COMPONENTS: err(f"{p}: not a component")
oks.append(f"sources: kustomization, secret templates ({len(examples)}), no Secret manifests")

# ---- generated mesh (the `ttscm mesh init` contract these manifests rely on) -----------------
for out in ("k8s/mesh", "deploy/mesh", os.environ["TLS_MESH"]):
    want = {"nats.conf", "mesh.env", "integrator.nk"} | {f"{c}.env" for c in COMPONENTS}
    have = set(os.listdir(out))
    if not want <= have: err(f"mesh init {out}: missing {sorted(want - have)}"); continue
    for c in COMPONENTS:
        a, _ = read_env(f"{out}/{c}.env")
        if set(a) != MESH_SECRET: err(f"mesh init {out}/{c}.env: keys {sorted(a)}, want {sorted(MESH_SECRET)}")
        if not a.get("TTSCM_NATS__NKEY_SEED", "").startswith("SU"): err(f"mesh init {out}/{c}.env: nkey seed must start SU")
        if any(v[:1] in "'\"" for v in a.values()): err(f"mesh init {out}/{c}.env: quoted value (kustomize keeps quotes)")
    a, _ = read_env(f"{out}/mesh.env")
    if set(a) != {"TTSCM_MESH__TRUSTED_KEYS"}: err(f"mesh init {out}/mesh.env: keys {sorted(a)}")
    named = {p.split(":")[0] for p in a.get("TTSCM_MESH__TRUSTED_KEYS", "").split(",")}
    if named != set(COMPONENTS): err(f"mesh init {out}/mesh.env: trusted keys name {sorted(named)}")
    if not open(f"{out}/integrator.nk").read().strip().startswith("SU"): err(f"mesh init {out}/integrator.nk: not an nkey seed")
oks.append("mesh init output: nats.conf, mesh.env, integrator.nk, <component>.env with the expected keys")

# ---- renders ---------------------------------------------------------------------------------
def sel_match(sel, labels):
    if any(labels.get(k) != v for k, v in sel.get("matchLabels", {}).items()): return False
    for e in sel.get("matchExpressions", []):
        k, op, vals = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(k) not in vals: return False
        if op == "NotIn" and labels.get(k) in vals: return False
        if op == "Exists" and k not in labels: return False
        if op == "DoesNotExist" and k in labels: return False
    return True

def check_render(variant):
    objs = [d for d in yaml.safe_load_all(open(f"{RENDER}/{variant}.yaml")) if d]
    if not objs: return  # kustomize failed; reported already
    tls = variant == "nats-tls"
    W = lambda m: err(f"[{variant}] {m}")
    kinds = lambda k: [d for d in objs if d["kind"] == k]
    ns = kinds("Namespace")
    if [n["metadata"]["name"] for n in ns] != ["ttscm"]: W("need exactly the Namespace ttscm")
    elif ns[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
        W("Namespace ttscm must enforce the restricted Pod Security Standard")
    for d in objs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "ttscm":
            W(f"{d['kind']} {d['metadata']['name']}: not in namespace ttscm")

    cms = {base_name(d["metadata"]["name"]): d for d in kinds("ConfigMap")}
    for name, d in cms.items():
        data = d.get("data", {})
        for k, v in data.items():
            if k in SECRETS: W(f"ConfigMap {name}: secret {k} (secrets go in the component's Secret)")
            if SEED.search(str(v)) or "PRIVATE KEY" in str(v): W(f"ConfigMap {name}/{k}: holds a seed or private key")
        if name != "nats-config": env_check(f"[{variant}] ConfigMap {name}", data)
    cfg = cms.get("ttscm-config", {}).get("data", {})
    if cfg.get("TTSCM_NATS_STREAM_REPLICAS") not in ("1", "3"): W("ttscm-config: TTSCM_NATS_STREAM_REPLICAS must be 1 (single node) or 3")
    url = cfg.get("TTSCM_NATS_URL", "")
    if tls:
        if not url.startswith("tls://"): W(f"ttscm-config: TTSCM_NATS_URL must be tls://, got {url}")
        if cfg.get("TTSCM_NATS__TLS_REQUIRED") != "true": W("ttscm-config: TTSCM_NATS__TLS_REQUIRED must be true")
        if cfg.get("TTSCM_NATS__TLS_CA") != f"{TLS_CA_DIR}/ca.crt": W(f"ttscm-config: TTSCM_NATS__TLS_CA must be {TLS_CA_DIR}/ca.crt")
    elif not url.startswith("nats://") or any(k.startswith("TTSCM_NATS__TLS") for k in cfg):
        W("ttscm-config: without the TLS component, nats:// and no TLS settings")
    if set(cms.get("ttscm-mesh", {}).get("data", {})) != {"TTSCM_MESH__TRUSTED_KEYS"}: W("ConfigMap ttscm-mesh must hold TTSCM_MESH__TRUSTED_KEYS only")
    conf = cms.get("nats-config", {}).get("data", {}).get("nats.conf", "")
    for needle in ("accounts", "jetstream", "/data", "4222", "8222", "nkey"):
        if needle not in conf: W(f"nats-config: nats.conf lacks '{needle}'")
    if len(re.findall(r"\bU[A-Z2-7]{55}\b", conf)) < len(COMPONENTS) + 1: W("nats-config: need one nkey user per component plus the integrator")
    has_tls = re.search(r"^\s*tls\s*[{:]", conf, re.M)
    if tls and not (has_tls and all(f"/etc/nats/tls/{f}" in conf for f in ("tls.crt", "tls.key", "ca.crt"))):
        W("nats-config: with the TLS component nats.conf needs tls { /etc/nats/tls/tls.crt, tls.key, ca.crt } (mesh init --tls-dir /etc/nats/tls)")
    if not tls and has_tls: W("nats-config: a tls block but no TLS component mounting the certificate")

    secrets = {}
    for d in kinds("Secret"):
        name = base_name(d["metadata"]["name"])
        data = {k: base64.b64decode(v).decode() for k, v in d.get("data", {}).items()}
        data.update(d.get("stringData", {}))
        secrets[name] = data
    for c in COMPONENTS:
        keys = set(secrets.get(f"ttscm-{c}", {}))
        may, must = OWN[c]
        if not (MESH_SECRET | must) <= keys <= (MESH_SECRET | may):
            W(f"Secret ttscm-{c}: keys {sorted(keys)}; must hold {sorted(MESH_SECRET | must)}, may hold {sorted(MESH_SECRET | may)}")
        env_check(f"[{variant}] Secret ttscm-{c}", keys)
    for name in set(secrets) - {f"ttscm-{c}" for c in COMPONENTS}: W(f"unexpected Secret {name}")

    deps = {}
    images = set()
    for d in kinds("Deployment"):
        name, spec = d["metadata"]["name"], d["spec"]["template"]["spec"]
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True: W(f"{name}: pod securityContext.runAsNonRoot must be true")
        if spec.get("automountServiceAccountToken") is not False: W(f"{name}: automountServiceAccountToken must be false")
        if any(d["spec"]["template"]["metadata"]["labels"].get(k) != v for k, v in d["spec"]["selector"]["matchLabels"].items()):
            W(f"{name}: selector does not match template labels")
        if "replicas" in d["spec"]: W(f"{name}: replicas belong to its HorizontalPodAutoscaler; do not set them")
        for v in spec.get("volumes", []):
            if "secret" in v:
                items = [i["key"] for i in v["secret"].get("items", [])]
                if not (tls and v["secret"]["secretName"] == "nats-tls" and items == ["ca.crt"]):
                    W(f"{name}: volume {v['name']} mounts Secret {v['secret']['secretName']} {items or '(all keys)'}; components get only ca.crt of nats-tls")
        if tls and not any(m["mountPath"] == TLS_CA_DIR for c in spec["containers"] for m in c.get("volumeMounts", [])):
            W(f"{name}: the NATS CA must be mounted at {TLS_CA_DIR}")
        for c in spec["containers"]:
            where = f"{name}/{c['name']}"
            images.add(c.get("image"))
            args = c.get("args", [])
            comp = args[2] if args[:2] == ["serve", "--only"] and len(args) == 3 else None
            if comp not in COMPONENTS: W(f"{where}: args must be serve --only <component>, got {args}"); continue
            deps[comp] = d
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}): W(f"{where}: resources.{kind}.{r} missing")
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True: W(f"{where}: readOnlyRootFilesystem must be true")
            if sc.get("allowPrivilegeEscalation") is not False: W(f"{where}: allowPrivilegeEscalation must be false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []): W(f"{where}: must drop ALL capabilities")
            names = []
            for e in c.get("env", []):
                names.append(e["name"])
                vf = e.get("valueFrom", {})
                if "secretKeyRef" in vf and base_name(vf["secretKeyRef"]["name"]) != f"ttscm-{comp}":
                    W(f"{where}: secretKeyRef to {vf['secretKeyRef']['name']}; only its own Secret ttscm-{comp}")
                elif "value" in e and e["name"] in SECRETS: W(f"{where}: secret {e['name']} given as plain value")
            refs = []
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    cm = base_name(ef["configMapRef"]["name"]); refs.append(("cm", cm))
                    if cm not in cms: W(f"{where}: unknown ConfigMap {cm}")
                    else: names += list(cms[cm].get("data", {}))
                if "secretRef" in ef:
                    s = base_name(ef["secretRef"]["name"]); refs.append(("secret", s))
                    names += list(secrets.get(s, {}))
            if sorted(refs) != sorted([("cm", "ttscm-config"), ("cm", "ttscm-mesh"), ("secret", f"ttscm-{comp}")]):
                W(f"{where}: envFrom must be ConfigMaps ttscm-config, ttscm-mesh and its own Secret ttscm-{comp} only, got {refs}")
            env_check(f"[{variant}] {where}", names)
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            # Every component serves /metrics on its own port (TTSCM_METRICS_ADDR), scraped
            # through the pod's prometheus.io annotations.
            if ports.get("metrics") != METRICS_PORT: W(f"{where}: needs the port metrics: {METRICS_PORT}")
            ann = d["spec"]["template"]["metadata"].get("annotations", {})
            if (ann.get("prometheus.io/scrape"), ann.get("prometheus.io/port"), ann.get("prometheus.io/path")) != ("true", str(METRICS_PORT), "/metrics"):
                W(f"{where}: pod annotations prometheus.io/scrape \"true\", port \"{METRICS_PORT}\", path /metrics")
            if comp == "edge":
                if 3000 not in ports.values(): W(f"{where}: edge must expose 3000")
                for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    hg = c.get(probe, {}).get("httpGet", {})
                    if hg.get("path") != path or ports.get(hg.get("port"), hg.get("port")) != 3000:
                        W(f"{where}: {probe} must GET {path} on 3000")
            elif set(ports) != {"metrics"}: W(f"{where}: only edge serves the API; no port but metrics")
    if set(deps) != set(COMPONENTS): W(f"Deployments for {sorted(deps)}; need {COMPONENTS}")
    if len(images) != 1: W(f"Deployments use different images: {images}")

    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in kinds("HorizontalPodAutoscaler")}
    pdbs = kinds("PodDisruptionBudget")
    for c in COMPONENTS:
        h = hpas.get(f"ttscm-{c}")
        if not h: W(f"no HorizontalPodAutoscaler for ttscm-{c}"); continue
        s = h["spec"]
        if h["apiVersion"] != "autoscaling/v2" or s["scaleTargetRef"].get("kind") != "Deployment": W(f"HPA ttscm-{c}: autoscaling/v2 on the Deployment")
        if not any(m.get("type") == "Resource" and m["resource"]["name"] == "cpu" and m["resource"]["target"]["type"] == "Utilization" for m in s.get("metrics", [])):
            W(f"HPA ttscm-{c}: needs a cpu Utilization metric")
        lo = s.get("minReplicas", 1)
        if s["maxReplicas"] < lo: W(f"HPA ttscm-{c}: maxReplicas < minReplicas")
        if c == "edge" and lo < 2: W("HPA ttscm-edge: minReplicas must be >= 2")
        labels = deps[c]["spec"]["template"]["metadata"]["labels"] if c in deps else {}
        mine = [p for p in pdbs if sel_match(p["spec"]["selector"], labels)]
        if len(mine) != 1: W(f"ttscm-{c}: need exactly one PodDisruptionBudget, got {len(mine)}")
        else:
            p = mine[0]["spec"]
            if not (p.get("maxUnavailable") == 1 or (p.get("minAvailable") == 1 and lo >= 2)):
                W(f"PDB for {c}: maxUnavailable 1, or minAvailable 1 with minReplicas >= 2")
    if not [d for d in kinds("Service") if d["spec"].get("selector", {}).get("app.kubernetes.io/component") == "edge"]: W("no Service for edge")

    sts = [d for d in kinds("StatefulSet") if d["metadata"]["name"] == "nats"]
    if not sts: W("no nats StatefulSet"); return
    s = sts[0]; spec = s["spec"]["template"]["spec"]; c = spec["containers"][0]
    if not c["image"].startswith("nats:2.10"): W("nats: image must be nats:2.10")
    if c.get("args") != ["-c", "/etc/nats/nats.conf"]: W(f"nats: args must be -c /etc/nats/nats.conf, got {c.get('args')}")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    m = mounts.get("/etc/nats/nats.conf") or mounts.get("/etc/nats")
    if not m or base_name(vols.get(m["name"], {}).get("configMap", {}).get("name", "")) != "nats-config":
        W("nats: nats.conf must come from the nats-config ConfigMap at /etc/nats/nats.conf")
    if "/data" not in mounts or mounts["/data"]["name"] not in [t["metadata"]["name"] for t in s["spec"].get("volumeClaimTemplates", [])]:
        W("nats: /data must be the PVC")
    t = mounts.get("/etc/nats/tls")
    if tls and not (t and vols.get(t["name"], {}).get("secret", {}).get("secretName") == "nats-tls"): W("nats: Secret nats-tls must be mounted at /etc/nats/tls")
    if not tls and t: W("nats: /etc/nats/tls mounted without the TLS component")
    if not c.get("resources", {}).get("limits"): W("nats: no resource limits")
    if s["spec"]["serviceName"] not in [d["metadata"]["name"] for d in kinds("Service")]: W("nats: no Service")
    if tls:
        certs = {d["spec"]["secretName"]: d for d in kinds("Certificate")}
        if "nats-tls" not in certs: W("no cert-manager Certificate for Secret nats-tls")
        elif not {"nats", "nats.ttscm.svc"} <= set(certs["nats-tls"]["spec"].get("dnsNames", [])): W("Certificate nats-tls: dnsNames must cover nats and nats.ttscm.svc")

    # NetworkPolicies: evaluate what each pod may send and receive.
    nps = kinds("NetworkPolicy")
    pods = {comp: d["spec"]["template"]["metadata"]["labels"] for comp, d in deps.items()}
    pods["nats"] = s["spec"]["template"]["metadata"]["labels"]
    if not any(p["spec"]["podSelector"] == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in nps):
        W("NetworkPolicy: need a default deny (podSelector {}, policyTypes Ingress and Egress, no rules)")
    for p in nps:
        if not p["spec"].get("policyTypes"): W(f"NetworkPolicy {p['metadata']['name']}: set policyTypes explicitly")
    def peer(pr, where):
        if "ipBlock" in pr:
            b = pr["ipBlock"]
            if ipaddress.ip_network(b["cidr"]).prefixlen == 0:
                closed = [ipaddress.ip_network(x) for x in b.get("except", [])]
                for must in (["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"] if ":" not in b["cidr"] else ["fc00::/7", "fe80::/10"]):
                    if not any(ipaddress.ip_network(must).subnet_of(x) for x in closed if x.version == ipaddress.ip_network(must).version):
                        W(f"{where}: {b['cidr']} must except {must} (cluster, private and metadata addresses)")
                return "internet"
            return "ip"
        if "namespaceSelector" in pr:
            n = pr["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
            if not n: W(f"{where}: namespaceSelector must name one namespace (kubernetes.io/metadata.name)")
            return {"kube-system": "dns", "monitoring": "monitoring"}.get(n, "namespace")
        if "podSelector" in pr:
            return "pods:" + ",".join(sorted(k for k, l in pods.items() if sel_match(pr["podSelector"], l)))
        W(f"{where}: empty peer"); return "?"
    def flows(labels, direction):
        key, side = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        out = set()
        for p in nps:
            if direction not in p["spec"].get("policyTypes", []) or not sel_match(p["spec"]["podSelector"], labels): continue
            for i, r in enumerate(p["spec"].get(key, [])):
                where = f"NetworkPolicy {p['metadata']['name']} {key}[{i}]"
                if not r.get(side): W(f"{where}: no '{side}' = any address; name the peers"); continue
                if not r.get("ports"): W(f"{where}: no ports = every port; name them"); continue
                for pr in r[side]:
                    for pt in r["ports"]:
                        out.add((pt.get("protocol", "TCP"), pt["port"], peer(pr, where)))
        return out
    ttscm_pods = "pods:" + ",".join(sorted(COMPONENTS))
    dns = {("UDP", 53, "dns"), ("TCP", 53, "dns")}
    for comp, labels in pods.items():
        if comp == "nats":
            want_out, want_in = dns, {("TCP", 4222, ttscm_pods), ("TCP", 8222, "monitoring")}
        else:
            want_out = dns | {("TCP", 4222, "pods:nats"), ("TCP", 4317, "namespace"), ("TCP", 4318, "namespace")}
            if comp in STORE: want_out |= {("TCP", 27017, "ip")}
            if comp in HTTPS: want_out |= {("TCP", 443, "internet")}
            want_in = {("TCP", METRICS_PORT, "monitoring")} | ({("TCP", 3000, "namespace")} if comp == "edge" else set())
        for direction, want in (("Egress", want_out), ("Ingress", want_in)):
            got = flows(labels, direction)
            if got != want:
                W(f"NetworkPolicy {direction.lower()} of {comp}: unexpected {sorted(got - want)}, missing {sorted(want - got)}")
    oks.append(f"[{variant}] {len(objs)} resources: per-component Secrets and envFrom, ConfigMaps without secrets, "
               f"HPA+PDB per component, NATS from nats.conf, NetworkPolicies (default deny + {len(nps) - 1})")

check_render("base")
check_render("nats-tls")

# The example alerting rules (a plain Prometheus rules file, not rendered by kustomize): each
# alert the docs name is there and reads a metric TTSCM exports.
rules_file = os.path.join(SRC, "k8s/monitoring/ttscm-alerts.yaml")
try:
    rules = {r.get("alert"): r for g in yaml.safe_load(open(rules_file))["groups"] for r in g["rules"]}
    for alert, metric in (("TTSCMAuditCopyLagging", "ttscm_audit_copy_pending_entries"),
                          ("TTSCMCompanySyncFailing", "ttscm_company_sync_last_success_timestamp_seconds"),
                          ("TTSCMWebhookBacklog", "ttscm_webhook_pending_deliveries"),
                          ("TTSCMWebhookDeliveriesGivenUp", "ttscm_webhook_attempts_total")):
        r = rules.get(alert)
        if not r: err(f"{rules_file}: no alert {alert}")
        elif metric not in r.get("expr", "") or not r.get("for"): err(f"{rules_file}: {alert} must read {metric} and have a `for`")
    oks.append(f"alert rules: {sorted(a for a in rules if a)}")
except (OSError, KeyError, TypeError, yaml.YAMLError) as e:
    err(f"{rules_file}: {e}")

# ---- compose ---------------------------------------------------------------------------------
def compose_env_files(n, s):
    files = []
    for ef in s.get("env_file", []):
        p = ef["path"] if isinstance(ef, dict) else ef
        files.append(p)
        full = os.path.normpath(os.path.join("deploy", p))
        if not os.path.exists(full):
            if not (isinstance(ef, dict) and ef.get("required") is False): err(f"compose {n}: env_file {full} missing")
            continue
        active, _ = read_env(full)
        env_check(full, active)
        for k, v in active.items():
            if full.endswith(".example") and k in SECRETS and "CHANGE_ME" not in v: err(f"{full}: {k} must be a CHANGE_ME placeholder")
        if p.startswith("mesh/") and isinstance(ef, dict) and ef.get("required") is False: err(f"compose {n}: {p} must be required")
    return files

compose = (docs.get("deploy/compose.yaml") or [{}])[0]
services = compose.get("services", {})
ttscm_svcs = {n: s for n, s in services.items() if n in COMPONENTS}
if set(ttscm_svcs) != set(COMPONENTS): err(f"compose: need services {COMPONENTS}")
nats = services.get("nats", {})
if nats.get("command") != ["-c", "/etc/nats/nats.conf"]: err("compose nats: command must be -c /etc/nats/nats.conf")
if "./mesh/nats.conf:/etc/nats/nats.conf:ro" not in nats.get("volumes", []): err("compose nats: mount ./mesh/nats.conf:/etc/nats/nats.conf:ro")
if not any(str(v).split(":")[1:2] == ["/data"] for v in nats.get("volumes", [])): err("compose nats: a volume at /data (JetStream)")
if not str(services.get("mongo", {}).get("image", "")).startswith("mongo:7"): err("compose: mongo:7 missing")
if len({s.get("image") for s in ttscm_svcs.values()}) != 1: err("compose: ttscm services use different images")
for n, s in ttscm_svcs.items():
    if s.get("command") != ["serve", "--only", n]: err(f"compose {n}: command must be serve --only {n}")
    if (n == "edge") != bool(s.get("ports")): err(f"compose {n}: only edge publishes a port")
    if n == "edge" and not any(str(p).endswith(":3000") for p in s["ports"]): err("compose edge: publish 3000")
    env_check(f"compose {n}", s.get("environment", {}))
    for e in s.get("environment", {}):
        if e in SECRETS - {"TTSCM_MONGODB_URI", "MONGODB_URI"}: err(f"compose {n}: secret {e} inline; use env_file")
    files = compose_env_files(n, s)
    mesh = sorted(p for p in files if p.startswith("mesh/"))
    if mesh != sorted(["mesh/mesh.env", f"mesh/{n}.env"]): err(f"compose {n}: env_file must include mesh/mesh.env and only its own mesh/{n}.env, got {mesh}")
tlsc = (docs.get("deploy/compose.tls.yaml") or [{}])[0].get("services", {})
if "./mesh/tls:/etc/nats/tls:ro" not in tlsc.get("nats", {}).get("volumes", []): err("compose.tls.yaml nats: mount ./mesh/tls:/etc/nats/tls:ro")
for n in COMPONENTS:
    s = tlsc.get(n, {})
    env = s.get("environment", {})
    env_check(f"compose.tls.yaml {n}", env)
    if not str(env.get("TTSCM_NATS_URL", "")).startswith("tls://") or env.get("TTSCM_NATS__TLS_REQUIRED") != "true" \
            or env.get("TTSCM_NATS__TLS_CA") != f"{TLS_CA_DIR}/ca.crt":
        err(f"compose.tls.yaml {n}: TTSCM_NATS_URL tls://, TTSCM_NATS__TLS_REQUIRED true, TTSCM_NATS__TLS_CA {TLS_CA_DIR}/ca.crt")
    if s.get("volumes") != [f"./mesh/tls/ca.crt:{TLS_CA_DIR}/ca.crt:ro"]: err(f"compose.tls.yaml {n}: mount only ./mesh/tls/ca.crt")
oks.append("compose: nats from mesh/nats.conf, each component its own mesh env file; compose.tls.yaml")

# ---- Dockerfile ------------------------------------------------------------------------------
df = open("deploy/Dockerfile").read()
stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", df, re.M | re.I)
if stages[:1] != [("rust:1.95-bookworm", "builder")]: err(f"Dockerfile: first stage must be rust:1.95-bookworm AS builder, got {stages[:1]}")
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
build_at = df.find("cargo build --release")
for needle in ("CARGO_PROFILE_RELEASE_DEBUG=false", "CARGO_PROFILE_RELEASE_STRIP=true"):
    at = df.find(needle)
    if at < 0 or at > build_at: err(f"Dockerfile: {needle} before the release build (no debug info in the image)")
user = re.findall(r"^USER\s+(\S+)", df, re.M)
if not user or user[-1].split(":")[0] in ("root", "0"): err("Dockerfile: must end as a non-root USER")
if re.search(r"^HEALTHCHECK", df, re.M): err("Dockerfile: no HEALTHCHECK (k8s probes)")
ign = "deploy/Dockerfile.dockerignore"
if not os.path.exists(ign) or not {"target/", "data/"} <= set(open(ign).read().split()): err(f"{ign}: must ignore target/ and data/")
oks.append("Dockerfile: stages, caches, non-root, release binary without debug info")

for o in oks: print("ok:", o)
errors = list(dict.fromkeys(errors))
for e in errors: print("FAIL:", e)
sys.exit(1 if errors else 0)
PY

# ---- git-ignored: generated mesh and operators' secrets must never be committed ---------------
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  ignored_ok=1
  for p in k8s/mesh/nats.conf k8s/mesh/edge.env k8s/secrets/identity.env deploy/mesh/vault.env \
           deploy/mesh/integrator.nk deploy/ttscm.env; do
    git check-ignore -q "$p" || { fail ".gitignore: $p must be ignored"; ignored_ok=0; }
  done
  if git check-ignore -q k8s/secrets/identity.env.example; then
    fail ".gitignore: the *.env.example templates must not be ignored"; ignored_ok=0
  fi
  tracked=$(git ls-files -- k8s/mesh deploy/mesh 'k8s/secrets/*.env' deploy/ttscm.env)
  [[ -z $tracked ]] || { fail "committed secrets: $tracked"; ignored_ok=0; }
  ((ignored_ok == 0)) || ok ".gitignore: mesh/, secrets/*.env and ttscm.env ignored, none tracked"
fi

# ---- 6. when installed -----------------------------------------------------------------------
if NATS=$(command -v nats-server); then
  if out=$("$NATS" -t -c "$SRC/k8s/mesh/nats.conf" 2>&1); then ok "nats-server -t: generated nats.conf parses"
  else fail "nats-server -t on the generated nats.conf: $out"; fi
  # With --tls-dir: a throwaway self-signed certificate where the tls block points.
  if command -v openssl >/dev/null 2>&1; then
    mkdir -p "$TMP/certs"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=nats \
      -keyout "$TMP/certs/tls.key" -out "$TMP/certs/tls.crt" 2>/dev/null
    cp "$TMP/certs/tls.crt" "$TMP/certs/ca.crt"
    mesh_init "$TMP/tls-test" --tls-dir "$TMP/certs"
    if out=$("$NATS" -t -c "$TMP/tls-test/nats.conf" 2>&1); then ok "nats-server -t: nats.conf with --tls-dir parses and loads the certificate"
    else fail "nats-server -t on nats.conf with --tls-dir: $out"; fi
  fi
else
  echo "skip: nats-server -t (nats-server not on PATH)"
fi
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  (cd "$SRC/deploy" && docker compose -f compose.yaml config -q && docker compose -f compose.yaml -f compose.tls.yaml config -q) \
    && ok "docker compose config (with and without compose.tls.yaml)" || fail "docker compose config"
else
  echo "skip: docker compose config (docker not installed)"
fi
if command -v hadolint >/dev/null 2>&1; then hadolint deploy/Dockerfile && ok "hadolint" || fail "hadolint"
else echo "skip: hadolint (not installed)"; fi

if ((failed)); then echo "deploy/check.sh: FAILED"; exit 1; fi
echo "deploy/check.sh: PASS"
