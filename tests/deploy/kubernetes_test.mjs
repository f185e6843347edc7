// Checks deploy/kubernetes as a cluster would receive it: renders the kustomizations with
// `kubectl kustomize` (HOURGLASS_KUBECTL, else kubectl on PATH), validates every rendered object
// against the Kubernetes (and Prometheus Operator) schemas with kubernetes-models, and checks
// the fields that a schema cannot judge: probes, shutdown timing, sizing, security, and that the
// manifests agree with the Dockerfile, the flag file and the project's version.
//
// Run by CTest as `kubernetes_manifests`; by hand: node --test tests/deploy/kubernetes_test.mjs
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, cpSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";

const require = createRequire(import.meta.url);
const YAML = require("yaml");

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const KUBERNETES_DIR = path.join(REPO_ROOT, "deploy", "kubernetes");
const MONITORING_DIR = path.join(KUBERNETES_DIR, "monitoring");
const KUBECTL = process.env.HOURGLASS_KUBECTL || "kubectl";

const DATA_DIR = "/var/lib/hourglass";
const FLAGFILE_MOUNT = "/etc/hourglass";
// Figures from docs/deploy.md: memory per pending task (measured: 570 B with 16-byte payloads),
// and log recovery time (about 3 s per 10^6 tasks; measured up to 7 s on a busy 2-core machine
// with half a million log records to replay on top of the snapshot: the worse figure is used).
const BYTES_PER_TASK = 600;
const RECOVERY_SECONDS_PER_MILLION_TASKS = 7;
// The lame duck: after SIGTERM the server answers UNAVAILABLE for a second before closing.
const LAME_DUCK_SECONDS = 1;

// --- rendering and schemas ----------------------------------------------------------------

// The objects `kubectl kustomize dir` prints. Throws when it fails, and when it warns (a
// deprecated field, say): the kustomizations must read cleanly with old and current kustomize.
function render(dir) {
  const result = spawnSync(KUBECTL, ["kustomize", dir], { encoding: "utf8" });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${result.stderr}`);
  assert.equal(result.stderr.trim(), "", `kubectl kustomize ${dir} warned`);
  return YAML.parseAllDocuments(result.stdout)
    .map((doc) => {
      assert.equal(doc.errors.length, 0, `kubectl kustomize ${dir} printed bad YAML`);
      return doc.toJS();
    })
    .filter((object) => object !== null);
}

// The kubernetes-models class of an object: kubernetes-models/<group>/<version>/<Kind> (core
// objects have no group), or the Prometheus Operator's package for monitoring.coreos.com.
function modelClass(object) {
  const [group, version] = object.apiVersion.includes("/")
    ? object.apiVersion.split("/")
    : [null, object.apiVersion];
  const modulePath =
    group === "monitoring.coreos.com"
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${object.kind}`
      : `kubernetes-models/${group ? `${group}/` : ""}${version}/${object.kind}`;
  const Model = require(modulePath)[object.kind];
  assert.ok(Model, `no schema for ${object.apiVersion} ${object.kind} (${modulePath})`);
  return Model;
}

// The schema's compiled validator (an ajv function) for an object's kind, from the same package.
function schemaValidator(object) {
  const [group, version] = object.apiVersion.includes("/")
    ? object.apiVersion.split("/")
    : ["core", object.apiVersion];
  const capitalize = (word) => word[0].toUpperCase() + word.slice(1);
  const id =
    group === "monitoring.coreos.com"
      ? `MonitoringCoreosCom${capitalize(version)}${object.kind}`
      : `IoK8sApi${capitalize(group.replace(/\.k8s\.io$/, "").split(".")[0])}${capitalize(version)}${object.kind}`;
  // The packages do not export _schemas/: reach it by file path, beside their entry points.
  const packageEntry = require.resolve(
    group === "monitoring.coreos.com" ? "@kubernetes-models/prometheus-operator" : "kubernetes-models",
  );
  return require(path.join(path.dirname(packageEntry), "_schemas", `${id}.js`)).validate;
}

