#!/usr/bin/env python3
"""The Kubernetes manifests in deploy/kubernetes, checked (part of `make test`, `make deploy-check`):

1. against the Kubernetes API's OpenAPI schemas, strictly (no unknown field), by an independent
   validator, PyPI's kubernetes-validate, for the oldest and newest Kubernetes it knows of
   here (1.29 and 1.37), and by yamllint; the validator is shown a broken copy first, which it
   must refuse;
2. against the daemon: each ConfigMap's defender-alertd.toml passes `defender-alertd
   check-config` (its secret files made where the pod mounts them, in the kubelet's layout,
   0440 for group 65532 when run as root), uses only keys of `defender-alertd config-reference`,
   and serves /metrics on 0.0.0.0 at the port the container, its probes, the Service and its
   Prometheus annotations name; the probe paths are the ones the reference documents; every
   secret file it names is a key of the Secret, under the Secret's mount; the configuration's
   path is the ConfigMap's mount and the image's default (deploy/container/Containerfile);
3. against the image and the promises: the user (65532) of the image is the pod's runAsUser and
   fsGroup, the Secret's defaultMode is 0400, runAsNonRoot, readOnlyRootFilesystem, every
   capability dropped, seccomp RuntimeDefault, no privilege escalation, a grace period longer
   than the daemon's 25 s stop; the group has 3 replicas on state_database and no volume, the
   embedded variant one replica with a volume at the state directory; the image tag is the
   version of debian/changelog.

    scripts/check-deploy.py --binary .build/debug/defender-alertd
"""
import argparse
import copy
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy", "kubernetes")
VERSIONS = ("1.29.0", "1.37.0")
STOP_DEADLINE = 25
problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def documents():
    """Every manifest: (file relative to deploy/kubernetes, document)."""
    found = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "*", "*.yaml"))):
        with open(path) as handle:
            for document in yaml.safe_load_all(handle):
                found.append((os.path.relpath(path, DEPLOY), document))
    return found


def validate_schemas(paths):
    # The validator must be able to fail: a Deployment with a field Kubernetes does not have.
    work = tempfile.mkdtemp(prefix="defender-alertd-deploy-")
    try:
        with open(os.path.join(DEPLOY, "group", "deployment.yaml")) as handle:
            broken = yaml.safe_load(handle)
        broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/healthz/live"
        with open(os.path.join(work, "broken.yaml"), "w") as handle:
            yaml.safe_dump(broken, handle)
        result = subprocess.run(["kubernetes-validate", "--strict", "--quiet", os.path.join(work, "broken.yaml")], capture_output=True, text=True)
        if result.returncode == 0:
            problem("kubernetes-validate", "accepted a Deployment with an unknown field: it validates nothing")
    finally:
        shutil.rmtree(work)
    for version in VERSIONS:
        result = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", version, *paths], capture_output=True, text=True)
        if result.returncode != 0:
            problem(f"kubernetes-validate -k {version}", (result.stdout + result.stderr).strip())
    result = subprocess.run(["yamllint", "-d", "{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
                             "comments: {min-spaces-from-content: 1}, octal-values: {forbid-implicit-octal: false}}}", *paths],
                            capture_output=True, text=True)
    if result.returncode != 0:
        problem("yamllint", result.stdout.strip())


def reference(binary):
    """The keys of `config-reference` by table, and the paths the metrics server documents."""
    text = subprocess.run([binary, "config-reference"], capture_output=True, text=True, check=True).stdout
    keys, table = {}, None
    for line in text.splitlines():
        heading = re.match(r"### `\[+(\w+)\]+`", line)
        if heading:
            table = heading.group(1)
            keys[table] = set()
        row = re.match(r"\| `(\w+)` \|", line)
        if row and table:
            keys[table].add(row.group(1))
    metrics_row = next(line for line in text.splitlines() if line.startswith("| `metrics_listen`"))
    return keys, set(re.findall(r"`(/[a-z/]*)`", metrics_row))


def image_defaults():
    """USER, the config path of CMD and STATE_DIRECTORY of the Containerfile."""
    with open(os.path.join(ROOT, "deploy", "container", "Containerfile")) as handle:
        text = handle.read()
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    config = re.search(r'^CMD \[.*"--config", "([^"]+)"\]$', text, re.M)
    state = re.search(r"^ENV STATE_DIRECTORY=(\S+)$", text, re.M)
    return int(user.group(1)), int(user.group(2)), config.group(1), state.group(1)


def version():
    return subprocess.run(["dpkg-parsechangelog", "-l", os.path.join(ROOT, "debian", "changelog"), "-S", "Version"],
                          capture_output=True, text=True, check=True).stdout.strip()


