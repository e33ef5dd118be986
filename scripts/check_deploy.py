"""The checks of scripts/check-deploy that are Python: run by that script with the Python
of its virtualenv (which has kubernetes-validate and PyYAML), one subcommand a check.

    check_deploy.py kustomization   resources listed and present; cross-references
    check_deploy.py kubernetes V..  every manifest (and stdin-free extra files) against the
                                    Kubernetes OpenAPI schemas of versions V.. (strict)
    check_deploy.py metrics         dashboard JSON, alert rules and their tests name only
                                    metrics that /metrics exports; writes the dashboard's
                                    queries as a rule file for promtool to parse
    check_deploy.py dockerfile      the Dockerfile copies what the build reads
    check_deploy.py context DIR     lays out in DIR what the Dockerfile's builder stage
                                    copies (for `cargo metadata` to load there)

Each prints what it checked and exits 1 with one line a problem when something is wrong.
Paths are relative to the repository root (the working directory).
"""

import fnmatch
import json
import os
import re
import sys
from pathlib import Path

BASE = Path("deploy/kubernetes/base")
K8S_ROOT = Path("deploy/kubernetes")
DASHBOARD = Path("deploy/grafana/olivine-dashboard.json")
ALERTS = Path("deploy/prometheus/alerts.yml")
ALERT_TESTS = Path("deploy/prometheus/alerts.test.yml")

# What the kernel's /metrics exports (kernel/src/telemetry.rs and the modules that record
# them). A dashboard or alert that names anything else shows nothing / never fires.
COUNTERS_AND_GAUGES = {
    "olivine_http_requests_total",
    "olivine_db_pool_connections",
    "olivine_db_pool_max_connections",
    "olivine_db_replica_reads_total",
    "olivine_bus_log_head",
    "olivine_bus_consumer_lag_events",
    "olivine_bus_consumer_lag_seconds",
    "olivine_bus_dead_letters",
    "olivine_bus_events_delivered_total",
    "olivine_bus_consumer_failures_total",
    "olivine_bus_wakeup_up",
    "olivine_jobs",
    "olivine_jobs_oldest_queued_age_seconds",
    "olivine_jobs_completed_total",
    "olivine_jobs_failed_total",
    "olivine_jobs_dead_total",
    "olivine_plugin_calls_total",
    "olivine_plugin_auto_disabled_total",
    "olivine_cache_invalidations_total",
    "olivine_cache_misses_total",
    "olivine_rate_limited_total",
    "olivine_rate_limit_redis_errors_total",
}
HISTOGRAMS = {
    "olivine_http_request_duration_seconds",
    "olivine_job_duration_seconds",
    "olivine_plugin_call_duration_seconds",
}
KNOWN_METRICS = COUNTERS_AND_GAUGES | {
    h + suffix for h in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
}

problems = []


def problem(message):
    problems.append(message)
    print(f"  FAIL {message}")


def finish(what):
    if problems:
        print(f"{what}: {len(problems)} problem(s)")
        sys.exit(1)
    print(f"{what}: ok")


def load_yaml_docs(path):
    import yaml

    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def manifest_files():
    """Every YAML file under deploy/kubernetes/ that is a Kubernetes object (not a
    kustomization), sorted."""
    files = sorted(
        p for p in K8S_ROOT.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
    )
    return [p for p in files if p.name not in ("kustomization.yaml", "kustomization.yml")]


# --- kustomization ----------------------------------------------------------------------