// The fields of `object` that its schema does not know (typos such as `readinesProbe`, which
// the schemas, lacking additionalProperties: false, let through). The schema's validator runs
// on a proxy of the object that records every property the validator reads: it reads each
// property its schema defines, and enumerates the keys of maps (labels, data). A key that it
// neither read nor enumerated is unknown to the schema.
function unknownFields(object) {
  const validateSchema = schemaValidator(object);
  const read = new Map(); // JSON pointer of an object -> the keys the validator read
  const enumerated = new Set(); // JSON pointers of objects whose keys the validator listed
  const proxies = new WeakMap();
  const note = (pointer, key) => {
    if (typeof key !== "string") return;
    if (!read.has(pointer)) read.set(pointer, new Set());
    read.get(pointer).add(key);
  };
  const wrap = (value, pointer) => {
    if (value === null || typeof value !== "object") return value;
    if (!proxies.has(value)) {
      proxies.set(
        value,
        new Proxy(value, {
          get(target, key, receiver) {
            note(pointer, key);
            const child = Reflect.get(target, key, receiver);
            return typeof key === "string" && Object.hasOwn(target, key)
              ? wrap(child, `${pointer}/${key}`)
              : child;
          },
          has(target, key) {
            note(pointer, key);
            return Reflect.has(target, key);
          },
          getOwnPropertyDescriptor(target, key) {
            note(pointer, key);
            return Reflect.getOwnPropertyDescriptor(target, key);
          },
          ownKeys(target) {
            enumerated.add(pointer);
            return Reflect.ownKeys(target);
          },
        }),
      );
    }
    return proxies.get(value);
  };
  if (!validateSchema(wrap(object, ""))) return []; // validate() reports those errors
  const unknown = [];
  const walk = (value, pointer) => {
    if (value === null || typeof value !== "object") return;
    if (Array.isArray(value)) {
      value.forEach((item, index) => walk(item, `${pointer}/${index}`));
      return;
    }
    for (const [key, child] of Object.entries(value)) {
      if (!enumerated.has(pointer) && !read.get(pointer)?.has(key)) {
        unknown.push(`${pointer}/${key}`);
      } else {
        walk(child, `${pointer}/${key}`);
      }
    }
  };
  walk(object, "");
  return unknown;
}

// Throws with the schema's message when `object` does not validate, or names the fields its
// schema does not know.
function validate(object) {
  const Model = modelClass(object);
  new Model(object).validate();
  const unknown = unknownFields(object);
  assert.deepEqual(unknown, [], `${object.kind}/${object.metadata?.name}: fields unknown to its schema`);
}

function byKind(objects, kind) {
  return objects.filter((object) => object.kind === kind);
}

function only(objects, kind, name) {
  const found = byKind(objects, kind).filter((o) => name === undefined || o.metadata.name === name);
  assert.equal(found.length, 1, `expected one ${kind}${name ? ` ${name}` : ""}, got ${found.length}`);
  return found[0];
}

function matches(selector, labels) {
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

function parseQuantityBytes(quantity) {
  const units = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9 };
  const match = /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(String(quantity));
  assert.ok(match, `bad quantity ${quantity}`);
  const unit = match[2] === "" ? 1 : units[match[2]];
  assert.ok(unit, `unknown unit in ${quantity}`);
  return Number(match[1]) * unit;
}

function parseDurationSeconds(text) {
  const units = { ms: 1e-3, s: 1, m: 60, h: 3600 };
  let total = 0;
  let rest = text;
  while (rest.length > 0) {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    assert.ok(match, `bad duration ${text}`);
    total += Number(match[1]) * units[match[2]];
    rest = rest.slice(match[0].length);
  }
  return total;
}