def check_config(binary, where, text, secret_mount, secret_keys, uid, gid, work):
    """`check-config` of the ConfigMap's file, with its secret files made where the pod has them."""
    directory = os.path.join(work, where.replace("/", "-"))
    os.makedirs(directory)
    # The secret volume as the kubelet writes it, moved under the test's directory.
    volume = os.path.join(directory, "secrets")
    stamped = os.path.join(volume, "..2026_12_07_00_00_00.000000000")
    os.makedirs(stamped)
    for key in secret_keys:
        path = os.path.join(stamped, key)
        with open(path, "w") as handle:
            handle.write(f"check-deploy-{key}\n")
        if os.geteuid() == 0:
            os.chown(path, 0, gid)
            os.chmod(path, 0o440)
        else:
            os.chmod(path, 0o400)
        os.symlink(os.path.join("..data", key), os.path.join(volume, key))
    os.symlink(os.path.basename(stamped), os.path.join(volume, "..data"))
    moved = text.replace(secret_mount.rstrip("/") + "/", volume + "/")
    config = os.path.join(directory, "defender-alertd.toml")
    with open(config, "w") as handle:
        handle.write(moved)
    os.chmod(config, 0o644)
    # As root, check-config runs with the pod's groups: fsGroup is one of them.
    command = [binary, "check-config", "--config", config]
    if os.geteuid() == 0:
        command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", f"--groups={gid}", *command]
        for path in (directory, volume, stamped):
            os.chmod(path, 0o755)
        os.chmod(work, 0o755)
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, STATE_DIRECTORY=directory))
    if result.returncode != 0:
        problem(where, f"check-config refuses defender-alertd.toml: {(result.stdout + result.stderr).strip()}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", required=True)
    binary = os.path.abspath(parser.parse_args().binary)
    paths = sorted(glob.glob(os.path.join(DEPLOY, "*", "*.yaml")))
    validate_schemas(paths)
    keys, documented_paths = reference(binary)
    uid, gid, config_path, state_directory = image_defaults()
    all_documents = documents()
    by_kind = {}
    for where, document in all_documents:
        by_kind.setdefault(document["kind"], []).append((where, document))
    secret = by_kind["Secret"][0][1]
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    services = by_kind["Service"]
    work = tempfile.mkdtemp(prefix="defender-alertd-deploy-")
    try:
        workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
        if {w for w, _ in workloads} != {"group/deployment.yaml", "embedded/statefulset.yaml"}:
            problem("deploy/kubernetes", f"expected group/deployment.yaml and embedded/statefulset.yaml, found {[w for w, _ in workloads]}")
        for where, workload in workloads:
            variant = where.split("/")[0]
            configmaps = [d for w, d in by_kind["ConfigMap"] if w.startswith(variant + "/")]
            if len(configmaps) != 1:
                problem(where, f"{len(configmaps)} ConfigMaps beside it, not 1")
                continue
            check_workload(binary, where, workload, configmaps[0], secret["metadata"]["name"], secret_keys, services, keys,
                           documented_paths, uid, gid, config_path, state_directory, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for where, service in services:
        annotations = service["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/path") != "/metrics":
            problem(where, "no prometheus.io/scrape \"true\" and prometheus.io/path /metrics annotations")
    if problems:
        print("check-deploy: FAILED", *problems, sep="\n  ")
        sys.exit(1)
    print(f"check-deploy: {len(paths)} manifests valid for Kubernetes {' and '.join(VERSIONS)} (strict), and consistent with "
          f"the daemon's configuration reference, check-config and the image")


def check_workload(binary, where, workload, configmap, secret_name, secret_keys, services, keys, documented_paths,
                   uid, gid, config_path, state_directory, work):
    spec = workload["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    text = configmap["data"]["defender-alertd.toml"]
    config = tomllib.loads(text)
    service = config.get("service", {})

    # Keys: each one the reference documents.
    for table, values in (("service", [service]), ("tenant", config.get("tenant", [])), ("sink", config.get("sink", []))):
        for value in values:
            for key in value:
                if key not in keys.get(table, set()):
                    problem(where, f"[{table}] {key} is not a key of the configuration reference")

    # Where the configuration and the secrets are mounted.
    mounts = {mount["name"]: mount for mount in container.get("volumeMounts", [])}
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    config_volume = next((name for name, volume in volumes.items() if volume.get("configMap", {}).get("name") == configmap["metadata"]["name"]), None)
    secret_volume = next((name for name, volume in volumes.items() if volume.get("secret", {}).get("secretName") == secret_name), None)
    if not config_volume or not secret_volume:
        problem(where, "the ConfigMap or the Secret is not a volume")
        return
    if os.path.join(mounts[config_volume]["mountPath"], "defender-alertd.toml") != config_path:
        problem(where, f"the ConfigMap is mounted at {mounts[config_volume]['mountPath']}; the image reads {config_path}")
    args = container.get("args", [])
    if "--config" in args and args[args.index("--config") + 1] != config_path:
        problem(where, f"--config {args[args.index('--config') + 1]}, the ConfigMap's file is {config_path}")
    secret_mount = mounts[secret_volume]["mountPath"]
    if volumes[secret_volume]["secret"].get("defaultMode") != 0o400:
        problem(where, f"the Secret's defaultMode is {oct(volumes[secret_volume]['secret'].get('defaultMode', 0o644))}, not 0400")
    named = re.findall(r'^\s*\w+_file\s*=\s*"([^"]+)"', text, re.M)
    for path in named:
        if os.path.dirname(path) != secret_mount or os.path.basename(path) not in secret_keys:
            problem(where, f"{path} is no key of the Secret mounted at {secret_mount}")
    check_config(binary, where, text, secret_mount, {os.path.basename(p) for p in named}, uid, gid, work)

    # metrics_listen, the port, the probes, the Service.
    listen = service.get("metrics_listen", "")
    match = re.fullmatch(r"0\.0\.0\.0:(\d+)", listen)
    if not match:
        problem(where, f"metrics_listen = {listen!r}: the kubelet's probes come to the pod's address, 0.0.0.0:PORT is needed")
        return
    port = int(match.group(1))
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if ports.get("metrics") != port:
        problem(where, f"containerPort metrics is {ports.get('metrics')}, metrics_listen's port {port}")
    for probe, path in (("livenessProbe", "/healthz/live"), ("readinessProbe", "/healthz/ready")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or path not in documented_paths:
            problem(where, f"{probe} is {get.get('path')}, should be {path} (documented: {sorted(documented_paths)})")
        if get.get("port") not in ("metrics", port):
            problem(where, f"{probe} port {get.get('port')} is not metrics_listen's {port}")
    labels = spec["template"]["metadata"]["labels"]
    for service_where, metrics_service in services:
        selector = metrics_service["spec"]["selector"]
        if not all(labels.get(k) == v for k, v in selector.items()):
            problem(service_where, f"selects {selector}, not the pods of {where}")
        service_port = metrics_service["spec"]["ports"][0]
        if service_port["targetPort"] not in ("metrics", port) or metrics_service["metadata"]["annotations"].get("prometheus.io/port") != str(port):
            problem(service_where, f"target port {service_port['targetPort']} or prometheus.io/port is not {port}")

    # Who it runs as, and with what.
    security = pod.get("securityContext", {})
    for key, value in (("runAsNonRoot", True), ("runAsUser", uid), ("runAsGroup", gid), ("fsGroup", gid)):
        if security.get(key) != value:
            problem(where, f"securityContext.{key} is {security.get(key)}, should be {value}")
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problem(where, "seccompProfile is not RuntimeDefault")
    own = container.get("securityContext", {})
    if own.get("readOnlyRootFilesystem") is not True or own.get("allowPrivilegeEscalation") is not False \
            or own.get("capabilities", {}).get("drop") != ["ALL"]:
        problem(where, "the container must have readOnlyRootFilesystem, no privilege escalation and drop ALL capabilities")
    if pod.get("terminationGracePeriodSeconds", 30) <= STOP_DEADLINE:
        problem(where, f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds', 30)} is not above the daemon's {STOP_DEADLINE} s")
    if container["image"] != f"localhost/defender-alertd:{version()}":
        problem(where, f"image {container['image']}, make image builds localhost/defender-alertd:{version()}")
    resources = container.get("resources", {})
    if "memory" not in resources.get("requests", {}) or "memory" not in resources.get("limits", {}):
        problem(where, "no memory request and limit")

    # The variant: a group on PostgreSQL, no volume; or one replica and its state volume.
    if workload["kind"] == "Deployment":
        if "state_database" not in service or spec.get("replicas") != 3:
            problem(where, "the group: 3 replicas with state_database")
        if set(mounts) - {config_volume, secret_volume}:
            problem(where, f"the group needs no volume besides its configuration and secrets: {sorted(set(mounts))}")
    else:
        if "state_database" in service or spec.get("replicas") != 1:
            problem(where, "the embedded variant: one replica, no state_database")
        claims = {claim["metadata"]["name"] for claim in spec.get("volumeClaimTemplates", [])}
        state_mounts = [m for m in mounts.values() if m["name"] in claims]
        wanted = service.get("state_directory", state_directory)
        if [m["mountPath"] for m in state_mounts] != [wanted]:
            problem(where, f"the state directory {wanted} is not the volume's mount ({[m['mountPath'] for m in state_mounts]})")


if __name__ == "__main__":
    main()