def check_kustomization():
    kfile = BASE / "kustomization.yaml"
    if not kfile.is_file():
        problem(f"{kfile} is missing")
        finish("kustomization")
    (kust,) = load_yaml_docs(kfile)
    if kust.get("kind") != "Kustomization":
        problem(f"{kfile}: kind is {kust.get('kind')!r}, not Kustomization")
    if kust.get("namespace"):
        problem(f"{kfile}: the base sets namespace {kust['namespace']!r}; leave it to overlays")
    resources = kust.get("resources") or []
    if len(set(resources)) != len(resources):
        problem(f"{kfile}: a resource is listed twice: {resources}")
    for r in resources:
        if not (BASE / r).exists():
            problem(f"{kfile}: resource {r} does not exist")
    # Every manifest of the base is listed, except the templates (*.example.yaml), which
    # must not be: they hold placeholders, not values.
    for p in sorted(BASE.glob("*.y*ml")):
        if p.name == "kustomization.yaml":
            continue
        if p.name.endswith((".example.yaml", ".example.yml")):
            if p.name in resources:
                problem(f"{kfile}: lists the template {p.name}")
            continue
        if p.name not in resources:
            problem(f"{kfile}: {p.name} is in the base but not listed in resources")
    for gen in ("secretGenerator", "configMapGenerator"):
        for g in kust.get(gen) or []:
            for src in (g.get("files") or []) + (g.get("envs") or []):
                src = src.split("=", 1)[-1]
                if not (BASE / src).exists():
                    problem(f"{kfile}: {gen} {g.get('name')} reads {src}, which does not exist")

    objects = {}
    for r in resources:
        if (BASE / r).is_file():
            for doc in load_yaml_docs(BASE / r):
                objects[(doc.get("kind"), doc.get("metadata", {}).get("name"))] = doc
    print(f"  {len(resources)} resources listed, {len(objects)} objects")
    check_references(objects)
    finish("kustomization")


def pod_specs(objects):
    for (kind, name), obj in objects.items():
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield kind, name, obj["spec"]["template"]


def check_references(objects):
    secret_keys = set()
    example = BASE / "secret.example.yaml"
    if example.is_file():
        for doc in load_yaml_docs(example):
            secret_keys |= set((doc.get("stringData") or {}).keys())
            secret_keys |= set((doc.get("data") or {}).keys())
    secret_names = {"olivine-secrets"}

    for kind, name, template in pod_specs(objects):
        labels = template.get("metadata", {}).get("labels", {})
        spec = template["spec"]
        where = f"{kind}/{name}"
        if kind != "Job":
            selector = objects[(kind, name)]["spec"]["selector"].get("matchLabels", {})
            if not selector.items() <= labels.items():
                problem(f"{where}: selector {selector} does not match its pod labels {labels}")
        sa = spec.get("serviceAccountName")
        if sa and ("ServiceAccount", sa) not in objects:
            problem(f"{where}: service account {sa} is not in the base")
        mounts_needed = set()
        for c in spec.get("containers", []):
            for ref in c.get("envFrom", []):
                cm = ref.get("configMapRef", {}).get("name")
                if cm and ("ConfigMap", cm) not in objects:
                    problem(f"{where}: ConfigMap {cm} is not in the base")
            for env in c.get("env", []):
                sk = env.get("valueFrom", {}).get("secretKeyRef")
                if sk:
                    if sk["name"] not in secret_names:
                        problem(f"{where}: env {env['name']} reads unknown Secret {sk['name']}")
                    elif secret_keys and sk["key"] not in secret_keys:
                        problem(f"{where}: env {env['name']} reads key {sk['key']}, which {example} does not have")
            for m in c.get("volumeMounts", []):
                mounts_needed.add(m["name"])
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True and kind != "Job":
                problem(f"{where}: container {c['name']} has a writable root filesystem")
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for m in sorted(mounts_needed - volumes):
            problem(f"{where}: mounts volume {m}, which the pod does not define")
        if kind == "Deployment":
            check_shutdown_timing(where, spec)

    for (kind, name), obj in objects.items():
        if kind in ("Service", "PodDisruptionBudget"):
            sel = obj["spec"].get("selector") or {}
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            matched = [
                n for k, n, t in pod_specs(objects)
                if k != "Job" and sel.items() <= t.get("metadata", {}).get("labels", {}).items()
            ]
            if not matched:
                problem(f"{kind}/{name}: selector {sel} selects no pods of the base")
            jobs = [
                n for k, n, t in pod_specs(objects)
                if k == "Job" and sel.items() <= t.get("metadata", {}).get("labels", {}).items()
            ]
            if jobs:
                problem(f"{kind}/{name}: selector {sel} also selects the pods of Job {jobs}")
        if kind == "HorizontalPodAutoscaler":
            ref = obj["spec"]["scaleTargetRef"]
            if (ref["kind"], ref["name"]) not in objects:
                problem(f"{kind}/{name}: scale target {ref['kind']}/{ref['name']} is not in the base")


