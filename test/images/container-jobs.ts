/**
 * Container jobs through pyxis: what slurmd-pyxis and login-pyxis are for. A
 * cluster of slurmctld, slurmd-pyxis and login-pyxis on loopback, and a user's
 * `srun --container-image` / `#SBATCH --container-image` jobs on it, run as
 * that user, checked from their output.
 *
 * slurm-operator runs slurmd privileged; this machine's docker refuses
 * --privileged (operator.ts), so slurmd gets the two parts of it enroot needs:
 * CAP_SYS_ADMIN and no seccomp filter. With docker's default filter, enroot's
 * pivot_root in the user's namespaces fails ("enroot-switchroot: failed to
 * switch root: Operation not permitted", seen with the real enroot).
 *
 * The container image is made by the test: the harness's base image with an
 * /etc/os-release, a marker file and an /etc/environment of its own, packed
 * into a squashfs file (enroot's own image format) by the node's mksquashfs.
 *
 * A second image, built with docker from the same base and pushed to a
 * registry of the test's on loopback (Debian's docker-registry, plain HTTP),
 * is pulled by enroot itself (`--container-image=127.0.0.1:PORT#name`), as
 * users pull from NGC or a site's registry.
 *
 * These checks need the real pyxis and enroot (SLINKY_PYXIS_TARBALL,
 * SLINKY_ENROOT_DEBS: real-inputs.ts). With the STAND-INs (a pyxis that only
 * registers its options, an enroot that only answers `enroot version`) they
 * are skipped, each by a name that says so.
 */
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  CONTAINER_PREFIX,
  type ClusterFiles,
  DEFAULT_PORTS,
  exec,
  logsOfAll,
  NODE_NAME,
  PARTITION,
  removeClusterFiles,
  removeContainers,
  requireRunning,
  slurmConf,
  startDaemon,
  waitFor,
  withDiagnosis,
  writeClusterFiles,
} from "./cluster.js";
import { docker, dockerOk, ENGINE_DIR } from "./harness.js";
import type { ClusterSubject } from "./operator-cluster.js";
import { type RunningRegistry, startRegistry } from "../registry/harness.js";

const MINUTE = 60_000;

const NAMES = {
  ctld: `${CONTAINER_PREFIX}pyxis-slurmctld`,
  node: `${CONTAINER_PREFIX}pyxis-slurmd`,
  login: `${CONTAINER_PREFIX}pyxis-login`,
  imageSource: `${CONTAINER_PREFIX}pyxis-image-source`,
} as const;

/** The submitting user, made on the login node and the compute node (as sssd would give it). */
const USER = { name: "alice", uid: 1100 } as const;
/** A second user, whose home directory exists on the login node only (none is mounted on the node). */
const HOMELESS = { name: "bob", uid: 1101 } as const;
/**
 * slurm-operator's documented override of enroot.conf (docs/usage/override-config-file.md,
 * v1.2.1), which a site mounts over /etc/enroot/enroot.conf from a ConfigMap.
 */
const OPERATOR_ENROOT_CONF = [
  "ENROOT_RUNTIME_PATH         /run/enroot/${UID}/run",
  "ENROOT_CONFIG_PATH          /run/enroot/${UID}/config",
  "ENROOT_CACHE_PATH           /run/enroot/${UID}/cache",
  "ENROOT_DATA_PATH            /run/enroot/${UID}/data",
  "ENROOT_TEMP_PATH            /run/${UID}/tmp",
  "",
].join("\n");
/** Where the node sees the test's image, and the directory shared by login and node (a site's /shared). */
const IMAGE_DIR = "/srv/slinky-image";
const IMAGE = `${IMAGE_DIR}/slinky-test.sqsh`;
const SHARED = "/srv/slinky-shared";

const seconds = (since: number) => Math.round((Date.now() - since) / 100) / 10;