// hourglass.flags as {name: value}, rejecting any line that is not a comment or --name=value.
function parseFlagfile(text) {
  const flags = {};
  for (const [index, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^--([a-z_]+)=(.*)$/.exec(line);
    assert.ok(match, `hourglass.flags line ${index + 1} is not --name=value: ${raw}`);
    assert.ok(!(match[1] in flags), `hourglass.flags sets --${match[1]} twice`);
    flags[match[1]] = match[2];
  }
  return flags;
}

function portOf(address) {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

function projectVersion() {
  const cmake = readFileSync(path.join(REPO_ROOT, "CMakeLists.txt"), "utf8");
  const match = /project\(hourglass\s+VERSION\s+([0-9.]+)/.exec(cmake);
  assert.ok(match, "no project(hourglass VERSION ...) in CMakeLists.txt");
  return match[1];
}

// The runtime stage of the Dockerfile: its USER, EXPOSE, VOLUME and ENTRYPOINT.
function dockerRuntime() {
  const text = readFileSync(path.join(REPO_ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const stages = text.split(/^FROM\s/m);
  const runtime = stages[stages.length - 1];
  const instruction = (name) =>
    [...runtime.matchAll(new RegExp(`^${name}\\s+(.*)$`, "gm"))].map((m) => m[1].trim());
  return {
    user: instruction("USER")[0],
    exposed: instruction("EXPOSE").flatMap((line) => line.split(/\s+/)).map(Number),
    volumes: instruction("VOLUME").flatMap((line) => JSON.parse(line)),
    entrypoint: JSON.parse(instruction("ENTRYPOINT")[0]),
  };
}

const base = render(KUBERNETES_DIR);
const monitoring = render(MONITORING_DIR);
const flags = parseFlagfile(readFileSync(path.join(KUBERNETES_DIR, "hourglass.flags"), "utf8"));
const statefulSet = only(base, "StatefulSet", "hourglass");
const pod = statefulSet.spec.template.spec;
const container = pod.containers.find((c) => c.name === "hourglass");

// --- tests ---------------------------------------------------------------------------------

test("the base renders exactly the expected objects, none of the Prometheus Operator's", () => {
  const names = base.map((o) => `${o.kind}/${o.metadata.name}`).sort();
  assert.deepEqual(
    names.map((n) => n.replace(/^ConfigMap\/hourglass-flags-[a-z0-9]+$/, "ConfigMap/hourglass-flags")),
    [
      "ConfigMap/hourglass-flags",
      "PodDisruptionBudget/hourglass",
      "Service/hourglass",
      "Service/hourglass-headless",
      "StatefulSet/hourglass",
    ],
  );
  assert.ok(base.every((o) => !o.apiVersion.startsWith("monitoring.coreos.com/")));
});

test("every rendered object validates against its Kubernetes schema", () => {
  for (const object of [...base, ...monitoring]) {
    assert.doesNotThrow(() => validate(object), `${object.kind}/${object.metadata.name}`);
  }
});

test("the schema validation is live: broken objects are refused", () => {
  const broken = structuredClone(statefulSet);
  broken.spec.replicas = "one";
  assert.throws(() => validate(broken), /replicas/);
  const badProbe = structuredClone(statefulSet);
  badProbe.spec.template.spec.containers[0].readinessProbe.grpc = {};
  assert.throws(() => validate(badProbe), /port/);
  const badMonitor = structuredClone(only(monitoring, "ServiceMonitor"));
  badMonitor.spec.endpoints = "metrics";
  assert.throws(() => validate(badMonitor), /endpoints/);
});

test("fields the schema does not know are refused, at any depth", () => {
  const typos = structuredClone(statefulSet);
  typos.spec.template.spec.containers[0].readinesProbe = { grpc: { port: 7070 } };
  typos.spec.template.spec.securityContext.runAsNonroot = true;
  typos.spec.volumeClaimTemplates[0].spec.resources.request = { storage: "1Gi" };
  assert.deepEqual(unknownFields(typos).sort(), [
    "/spec/template/spec/containers/0/readinesProbe",
    "/spec/template/spec/securityContext/runAsNonroot",
    "/spec/volumeClaimTemplates/0/spec/resources/request",
  ]);
  assert.throws(() => validate(typos), /unknown to its schema/);
  // Map-valued fields (labels, ConfigMap data) take any key.
  const configMap = structuredClone(only(base, "ConfigMap"));
  configMap.metadata.labels["example.com/any-key"] = "x";
  configMap.data["another.flags"] = "--x=1";
  assert.deepEqual(unknownFields(configMap), []);
  const monitor = structuredClone(only(monitoring, "ServiceMonitor"));
  monitor.spec.endpoints[0].scrapeTimout = "5s";
  assert.deepEqual(unknownFields(monitor), ["/spec/endpoints/0/scrapeTimout"]);
});

test("every object carries the app labels", () => {
  for (const object of base) {
    assert.equal(object.metadata.labels?.["app.kubernetes.io/name"], "hourglass", object.kind);
    assert.equal(object.metadata.labels?.["app.kubernetes.io/component"], "server", object.kind);
  }
});

test("StatefulSet: one pod, its headless Service, selectors that match its pods", () => {
  assert.equal(statefulSet.spec.replicas, 1);
  const podLabels = statefulSet.spec.template.metadata.labels;
  assert.ok(matches(statefulSet.spec.selector.matchLabels, podLabels));
  const headless = only(base, "Service", statefulSet.spec.serviceName);
  assert.equal(headless.spec.clusterIP, "None");
  for (const service of byKind(base, "Service")) {
    assert.ok(matches(service.spec.selector, podLabels), `Service ${service.metadata.name}`);
  }
  const pdb = only(base, "PodDisruptionBudget");
  assert.ok(matches(pdb.spec.selector.matchLabels, podLabels));
});

test("the data directory is a volume claim template mounted where the image keeps it", () => {
  const templates = statefulSet.spec.volumeClaimTemplates;
  assert.equal(templates.length, 1);
  const claim = templates[0];
  assert.deepEqual(claim.spec.accessModes, ["ReadWriteOnce"]);
  assert.ok(parseQuantityBytes(claim.spec.resources.requests.storage) >= 2 ** 30);
  const mount = container.volumeMounts.find((m) => m.name === claim.metadata.name);
  assert.equal(mount.mountPath, DATA_DIR);
  assert.ok(!mount.readOnly);
  assert.ok(!(pod.volumes ?? []).some((v) => v.name === claim.metadata.name), "data shadowed");
  const docker = dockerRuntime();
  assert.ok(docker.volumes.includes(DATA_DIR), `Dockerfile VOLUME ${docker.volumes}`);
  assert.ok(docker.entrypoint.includes(`--data_dir=${DATA_DIR}`));
  assert.equal(container.args.filter((a) => a.startsWith("--data_dir=")).at(-1), `--data_dir=${DATA_DIR}`);
  assert.ok(!("data_dir" in flags), "the data directory belongs to the StatefulSet, not hourglass.flags");
});

test("the flags come from the ConfigMap as a flag file, and name the container's ports", () => {
  const configMap = only(base, "ConfigMap");
  assert.match(configMap.metadata.name, /^hourglass-flags-[a-z0-9]+$/, "name carries a content hash");
  assert.equal(
    configMap.data["hourglass.flags"],
    readFileSync(path.join(KUBERNETES_DIR, "hourglass.flags"), "utf8"),
  );
  const volume = pod.volumes.find((v) => v.configMap?.name === configMap.metadata.name);
  assert.ok(volume, "no volume of the flags ConfigMap (kustomize renames references)");
  const mount = container.volumeMounts.find((m) => m.name === volume.name);
  assert.equal(mount.mountPath, FLAGFILE_MOUNT);
  assert.equal(mount.readOnly, true);
  assert.equal(container.args[0], `--flagfile=${FLAGFILE_MOUNT}/hourglass.flags`);
  assert.deepEqual(container.args, [`--flagfile=${FLAGFILE_MOUNT}/hourglass.flags`, `--data_dir=${DATA_DIR}`]);

  const ports = Object.fromEntries(container.ports.map((p) => [p.name, p.containerPort]));
  assert.deepEqual(ports, { grpc: 7070, metrics: 9464 });
  assert.equal(portOf(flags.grpc_address), ports.grpc);
  assert.equal(portOf(flags.metrics_address), ports.metrics);
  assert.deepEqual(dockerRuntime().exposed.sort(), [7070, 9464]);
});

test("Services: named ports; metrics only on the client Service, so each pod is scraped once", () => {
  const client = only(base, "Service", "hourglass");
  assert.deepEqual(
    client.spec.ports.map((p) => [p.name, p.port, p.targetPort]),
    [
      ["grpc", 7070, "grpc"],
      ["metrics", 9464, "metrics"],
    ],
  );
  assert.notEqual(client.spec.clusterIP, "None");
  const headless = only(base, "Service", "hourglass-headless");
  assert.deepEqual(headless.spec.ports.map((p) => p.name), ["grpc"]);
  for (const service of [client, headless]) {
    for (const port of service.spec.ports) {
      assert.ok(container.ports.some((p) => p.name === port.targetPort), `${port.targetPort}`);
    }
  }
});

test("probes: native gRPC readiness, liveness and a startup probe covering log recovery", () => {
  for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
    assert.deepEqual(container[probe].grpc, { port: 7070 }, probe);
    assert.equal(container[probe].httpGet, undefined);
    assert.equal(container[probe].tcpSocket, undefined);
    assert.equal(container[probe].exec, undefined);
  }
  const startup = container.startupProbe;
  const startupBudgetSeconds = startup.periodSeconds * startup.failureThreshold;
  // The most tasks the memory limit holds, and how long replaying them takes.
  const tasks = parseQuantityBytes(container.resources.limits.memory) / BYTES_PER_TASK;
  const recoverySeconds = (tasks / 1e6) * RECOVERY_SECONDS_PER_MILLION_TASKS;
  assert.ok(
    startupBudgetSeconds >= 10 * recoverySeconds && startupBudgetSeconds >= 60,
    `startup probe allows ${startupBudgetSeconds} s; recovering ${Math.round(tasks)} tasks takes ~${recoverySeconds} s`,
  );
  assert.ok(container.livenessProbe.failureThreshold * container.livenessProbe.periodSeconds >= 20);
});

// The optional TLS: the lines of statefulset.yaml that start with "#tls: " uncommented and those
// that end with "# without TLS" deleted, with the sed line its comment gives.
function enableTls(text) {
  return text
    .split("\n")
    .filter((line) => !/# without TLS$/.test(line))
    .join("\n")
    .replace(/^( *)#tls: /gm, "$1");
}

test("tls: off by default; switched on, the cert-manager Secret as a directory and exec probes", () => {
  assert.ok(!container.args.some((a) => a.startsWith("--tls_")));
  const source = readFileSync(path.join(KUBERNETES_DIR, "statefulset.yaml"), "utf8");
  assert.ok(
    source.includes("sed -i -e '/# without TLS$/d' -e 's/^\\( *\\)#tls: /\\1/'"),
    "the comment's sed line changed",
  );
  assert.equal((source.match(/# without TLS$/gm) || []).length, 6, "the grpc probe lines");
  const certificate = YAML.parse(
    readFileSync(path.join(KUBERNETES_DIR, "tls-certificate.yaml"), "utf8"),
  );
  const kustomization = readFileSync(path.join(KUBERNETES_DIR, "kustomization.yaml"), "utf8");
  assert.ok(!kustomization.includes("tls-certificate.yaml"), "cert-manager must stay optional");
  // With token auth too: both switches together render.
  for (const withAuth of [false, true]) {
    const dir = mkdtempSync(path.join(tmpdir(), "hourglass-kustomize-"));
    try {
      cpSync(KUBERNETES_DIR, dir, { recursive: true });
      let text = enableTls(source);
      if (withAuth) text = enableAuth(text);
      writeFileSync(path.join(dir, "statefulset.yaml"), text);
      const objects = render(dir);
      for (const object of objects) {
        assert.doesNotThrow(() => validate(object), `${object.kind}/${object.metadata.name}`);
        assert.deepEqual(unknownFields(object), [], `${object.kind}/${object.metadata.name}`);
      }
      const tlsPod = only(objects, "StatefulSet", "hourglass").spec.template.spec;
      const tlsContainer = tlsPod.containers.find((c) => c.name === "hourglass");
      const tlsArgs = tlsContainer.args.filter((a) => a.startsWith("--tls_"));
      assert.deepEqual(tlsArgs, [
        "--tls_cert=/etc/hourglass-tls/tls.crt",
        "--tls_key=/etc/hourglass-tls/tls.key",
        "--tls_client_ca=/etc/hourglass-tls/ca.crt",
      ]);
      assert.equal(tlsContainer.args.some((a) => a.startsWith("--auth_tokens_file")), withAuth);
      const volume = tlsPod.volumes.find((v) => v.secret?.secretName === "hourglass-tls");
      assert.ok(volume, "no volume of the Secret hourglass-tls");
      assert.equal(volume.secret.secretName, certificate.spec.secretName);
      assert.equal(volume.secret.optional, false);
      assert.equal(volume.secret.defaultMode & 0o007, 0, "the key must not be world-readable");
      assert.equal(volume.secret.defaultMode & 0o040, 0o040, "the server's group (fsGroup) reads it");
      assert.equal(volume.secret.items, undefined, "every key of the Secret, as files");
      const mount = tlsContainer.volumeMounts.find((m) => m.name === volume.name);
      assert.equal(mount.subPath, undefined, "a subPath mount never sees a renewal");
      assert.equal(mount.readOnly, true);
      for (const arg of tlsArgs) {
        assert.ok(arg.split("=")[1].startsWith(`${mount.mountPath}/`), arg);
      }
      for (const other of tlsContainer.volumeMounts.filter((m) => m !== mount)) {
        assert.ok(!mount.mountPath.startsWith(`${other.mountPath}/`), other.mountPath);
      }
      // The probes: hourglassctl health over TLS with the mounted files, within the probe's
      // timeout; the same periods and thresholds as the gRPC probes.
      const hourglassctl = "/usr/local/bin/hourglassctl";
      assert.ok(readFileSync(path.join(REPO_ROOT, "Dockerfile"), "utf8").includes(hourglassctl));
      for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const tlsProbe = tlsContainer[probe];
        assert.equal(tlsProbe.grpc, undefined, probe);
        const command = tlsProbe.exec.command;
        assert.equal(command[0], hourglassctl);
        assert.equal(command.at(-1), "health");
        assert.ok(command.includes(`--address=127.0.0.1:${portOf(flags.grpc_address)}`), probe);
        for (const file of ["ca.crt", "tls.crt", "tls.key"]) {
          assert.ok(command.some((a) => a.endsWith(`=${mount.mountPath}/${file}`)), `${probe} ${file}`);
        }
        const name = command.find((a) => a.startsWith("--tls_server_name=")).split("=")[1];
        assert.ok(certificate.spec.dnsNames.includes(name), `${name} is not in the certificate`);
        const timeout = parseDurationSeconds(command.find((a) => a.startsWith("--timeout=")).split("=")[1]);
        assert.ok(timeout < tlsProbe.timeoutSeconds, `${probe}: --timeout ${timeout} s`);
        for (const field of ["periodSeconds", "timeoutSeconds", "failureThreshold"]) {
          assert.equal(tlsProbe[field], container[probe][field], `${probe}.${field}`);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  // The certificate: cert-manager's kind, server and client auth (the probes present it to an
  // mTLS server), a fresh key at each renewal, renewed well before it ends.
  assert.equal(certificate.apiVersion, "cert-manager.io/v1");
  assert.equal(certificate.kind, "Certificate");
  assert.ok(certificate.spec.usages.includes("server auth"));
  assert.ok(certificate.spec.usages.includes("client auth"));
  assert.equal(certificate.spec.privateKey.rotationPolicy, "Always");
  assert.ok(certificate.spec.dnsNames.includes("hourglass"));
  assert.ok(
    parseDurationSeconds(certificate.spec.renewBefore) >= parseDurationSeconds(certificate.spec.duration) / 4,
  );
});

test("shutdown: a preStop pause, then a grace period covering the lame duck and --shutdown_grace", () => {
  const command = container.lifecycle.preStop.exec.command;
  assert.equal(command.length, 2);
  assert.equal(command[0], "/bin/sleep");
  const pauseSeconds = Number(command[1]);
  assert.ok(pauseSeconds >= 2 && pauseSeconds <= 15, `preStop pause ${pauseSeconds}`);
  const graceSeconds = parseDurationSeconds(flags.shutdown_grace);
  assert.ok(
    pod.terminationGracePeriodSeconds >= pauseSeconds + LAME_DUCK_SECONDS + graceSeconds + 2,
    `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} < ${pauseSeconds} + ` +
      `${LAME_DUCK_SECONDS} + ${graceSeconds} + 2`,
  );
});

test("resources: CPU and memory requests and a memory limit", () => {
  const { requests, limits } = container.resources;
  assert.ok(requests.cpu);
  assert.ok(parseQuantityBytes(requests.memory) > 0);
  const limit = parseQuantityBytes(limits.memory);
  assert.ok(limit >= parseQuantityBytes(requests.memory));
  // At least a million pending tasks fit.
  assert.ok(limit / BYTES_PER_TASK >= 1e6, `memory limit ${limits.memory}`);
});

test("overload: --max_pending fits the memory limit with room for the process and payloads", () => {
  const limit = parseQuantityBytes(container.resources.limits.memory);
  const maxPending = Number(flags.max_pending);
  assert.ok(Number.isInteger(maxPending) && maxPending > 0, `--max_pending=${flags.max_pending}`);
  // The process takes about 300 MiB besides its tasks; at least 10 % of the limit is left for
  // payloads. A limit far below what the memory holds would refuse tasks for nothing.
  const tasksBytes = maxPending * BYTES_PER_TASK;
  assert.ok(tasksBytes + 300 * 2 ** 20 <= 0.9 * limit, `--max_pending=${maxPending} for ${limit} B`);
  assert.ok(tasksBytes >= 0.5 * limit, `--max_pending=${maxPending} wastes the ${limit} B limit`);
});

// The optional token auth: the lines of statefulset.yaml that start with "#auth: ", uncommented
// with the sed line its comment gives.
function enableAuth(text) {
  return text.replace(/^( *)#auth: /gm, "$1");
}

test("auth: off by default; uncommented, a Secret directory volume and --auth_tokens_file", () => {
  assert.ok(!container.args.some((a) => a.startsWith("--auth_tokens_file")));
  assert.ok(!pod.volumes.some((v) => v.secret));
  const source = readFileSync(path.join(KUBERNETES_DIR, "statefulset.yaml"), "utf8");
  assert.ok(source.includes("sed -i 's/^\\( *\\)#auth: /\\1/'"), "the comment's sed line changed");
  assert.equal((source.match(/^ *#auth: /gm) || []).length, 9);
  const dir = mkdtempSync(path.join(tmpdir(), "hourglass-kustomize-"));
  try {
    cpSync(KUBERNETES_DIR, dir, { recursive: true });
    writeFileSync(path.join(dir, "statefulset.yaml"), enableAuth(source));
    const objects = render(dir);
    for (const object of objects) {
      assert.doesNotThrow(() => validate(object), `${object.kind}/${object.metadata.name}`);
    }
    const authPod = only(objects, "StatefulSet", "hourglass").spec.template.spec;
    const authContainer = authPod.containers.find((c) => c.name === "hourglass");
    assert.deepEqual(authContainer.args, [...container.args, "--auth_tokens_file=/etc/hourglass-auth/tokens"]);
    const volume = authPod.volumes.find((v) => v.secret);
    assert.equal(volume.secret.secretName, "hourglass-auth-tokens");
    assert.equal(volume.secret.optional, false);
    assert.equal(volume.secret.defaultMode & 0o007, 0, "the tokens must not be world-readable");
    assert.equal(volume.secret.defaultMode & 0o040, 0o040, "the server's group (fsGroup) reads them");
    assert.equal(volume.secret.items, undefined, "every key of the Secret, as files");
    const mount = authContainer.volumeMounts.find((m) => m.name === volume.name);
    assert.equal(mount.subPath, undefined, "a subPath mount never sees a Secret update");
    assert.equal(mount.readOnly, true);
    assert.equal(`${mount.mountPath}/tokens`, "/etc/hourglass-auth/tokens");
    // Not below another volume's mount (the flags ConfigMap is read-only).
    for (const other of authContainer.volumeMounts.filter((m) => m !== mount)) {
      assert.ok(!mount.mountPath.startsWith(`${other.mountPath}/`), other.mountPath);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("security: non-root numeric user of the image, read-only root, nothing to escalate", () => {
  const uid = Number(dockerRuntime().user.split(":")[0]);
  assert.ok(uid > 0);
  const podSecurity = pod.securityContext;
  assert.equal(podSecurity.runAsNonRoot, true);
  assert.equal(podSecurity.runAsUser, uid);
  assert.equal(podSecurity.fsGroup, uid);
  assert.deepEqual(podSecurity.seccompProfile, { type: "RuntimeDefault" });
  const security = container.securityContext;
  assert.equal(security.runAsNonRoot, true);
  assert.equal(security.runAsUser, uid);
  assert.equal(security.readOnlyRootFilesystem, true);
  assert.equal(security.allowPrivilegeEscalation, false);
  assert.notEqual(security.privileged, true);
  assert.deepEqual(security.capabilities, { drop: ["ALL"] });
  assert.deepEqual(security.seccompProfile, { type: "RuntimeDefault" });
  assert.equal(pod.automountServiceAccountToken, false);
  assert.ok(!pod.hostNetwork && !pod.hostPID && !pod.hostIPC);
});

test("the image is the project's version, never :latest", () => {
  assert.equal(container.image, `hourglass:${projectVersion()}`);
  assert.equal(container.imagePullPolicy, "IfNotPresent");
});

test("PodDisruptionBudget: at most one pod evicted at a time", () => {
  const pdb = only(base, "PodDisruptionBudget");
  assert.equal(pdb.apiVersion, "policy/v1");
  assert.equal(pdb.spec.maxUnavailable, 1);
});

test("monitoring: a ServiceMonitor that scrapes each pod once and the PrometheusRule", () => {
  assert.deepEqual(monitoring.map((o) => o.kind).sort(), ["PrometheusRule", "ServiceMonitor"]);
  const monitor = only(monitoring, "ServiceMonitor");
  const selected = byKind(base, "Service").filter((s) =>
    matches(monitor.spec.selector.matchLabels, s.metadata.labels),
  );
  assert.ok(selected.length > 0, "the ServiceMonitor selects no Service");
  for (const endpoint of monitor.spec.endpoints) {
    const exposing = selected.filter((s) => s.spec.ports.some((p) => p.name === endpoint.port));
    assert.equal(exposing.length, 1, `port ${endpoint.port} is on ${exposing.length} selected Services`);
  }
  const rule = only(monitoring, "PrometheusRule");
  const alerts = rule.spec.groups.flatMap((g) => g.rules).filter((r) => r.alert);
  assert.ok(alerts.length > 0);
});

test("a kustomization with a deprecated field is refused", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "hourglass-kustomize-"));
  try {
    cpSync(KUBERNETES_DIR, dir, { recursive: true });
    const kustomization = readFileSync(path.join(dir, "kustomization.yaml"), "utf8");
    writeFileSync(
      path.join(dir, "kustomization.yaml"),
      `${kustomization}commonLabels:\n  example.com/extra: "true"\n`,
    );
    // kustomize v5 warns that commonLabels is deprecated; v2 (Debian's kubectl) knows no
    // deprecations, and then the label must at least show.
    let objects;
    try {
      objects = render(dir);
    } catch (error) {
      assert.match(String(error), /warned|deprecated/);
      return;
    }
    assert.ok(objects.every((o) => o.metadata.labels["example.com/extra"] === "true"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the kustomization is checked by this test: a broken copy fails to render", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "hourglass-kustomize-"));
  try {
    cpSync(KUBERNETES_DIR, dir, { recursive: true });
    writeFileSync(
      path.join(dir, "kustomization.yaml"),
      readFileSync(path.join(dir, "kustomization.yaml"), "utf8").replace(
        "- poddisruptionbudget.yaml",
        "- missing.yaml",
      ),
    );
    assert.throws(() => render(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