def check_shutdown_timing(where, spec):
    """preStop sleep + the kernel's drain time must end before Kubernetes kills the pod."""
    grace_period = spec.get("terminationGracePeriodSeconds", 30)
    for c in spec.get("containers", []):
        drain = 30  # OLIVINE_SHUTDOWN_GRACE_SECS' default
        for env in c.get("env", []):
            if env["name"] == "OLIVINE_SHUTDOWN_GRACE_SECS" and "value" in env:
                drain = int(env["value"])
        sleep = 0
        cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if len(cmd) == 2 and cmd[0] == "sleep":
            sleep = int(cmd[1])
        if sleep + drain >= grace_period:
            problem(
                f"{where}: preStop sleep {sleep} s + drain {drain} s is not below "
                f"terminationGracePeriodSeconds {grace_period}"
            )


# --- Kubernetes schemas -----------------------------------------------------------------


def check_kubernetes(versions, extra_files):
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

    files = manifest_files() + [Path(f) for f in extra_files]
    count = 0
    for path in files:
        try:
            docs = load_yaml_docs(path)
        except Exception as e:  # a YAML syntax error
            problem(f"{path}: does not parse as YAML: {e}")
            continue
        for doc in docs:
            what = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                problem(f"{path}: a document without apiVersion and kind")
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except ValidationError as e:
                    field = ".".join(str(p) for p in e.path) or "(top)"
                    problem(f"{what} (Kubernetes {version}): {field}: {e.message}")
                except SchemaNotFoundError as e:
                    problem(f"{what}: {e.message} (keep to core API kinds)")
            count += 1
    print(f"  {count} objects in {len(files)} files, strict, against Kubernetes {', '.join(versions)}")
    finish("kubernetes schemas")


# --- metric names -----------------------------------------------------------------------

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2",
}