export interface ContainerJobsReport {
  /** Seconds to make the squashfs image (the part of `enroot import` a registry image would take). */
  imageSeconds: number;
  /** The first and second `srun --container-image` of the same image, end to end. */
  firstStartSeconds: number;
  secondStartSeconds: number;
  /** The same for the registry image: the first includes enroot's import (pull and convert). */
  registryFirstSeconds: number;
  registrySecondSeconds: number;
  checks: Record<string, string>;
  passed: boolean;
}

/**
 * The container-job tests on `s`'s pyxis images. `standIns` names the STAND-INs
 * the images were built with (the tests are then skipped by that name).
 */
export function containerJobTests(s: ClusterSubject, report: ContainerJobsReport, standIns?: string): void {
  const needsReal = (name: string) => (standIns ? `skipped: needs the real pyxis and enroot, this run built ${standIns}: ${name}` : name);
  describe.sequential(`container jobs through pyxis on ${s.label}`, () => {
    const ports = DEFAULT_PORTS;
    let files: ClusterFiles | undefined;
    let shared = "";
    /** The node's /etc/enroot/enroot.conf, bind-mounted from here (as a site's ConfigMap would be). */
    let enrootConf = "";
    let imageEnrootConf = "";
    let started = false;
    const token = randomBytes(8).toString("hex");
    const withLogs = (checks: () => Promise<void>) => withDiagnosis(() => logsOfAll([NAMES.ctld, NAMES.node, NAMES.login]), checks);
    /** A command on the login node as a user (alice unless said), with `env` in its environment. */
    const asUser = (command: readonly string[], env: Record<string, string> = {}, timeoutMs = 3 * MINUTE, user: { uid: number } = USER) =>
      docker(["exec", "-u", `${user.uid}:${user.uid}`, "-w", SHARED, ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]), NAMES.login, ...command], {
        timeoutMs,
      });
    const srun = (options: readonly string[], command: readonly string[], env: Record<string, string> = {}, user: { uid: number } = USER) =>
      asUser(["srun", "-N1", "-n1", "-c1", "--mem=10", "-t", "3", "--immediate=120", ...options, ...command], env, 3 * MINUTE, user);
    /** What a user's job sees of the image: its marker, then uid and name. */
    const whoInImage = ["sh", "-c", "cat /slinky-marker; id -u; id -un"];
    const output = (r: { stdout: string; stderr: string }) => `${r.stdout}${r.stderr}`.trim();
    /** The checks (report.passed needs every one), and those that passed. */
    const registered: string[] = [];
    const passed = new Set<string>();
    /**
     * One container-job check: needs the started cluster, fails with every
     * container's log, records what it saw under `name`.
     */
    const jobTest = (title: string, name: string, body: (record: (value: string) => void) => Promise<void>, timeoutMs = 3 * MINUTE) => {
      registered.push(name);
      it.skipIf(standIns !== undefined)(
        needsReal(title),
        async () => {
          expect(started, "the container-job cluster did not start").toBe(true);
          await withLogs(() => body((value) => (report.checks[name] = value)));
          passed.add(name);
        },
        timeoutMs,
      );
    };

    let registry: RunningRegistry | undefined;

    afterAll(async () => {
      report.passed = started && registered.every((name) => passed.has(name));
      await registry?.stop();
      await removeContainers(Object.values(NAMES));
      if (files) removeClusterFiles(files);
    }, 5 * MINUTE);

    it.skipIf(standIns !== undefined)(
      needsReal("slurmctld, slurmd-pyxis and login-pyxis start, the user exists on both nodes, and the test's squashfs image is made"),
      async () => {
        await removeContainers(Object.values(NAMES));
        files = writeClusterFiles(join(ENGINE_DIR, "..", "slinky-cluster"), ports, 0);
        // Two CPUs (two jobs at once), no accounting (this cluster has no slurmdbd),
        // and slurm-operator's AuthInfo=use_client_ids: the controller takes a job
        // user's name and groups from auth/slurm, not from its own passwd.
        const conf = slurmConf(ports, undefined, { cpus: 2, accounting: false, authInfo: "use_client_ids" });
        writeFileSync(join(files.etc, "slurm.conf"), conf, { mode: 0o644 });
        // pyxis as slurm-operator's docs load it: /etc/slurm is the operator's, so
        // the image's plugstack.conf.d is not seen; configless slurmd gets this file.
        writeFileSync(join(files.etc, "plugstack.conf"), "include /usr/share/pyxis/*\n", { mode: 0o644 });
        const imageDir = join(files.dir, "image");
        shared = join(files.dir, "shared");
        mkdirSync(imageDir);
        mkdirSync(shared);
        chmodSync(shared, 0o1777);
        await startDaemon({ name: NAMES.ctld, image: s.ref("slurmctld"), mounts: [`${files.etc}:/etc/slurm:ro`, `${files.state}:/var/spool/slurmctld`] });
        // The image's own enroot.conf, mounted from a file the test can rewrite in place.
        imageEnrootConf = await dockerOk(["run", "--rm", "--network", "none", "--entrypoint", "cat", s.ref("slurmd-pyxis"), "/etc/enroot/enroot.conf"]);
        enrootConf = join(files.dir, "enroot.conf");
        writeFileSync(enrootConf, imageEnrootConf, { mode: 0o644 });
        await startDaemon({
          name: NAMES.node,
          image: s.ref("slurmd-pyxis"),
          mounts: [`${files.keyOnly}:/etc/slurm:ro`, `${imageDir}:${IMAGE_DIR}`, `${shared}:${SHARED}`, `${enrootConf}:/etc/enroot/enroot.conf:ro`],
          capAdd: ["SYS_ADMIN"],
          securityOpt: ["seccomp=unconfined"],
          env: { SLURMD_OPTIONS: `-N ${NODE_NAME} --conf-server 127.0.0.1:${ports.slurmctld}`, SSHD_OPTIONS: `-p ${ports.slurmdSsh}` },
        });
        await startDaemon({
          name: NAMES.login,
          image: s.ref("login-pyxis"),
          mounts: [`${files.etc}:/etc/slurm:ro`, `${shared}:${SHARED}`],
          env: { SSHD_OPTIONS: `-p ${ports.loginSsh}` },
        });
        await withLogs(async () => {
          const users = [
            [NAMES.login, USER, "-m"],
            [NAMES.node, USER, "-m"],
            [NAMES.login, HOMELESS, "-m"],
            [NAMES.node, HOMELESS, "-M"],
          ] as const;
          for (const [node, user, home] of users) {
            const made = await exec(node, ["useradd", "-u", String(user.uid), "-U", home, "-s", "/bin/bash", user.name]);
            expect(made.code, output(made)).toBe(0);
          }
          await waitFor(
            "sinfo to show the node idle",
            async () => {
              await requireRunning([NAMES.ctld, NAMES.node, NAMES.login]);
              const r = await asUser(["sinfo", "--noheader", "-N", "-o", "%N %T %P"], {}, 30_000);
              return r.code === 0 && r.stdout.includes(`${NODE_NAME} idle ${PARTITION}`) ? r.stdout.trim() : undefined;
            },
            { timeoutMs: 3 * MINUTE },
          );
          // The image: the base image's files, with an os-release, a marker and an
          // /etc/environment only it has, packed by the node's own mksquashfs.
          const t0 = Date.now();
          await removeContainers([NAMES.imageSource]);
          await dockerOk(["create", "--name", NAMES.imageSource, s.baseImage(), "true"]);
          await dockerOk(["export", "-o", join(imageDir, "rootfs.tar"), NAMES.imageSource], { timeoutMs: 5 * MINUTE });
          await removeContainers([NAMES.imageSource]);
          const pack = [
            "set -eu",
            "r=$(mktemp -d /var/tmp/slinky-rootfs.XXXXXX)",
            `tar -xf ${IMAGE_DIR}/rootfs.tar -C "$r"`,
            // No device nodes: a registry image holds none (enroot import drops them),
            // and an unprivileged user's unsquashfs cannot make them.
            'find "$r/dev" -mindepth 1 -delete',
            'rm -f "$r/etc/os-release"',
            `printf 'PRETTY_NAME="slinky-test container image ${token}"\\nID=slinkytest\\n' >"$r/etc/os-release"`,
            `echo ${token} >"$r/slinky-marker"`,
            `echo SLINKY_IMAGE_VAR=from-image >>"$r/etc/environment"`,
            `mksquashfs "$r" ${IMAGE} -noappend -quiet`,
            `chmod 0644 ${IMAGE}`,
            `rm -rf "$r" ${IMAGE_DIR}/rootfs.tar`,
          ].join("\n");
          const packed = await exec(NAMES.node, ["sh", "-c", pack], 10 * MINUTE);
          expect(packed.code, output(packed)).toBe(0);
          report.imageSeconds = seconds(t0);
        });
        started = true;
      },
      20 * MINUTE,
    );

    jobTest("srun --container-image runs the command inside the image, as the submitting user, and again from a fresh container", "image", async (record) => {
      const command = ["sh", "-c", "cat /etc/os-release /slinky-marker; id -u; id -un"];
      const t0 = Date.now();
      const first = await srun([`--container-image=${IMAGE}`], command);
      report.firstStartSeconds = seconds(t0);
      record(output(first));
      expect(first.code, output(first)).toBe(0);
      expect(first.stdout).toContain(`PRETTY_NAME="slinky-test container image ${token}"`);
      expect(first.stdout.trim().split("\n").slice(-3)).toEqual([token, String(USER.uid), USER.name]);
      const t1 = Date.now();
      const second = await srun([`--container-image=${IMAGE}`], command);
      report.secondStartSeconds = seconds(t1);
      expect(second.code, output(second)).toBe(0);
      expect(second.stdout.trim().split("\n").slice(-3)).toEqual([token, String(USER.uid), USER.name]);
    });

    jobTest("--container-mounts shows a host directory inside the container", "mounts", async (record) => {
      writeFileSync(join(shared, "hello"), `${token}\n`, { mode: 0o644 });
      const r = await srun([`--container-image=${IMAGE}`, `--container-mounts=${SHARED}:/data`], ["cat", "/data/hello"]);
      record(output(r));
      expect(r.code, output(r)).toBe(0);
      expect(r.stdout.trim()).toBe(token);
    });

    jobTest("--container-name keeps a container across two steps of one job", "name", async (record) => {
      // pyxis's containers are read-only unless --container-writable.
      const steps = [
        `srun --container-image=${IMAGE} --container-name=reused --container-writable sh -c 'echo ${token} >/reused'`,
        "srun --container-name=reused --container-writable cat /reused",
      ].join(" && ");
      const r = await asUser(["salloc", "-N1", "-n1", "-c1", "--mem=10", "-t", "3", "--immediate=120", "sh", "-c", steps]);
      record(output(r));
      expect(r.code, output(r)).toBe(0);
      expect(r.stdout.trim().split("\n")).toContain(token);
    });

    jobTest("the job's environment reaches the container; --container-env lets it override the image's /etc/environment", "env", async (record) => {
      const show = ["sh", "-c", 'echo "$SLINKY_JOB_VAR|$SLINKY_IMAGE_VAR|$SLURM_JOB_ID"'];
      const env = { SLINKY_JOB_VAR: token, SLINKY_IMAGE_VAR: "from-job" };
      const plain = await srun([`--container-image=${IMAGE}`], show, env);
      const overridden = await srun([`--container-image=${IMAGE}`, "--container-env=SLINKY_IMAGE_VAR"], show, env);
      record(`${output(plain)} / ${output(overridden)}`);
      expect(plain.code, output(plain)).toBe(0);
      expect(overridden.code, output(overridden)).toBe(0);
      expect(plain.stdout.trim()).toMatch(new RegExp(`^${token}\\|from-image\\|\\d+$`, "m"));
      expect(overridden.stdout.trim()).toMatch(new RegExp(`^${token}\\|from-job\\|\\d+$`, "m"));
    });

    jobTest("a failing command's exit code reaches srun", "exit", async (record) => {
      const r = await srun([`--container-image=${IMAGE}`], ["sh", "-c", "exit 7"]);
      record(`exit ${r.code}: ${output(r)}`);
      expect(r.code, output(r)).toBe(7);
    });

    jobTest(
      "two container jobs run on the node at once",
      "concurrent",
      async (record) => {
        // Each job waits (bounded) for the other's mark: both pass only if they overlap.
        const job = (me: string, other: string) =>
          srun(
            [`--container-image=${IMAGE}`, `--container-mounts=${SHARED}:/data`],
            ["sh", "-c", `touch /data/${me}-${token}; i=0; while [ ! -e /data/${other}-${token} ] && [ $i -lt 90 ]; do sleep 1; i=$((i+1)); done; test -e /data/${other}-${token} && echo ${me} saw ${other}`],
          );
        const [a, b] = await Promise.all([job("a", "b"), job("b", "a")]);
        record(`${output(a)} / ${output(b)}`);
        expect(a.code, output(a)).toBe(0);
        expect(b.code, output(b)).toBe(0);
        expect(a.stdout).toContain("a saw b");
        expect(b.stdout).toContain("b saw a");
      },
      5 * MINUTE,
    );

    jobTest(
      "sbatch with #SBATCH --container-image runs the batch script inside the image",
      "sbatch",
      async (record) => {
        const script = join(shared, "container-job.sh");
        writeFileSync(
          script,
          [
            "#!/bin/sh",
            `#SBATCH --container-image=${IMAGE}`,
            `#SBATCH --container-mounts=${SHARED}:/data`,
            `#SBATCH --output=${SHARED}/sbatch-%j.out`,
            "#SBATCH -N1 -n1 -c1 --mem=10 -t 3",
            "cat /slinky-marker",
            "id -un",
            "ls /data/hello",
            "",
          ].join("\n"),
          { mode: 0o644 },
        );
        chownSync(script, USER.uid, USER.uid);
        const submitted = await asUser(["sbatch", "--parsable", `${SHARED}/container-job.sh`]);
        expect(submitted.code, output(submitted)).toBe(0);
        const id = submitted.stdout.trim().split(";")[0]!;
        const state = await waitFor(
          `job ${id} to end`,
          async () => {
            const r = await asUser(["scontrol", "show", "job", id], {}, 30_000);
            const m = /JobState=(\S+)/.exec(r.stdout);
            return m && !["PENDING", "RUNNING", "CONFIGURING", "COMPLETING"].includes(m[1]!) ? `${m[1]} ${/ExitCode=\S+/.exec(r.stdout)?.[0] ?? ""}` : undefined;
          },
          { timeoutMs: 4 * MINUTE },
        );
        const out = readFileSync(join(shared, `sbatch-${id}.out`), "utf8");
        record(`${state}: ${out.trim()}`);
        expect(state).toBe("COMPLETED ExitCode=0:0");
        expect(out.trim().split("\n")).toEqual([token, USER.name, "/data/hello"]);
      },
      6 * MINUTE,
    );

    jobTest(
      "srun --container-image=REGISTRY#IMAGE: enroot pulls the image from a registry and runs it, with the image's ENV",
      "registry",
      async (record) => {
        registry = await startRegistry({ kind: "none" });
        const name = `slinky-test/container-job:${token}`;
        const context = join(files!.dir, "registry-image");
        mkdirSync(context);
        writeFileSync(
          join(context, "Dockerfile"),
          [
            `FROM ${s.baseImage()}`,
            `RUN rm -f /etc/os-release && printf 'PRETTY_NAME="slinky-test registry image ${token}"\\n' >/etc/os-release && echo ${token} >/slinky-marker`,
            "ENV SLINKY_IMAGE_VAR=from-registry",
            "",
          ].join("\n"),
        );
        await dockerOk(["build", "--network", "host", "-t", `${registry.host}/${name}`, context], { timeoutMs: 5 * MINUTE });
        await dockerOk(["push", `${registry.host}/${name}`], { timeoutMs: 5 * MINUTE });
        // The test's registry speaks plain HTTP, which enroot refuses unless the
        // site allows it: one line added to the node's enroot.conf for this check.
        writeFileSync(enrootConf, `${imageEnrootConf}ENROOT_ALLOW_HTTP yes\n`);
        try {
          const image = `--container-image=${registry.host}#${name}`;
          const command = ["sh", "-c", 'grep PRETTY_NAME /etc/os-release; cat /slinky-marker; echo "$SLINKY_IMAGE_VAR"; id -un'];
          const expected = [`PRETTY_NAME="slinky-test registry image ${token}"`, token, "from-registry", USER.name];
          const t0 = Date.now();
          const first = await srun([image], command);
          report.registryFirstSeconds = seconds(t0);
          record(output(first));
          expect(first.code, output(first)).toBe(0);
          expect(first.stdout.trim().split("\n")).toEqual(expected);
          const t1 = Date.now();
          const second = await srun([image], command);
          report.registrySecondSeconds = seconds(t1);
          expect(second.code, output(second)).toBe(0);
          expect(second.stdout.trim().split("\n")).toEqual(expected);
        } finally {
          writeFileSync(enrootConf, imageEnrootConf);
        }
      },
      10 * MINUTE,
    );

    jobTest("a user with no home directory on the node runs a container job", "homeless", async (record) => {
      const r = await srun([`--container-image=${IMAGE}`], whoInImage, {}, HOMELESS);
      record(output(r));
      expect(r.code, output(r)).toBe(0);
      expect(r.stdout.trim().split("\n")).toEqual([token, String(HOMELESS.uid), HOMELESS.name]);
      // enroot kept the container in the image's per-user directory, private to the user.
      const dir = await exec(NAMES.node, ["stat", "-c", "%U %a", `/usr/share/enroot/enroot-data/user-${HOMELESS.uid}`]);
      expect(dir.stdout.trim(), output(dir)).toBe(`${HOMELESS.name} 700`);
    });

    jobTest(
      "slurm-operator's documented enroot.conf over /etc/enroot/enroot.conf: container jobs of two users, one after the other",
      "operatorEnrootConf",
      async (record) => {
        writeFileSync(enrootConf, OPERATOR_ENROOT_CONF);
        try {
          const results: string[] = [];
          for (const user of [USER, HOMELESS]) {
            const r = await srun([`--container-image=${IMAGE}`], whoInImage, {}, user);
            results.push(output(r));
            expect(r.code, output(r)).toBe(0);
            expect(r.stdout.trim().split("\n")).toEqual([token, String(user.uid), user.name]);
          }
          record(results.join(" / "));
        } finally {
          writeFileSync(enrootConf, imageEnrootConf);
        }
      },
    );

    jobTest("the pyxis entrypoint's /tmp tmpfs and fresh /proc were on, as by default", "entrypoint", async (record) => {
      const logs = await docker(["logs", NAMES.node], { timeoutMs: 30_000 });
      const log = `${logs.stdout}${logs.stderr}`;
      record(log.split("\n").filter((line) => line.includes("pyxis-entrypoint.sh")).join("\n"));
      expect(log).toContain("mounted a tmpfs on /tmp");
      expect(log).toContain("mounted a fresh /proc");
    });
  });
}