def metric_names(expr):
    """The metric names a PromQL expression reads: identifiers outside label matchers,
    strings, ranges and grouping clauses that are not functions or keywords."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    e = re.sub(r"(?<![\w.])\d+(\.\d+)?([eE][+-]?\d+)?[smhdwy]?\b", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def grafana_substitute(expr):
    """A dashboard query as Prometheus would get it (for promtool to parse)."""
    for var, value in (
        ("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"),
        ("${__range}", "1h"), ("${__rate_interval}", "5m"),
    ):
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def check_metrics(rules_out):
    import yaml

    # The dashboard.
    try:
        dashboard = json.loads(DASHBOARD.read_text())
    except (OSError, json.JSONDecodeError) as e:
        problem(f"{DASHBOARD}: {e}")
        finish("metric names")
    variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
    if "datasource" not in variables:
        problem(f"{DASHBOARD}: no `datasource` template variable")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problem(f"{DASHBOARD}: no schemaVersion")

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels") or [])

    ids = set()
    exprs = []
    for p in panels(dashboard.get("panels", [])):
        title = p.get("title", "?")
        if p.get("id") in ids:
            problem(f"{DASHBOARD}: panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        if "gridPos" not in p:
            problem(f"{DASHBOARD}: panel {title!r} has no gridPos")
        if p.get("type") == "row":
            continue
        ds = (p.get("datasource") or {}).get("uid", "")
        if ds not in ("${datasource}", "$datasource", "${DS_PROMETHEUS}"):
            problem(f"{DASHBOARD}: panel {title!r} has a fixed datasource {ds!r}, not the variable")
        targets = p.get("targets") or []
        if not targets:
            problem(f"{DASHBOARD}: panel {title!r} has no query")
        for t in targets:
            expr = t.get("expr", "")
            if not expr:
                problem(f"{DASHBOARD}: panel {title!r} target {t.get('refId')} has no expr")
                continue
            exprs.append((f"panel {title!r} {t.get('refId')}", expr))
    for where, expr in exprs:
        names = metric_names(expr)
        if not names:
            problem(f"{DASHBOARD}: {where} reads no metric: {expr}")
        for name in sorted(names - KNOWN_METRICS):
            problem(f"{DASHBOARD}: {where} reads {name}, which /metrics does not export")
    # Queries as recording rules: promtool then parses every one of them.
    rules = {"groups": [{"name": "dashboard-queries", "rules": [
        {"record": f"dashboard:query_{i}", "expr": grafana_substitute(expr)}
        for i, (_, expr) in enumerate(exprs)
    ]}]}
    Path(rules_out).write_text(yaml.safe_dump(rules, sort_keys=False))
    print(f"  {DASHBOARD}: {len(exprs)} queries in {len(ids)} panels")

    # The alert rules.
    (alerts,) = load_yaml_docs(ALERTS)
    count = 0
    for group in alerts.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            count += 1
            for metric in sorted(metric_names(rule.get("expr", "")) - KNOWN_METRICS):
                problem(f"{ALERTS}: {name} reads {metric}, which /metrics does not export")
            if "alert" in rule:
                if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    problem(f"{ALERTS}: {name} has no severity label (critical, warning, info)")
                for a in ("summary", "description"):
                    if not rule.get("annotations", {}).get(a):
                        problem(f"{ALERTS}: {name} has no {a} annotation")
    print(f"  {ALERTS}: {count} rules")

    # The series the alert tests feed.
    (tests,) = load_yaml_docs(ALERT_TESTS)
    fed = 0
    for test in tests.get("tests", []):
        for series in test.get("input_series", []):
            fed += 1
            name = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", series["series"]).group(1)
            if name not in KNOWN_METRICS:
                problem(f"{ALERT_TESTS}: test {test.get('name')!r} feeds {name}, which /metrics does not export")
    print(f"  {ALERT_TESTS}: {fed} input series")
    finish("metric names")


# --- Dockerfile -------------------------------------------------------------------------


def dockerignored(rel, patterns):
    ignored = False
    parts = rel.split("/")
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, p) or (
                p.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], p[3:])
            ):
                ignored = not neg
                break
    return ignored


def dockerfile_stages():
    text = Path("Dockerfile").read_text()
    lines = re.sub(r"\\\n", " ", text).splitlines()
    stages = []
    for line in lines:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word, _, rest = s.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append({"from": rest.split()[0], "cmds": []})
        elif stages:
            stages[-1]["cmds"].append((word, rest.strip()))
    return stages


def dockerignore_patterns():
    if not Path(".dockerignore").is_file():
        return []
    return [
        l.strip() for l in Path(".dockerignore").read_text().splitlines()
        if l.strip() and not l.strip().startswith("#")
    ]


def builder_copies(stage):
    """(sources, destination) of each COPY/ADD from the build context."""
    out = []
    for w, r in stage["cmds"]:
        if w in ("COPY", "ADD") and "--from" not in r:
            words = [s for s in r.split() if not s.startswith("--")]
            out.append(([s.rstrip("/").removeprefix("./") for s in words[:-1]], words[-1]))
    return out


def build_context(dest):
    """Lays out in dest what the builder stage's COPYs put in its WORKDIR (relative
    destinations only), less what .dockerignore drops: for cargo to load there."""
    import shutil

    stages = dockerfile_stages()
    ignore = dockerignore_patterns()
    dest = Path(dest)
    count = 0
    for srcs, target in builder_copies(stages[0]):
        for src in srcs:
            for path in [Path(src)] + (sorted(Path(src).rglob("*")) if Path(src).is_dir() else []):
                rel = str(path)
                if path.is_dir() or dockerignored(rel, ignore):
                    continue
                if any(dockerignored(str(parent), ignore) for parent in path.parents if str(parent) != "."):
                    continue
                if target.endswith("/") and not Path(src).is_dir():
                    out = dest / target.removeprefix("./") / path.name
                else:
                    base = Path(target.removeprefix("./"))
                    out = dest / base / path.relative_to(src) if Path(src).is_dir() else dest / base
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, out)
                count += 1
    print(f"  {count} files in the builder's context")


def check_dockerfile():
    import tomllib

    stages = dockerfile_stages()
    if len(stages) < 2:
        problem("Dockerfile: not a multi-stage build")
        finish("dockerfile")
    builder, final = stages[0], stages[-1]

    def has(stage, word, pattern):
        return any(w == word and re.search(pattern, r) for w, r in stage["cmds"])

    if not builder["from"].startswith("rust:"):
        problem(f"Dockerfile: the builder is {builder['from']}, not an official rust image")
    if not has(builder, "RUN", r"rustup target add .*wasm32-wasip2"):
        problem("Dockerfile: the builder does not add the wasm32-wasip2 target (kernel/build.rs needs it)")
    if not has(builder, "RUN", r"cargo build .*--release.*-p olivine-kernel"):
        problem("Dockerfile: no `cargo build --release -p olivine-kernel`")
    users = [r for w, r in final["cmds"] if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Dockerfile: the final stage does not switch to a non-root USER")
    if not has(final, "ENTRYPOINT", r'^\[\s*"(/usr/local/bin/)?olivine"\s*\]$'):
        problem('Dockerfile: the final stage\'s ENTRYPOINT is not ["olivine"]')
    if not has(final, "EXPOSE", r"\b8080\b"):
        problem("Dockerfile: the final stage does not EXPOSE 8080")
    if not has(final, "ENV", r"OLIVINE_ADDR=0\.0\.0\.0:8080"):
        problem("Dockerfile: OLIVINE_ADDR is not 0.0.0.0:8080 (the default listens on loopback only)")

    # What the builder copies, less what .dockerignore drops.
    ignore = dockerignore_patterns()
    copied = [src for srcs, _ in builder_copies(builder) for src in srcs]

    def in_context(rel):
        return any(c in (".", rel) or rel.startswith(c + "/") for c in copied) and not dockerignored(rel, ignore)

    # Everything cargo reads for `cargo build -p olivine-kernel`: both workspaces'
    # manifests (the nested plugin build loads the plugins workspace) and every path
    # dependency of their members, dev-dependencies included (cargo resolves them).
    needed = {"Cargo.toml", "Cargo.lock", "plugins/Cargo.toml", "plugins/Cargo.lock", "wit"}
    todo = []
    for ws in ("Cargo.toml", "plugins/Cargo.toml"):
        manifest = tomllib.loads(Path(ws).read_text())
        root = Path(ws).parent
        todo += [root / m for m in manifest.get("workspace", {}).get("members", [])]
    seen = set()
    while todo:
        crate = Path(os.path.normpath(todo.pop()))
        if crate in seen:
            continue
        seen.add(crate)
        needed.add(str(crate / "Cargo.toml"))
        needed.add(str(crate / "src"))
        manifest = tomllib.loads((crate / "Cargo.toml").read_text())
        tables = [manifest]
        tables += list(manifest.get("target", {}).values())
        for table in tables:
            for section in ("dependencies", "dev-dependencies", "build-dependencies"):
                for dep in (table.get(section) or {}).values():
                    if isinstance(dep, dict) and "path" in dep:
                        todo.append(crate / dep["path"])
        if (crate / "build.rs").exists():
            needed.add(str(crate / "build.rs"))
        for kind, folder in (("bench", "benches"), ("test", "tests"), ("example", "examples")):
            for target in manifest.get(kind, []):
                needed.add(str(crate / target.get("path", f"{folder}/{target['name']}.rs")))
    # Files the kernel and runtime embed at compile time from outside their crate.
    for crate in ("kernel", "runtime"):
        for rs in Path(crate, "src").rglob("*.rs"):
            for m in re.finditer(r'include_(?:str|bytes)!\(\s*(?:concat!\(\s*)?"([^"]+)"', rs.read_text()):
                target = os.path.normpath(rs.parent / m.group(1))
                if not target.startswith(crate + "/"):
                    needed.add(target.rstrip("/") if Path(target).exists() else os.path.dirname(target))
    for rel in sorted(needed):
        if not Path(rel).exists():
            continue  # e.g. no Cargo.lock in a crate: nothing to copy
        if not in_context(rel):
            problem(f"Dockerfile: the builder does not get {rel} (not copied, or .dockerignore drops it)")
    print(f"  {len(stages)} stages; {len(needed)} paths the build reads")
    finish("dockerfile")


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "kustomization":
        check_kustomization()
    elif cmd == "kubernetes":
        versions = [a for a in args if not a.endswith((".yaml", ".yml"))]
        files = [a for a in args if a.endswith((".yaml", ".yml"))]
        check_kubernetes(versions, files)
    elif cmd == "metrics":
        check_metrics(args[0])
    elif cmd == "dockerfile":
        check_dockerfile()
    elif cmd == "context":
        build_context(args[0])
    else:
        print(f"unknown check {cmd}")
        sys.exit(2)


if __name__ == "__main__":
    main()
