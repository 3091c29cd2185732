/**
 * GPU detection in the slurmd image, without a GPU, as far as Slurm's real code
 * goes: `slurmd -G` (the GRES slurmd would register) with gres.conf's
 * AutoDetect=nvidia on STAND-IN driver files, AutoDetect=nvml without NVML, and
 * AutoDetect=nvml with a STAND-IN NVML (test/images/standins/nvml: two GPUs),
 * then a node with Gres=gpu:h100:2 in a cluster that runs `srun --gres=gpu:1`.
 *
 * What stands in for the node's GPU stack, as the NVIDIA container toolkit
 * would give it to a container:
 * - the device files /dev/nvidia0, /dev/nvidia1 and /dev/nvidiactl: character
 *   devices 195:N made here with mknod and passed with `docker run --device`
 *   (nothing opens them: no driver serves major 195 on this machine);
 * - libnvidia-ml.so.1: the STAND-IN, bind-mounted read-only where the toolkit
 *   mounts the driver's (the multiarch library directory);
 * - for gpu/nvidia, the driver's /proc/driver/nvidia/gpus/<pci>/information and
 *   /sys/bus/pci/drivers/nvidia/<pci>/local_cpulist: files on tmpfs mounts made
 *   inside the test container (CAP_SYS_ADMIN; docker refuses bind mounts there).
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gpuPluginsFor } from "../../src/core/gpu.js";
import type { Flavor } from "../../src/core/manifest.js";
import {
  CGROUP_CONF,
  CONTAINER_PREFIX,
  DEFAULT_PORTS,
  exec,
  logsOfAll,
  NODE_NAME,
  removeContainers,
  requireRunning,
  slurmConf,
  startDaemon,
  waitFor,
  withDiagnosis,
  writeClusterFiles,
} from "./cluster.js";
import { docker, dockerOk, ENGINE_DIR, HERE, REPO, run } from "./harness.js";
import { controllerContainer, controllerDirs, OP, type OperatorPorts, removeOperatorFiles, SLURM_UID, startPodContainer, writeOperatorFiles, writeOwned } from "./operator.js";
import type { ClusterSubject } from "./operator-cluster.js";

const MINUTE = 60_000;

/** What the STAND-INs report: the driver's model name. */
export const STANDIN_MODEL = "NVIDIA H100 80GB HBM3";
/**
 * The node's Gres= as a site writes it: slurmd names a detected GPU by this
 * type only when the type is a substring of the model it detected
 * (nvidia_h100_80gb_hbm3), else its type is (null).
 */
export const NODE_GRES = "gpu:h100:2";
const GRES_TYPE = "h100";
const GPUS = [
  { pci: "0000:1a:00.0", minor: 0 },
  { pci: "0000:1b:00.0", minor: 1 },
] as const;

/**
 * Every GPU is affine to all of this machine's CPUs: one socket. (An affinity
 * that splits a socket makes slurmctld set the node INVAL: "autodetected core
 * affinity ... doesn't match socket boundaries".)
 */
const CPU_LIST = (() => {
  const cpus = Math.max(1, availableParallelism());
  return cpus === 1 ? "0" : `0-${cpus - 1}`;
})();

/** The library directory the container toolkit mounts the driver's libraries into. */
const LIB_DIR = { amd64: "/usr/lib/x86_64-linux-gnu", arm64: "/usr/lib/aarch64-linux-gnu" } as const;

export const GPU_NAMES = {
  probe: `${CONTAINER_PREFIX}gpu-probe`,
  ctld: `${CONTAINER_PREFIX}gpu-slurmctld`,
  slurmd: `${CONTAINER_PREFIX}gpu-slurmd`,
  opCtld: `${CONTAINER_PREFIX}gpu-op-slurmctld`,
  opSlurmd: `${CONTAINER_PREFIX}gpu-op-slurmd`,
} as const;

/** The GPU worker pod of the operator-shaped check: a NodeSet `gpu-h100`'s first pod. */
const GPU_POD = "gpu-h100-0";

export interface GpuReport {
  nvidia: string;
  nvmlMissing: string;
  nvml: string;
  node: string;
  srun: string;
  operator: string;
  passed: boolean;
}

/** gres.conf with one AutoDetect line, as a site writes it. */
export const gresConf = (autodetect: "nvidia" | "nvml") => `AutoDetect=${autodetect}\n`;

/** The driver's /proc/driver/nvidia/gpus/<pci>/information for a STAND-IN GPU (the lines gpu/nvidia reads, in the driver's format). */
export function driverInformation(gpu: (typeof GPUS)[number]): string {
  return [
    `Model: \t\t ${STANDIN_MODEL}`,
    "IRQ:   \t\t 0",
    `GPU UUID: \t GPU-55555555-0000-4000-8000-00000000000${gpu.minor}`,
    "Video BIOS: \t ??.??.??.??.??",
    "Bus Type: \t PCIe",
    "DMA Size: \t 52 bits",
    "DMA Mask: \t 0xfffffffffffff",
    `Bus Location: \t ${gpu.pci}`,
    `Device Minor: \t ${gpu.minor}`,
    "GPU Excluded:\t No",
    "",
  ].join("\n");
}

/** The sh that makes the STAND-IN driver files of every GPU on tmpfs mounts (run as root with CAP_SYS_ADMIN). */
export function driverFilesScript(): string {
  const lines = ["mount -t tmpfs -o mode=0755 tmpfs /proc/driver", "mount -t tmpfs -o mode=0755 tmpfs /sys/bus/pci/drivers"];
  for (const gpu of GPUS) {
    lines.push(
      `mkdir -p /proc/driver/nvidia/gpus/${gpu.pci} /sys/bus/pci/drivers/nvidia/${gpu.pci}`,
      `printf '%b' '${driverInformation(gpu).replace(/\t/g, "\\t").replace(/\n/g, "\\n")}' >/proc/driver/nvidia/gpus/${gpu.pci}/information`,
      `echo ${CPU_LIST} >/sys/bus/pci/drivers/nvidia/${gpu.pci}/local_cpulist`,
    );
  }
  return lines.join("\n");
}

/** slurm.conf and gres.conf for `slurmd -G` on one node with two GPUs (no controller needed). */
function probeConfScript(autodetect: "nvidia" | "nvml"): string {
  const conf = slurmConf(DEFAULT_PORTS, "localhost", { cpus: 2, accounting: false, gres: NODE_GRES });
  return [
    `printf '%s' '${conf}' >/etc/slurm/slurm.conf`,
    `printf '%s' '${gresConf(autodetect)}' >/etc/slurm/gres.conf`,
    `printf '%s' '${CGROUP_CONF}' >/etc/slurm/cgroup.conf`,
    // auth/slurm's key (slurmd loads its auth plugin before it prints the GRES).
    "head -c 1024 /dev/urandom >/etc/slurm/slurm.key && chmod 600 /etc/slurm/slurm.key",
  ].join("\n");
}

/** `Gres Name=gpu ...` lines of `slurmd -G`, one per GPU found. */
export const gresLines = (output: string) => output.split("\n").filter((line) => /\bName=gpu\b/.test(line));

/** Both STAND-IN GPUs in `slurmd -G`'s output, each with the node's type, its device file and the socket's cores. */
function expectBothGpus(output: string): void {
  const lines = gresLines(output);
  expect(lines, output).toHaveLength(2);
  for (const gpu of GPUS) {
    const line = lines.find((l) => l.includes(`File=/dev/nvidia${gpu.minor} `)) ?? "";
    expect(line, output).toContain(`Type=${GRES_TYPE} `);
    expect(line, output).toContain(`Cores=${CPU_LIST} `);
  }
}

/**
 * Compiles the STAND-IN NVML against the flavor's nvml.h in a test-only image
 * (standins/nvml/Dockerfile, with the recipe's apt.sh); returns the library's path in `outDir`.
 */
export async function buildNvmlStandIn(baseImage: string, flavor: Flavor, outDir: string): Promise<string> {
  const context = mkdtempSync(join(outDir, "nvml-context-"));
  try {
    cpSync(join(HERE, "standins", "nvml"), context, { recursive: true });
    cpSync(join(REPO, "dockerfiles", flavor.family, "build", "apt.sh"), join(context, "apt.sh"));
    const image = "slinky-test/nvml-standin:trixie";
    await dockerOk(
      [
        "build", "--network", "host", "-t", image,
        "--build-arg", `BASE_IMAGE=${baseImage}`,
        "--build-arg", `GPU_APT_COMPONENTS=${(flavor.gpu?.buildComponents ?? []).join(" ")}`,
        "--build-arg", `NVML_BUILD_PACKAGES=${(flavor.gpu?.plugins.nvml?.build ?? []).join(" ")}`,
        context,
      ],
      { timeoutMs: 15 * MINUTE },
    );
    mkdirSync(outDir, { recursive: true });
    await dockerOk(["run", "--rm", "--network", "none", "-v", `${outDir}:/host`, "--entrypoint", "cp", image, "/out/libnvidia-ml.so.1", "/host/libnvidia-ml.so.1"]);
    return join(outDir, "libnvidia-ml.so.1");
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
}

/** Makes the STAND-IN device files (character devices 195:N, as the driver's) in `dir`; returns them as `--device` values. */
async function deviceFiles(dir: string): Promise<string[]> {
  const devices: string[] = [];
  for (const [name, minor] of [...GPUS.map((gpu) => [`nvidia${gpu.minor}`, gpu.minor] as const), ["nvidiactl", 255] as const]) {
    const path = join(dir, name);
    rmSync(path, { force: true });
    const made = await run("mknod", ["-m", "0666", path, "c", "195", String(minor)], { timeoutMs: 10_000 });
    if (made.code !== 0) throw new Error(`mknod ${path}: ${made.stderr}`);
    devices.push(`${path}:/dev/${name}`);
  }
  return devices;
}

/**
 * The GPU tests, in a describe block of their own, for images whose flavor
 * builds gpu/nvml (`flavor` once the images are built).
 */
export function gpuTests(s: ClusterSubject, flavor: () => Flavor, report: GpuReport): void {
  describe.sequential(`GPU detection in ${s.label}'s slurmd (STAND-IN driver files and NVML, no GPU)`, () => {
    let dir = "";
    let nvml = "";
    let devices: string[] = [];
    const deviceFlags = () => devices.flatMap((device) => ["--device", device]);
    const names = GPU_NAMES;
    const libDir = LIB_DIR.amd64;

    beforeAll(async () => {
      await removeContainers(Object.values(names));
      const parent = join(ENGINE_DIR, "..", "slinky-cluster");
      mkdirSync(parent, { recursive: true });
      dir = mkdtempSync(join(parent, "gpu-"));
      if (!gpuPluginsFor(flavor(), "linux/amd64").includes("nvml")) throw new Error("the flavor under test builds no gpu/nvml");
      nvml = await buildNvmlStandIn(s.baseImage(), flavor(), dir);
      devices = await deviceFiles(dir);
    }, 20 * MINUTE);

    afterAll(async () => {
      await removeContainers(Object.values(names));
      if (dir) rmSync(dir, { recursive: true, force: true });
    }, 5 * MINUTE);

    /** `slurmd -G` in a throw-away slurmd container: the script's files first, then the probe. */
    const probe = async (setup: string, flags: readonly string[]) => {
      const script = ["set -e", setup, `slurmd -G -N ${NODE_NAME} 2>&1`].join("\n");
      const r = await docker(["run", "--rm", "--name", names.probe, "--network", "none", ...flags, "--entrypoint", "sh", s.ref("slurmd"), "-c", script], {
        timeoutMs: 2 * MINUTE,
      });
      return { code: r.code, output: `${r.stdout}${r.stderr}` };
    };

    it("AutoDetect=nvidia: the real gpu/nvidia reads the driver's /proc and /sys files and reports both GPUs", async () => {
      const r = await probe(`${driverFilesScript()}\n${probeConfScript("nvidia")}`, ["--cap-add", "SYS_ADMIN", ...deviceFlags()]);
      report.nvidia = r.output.trim();
      expect(r.code, r.output).toBe(0);
      expectBothGpus(r.output);
    }, 5 * MINUTE);

    it("AutoDetect=nvml with no NVML on the node: slurmd says the library is missing, finds no GPU, and does not crash", async () => {
      const r = await probe(probeConfScript("nvml"), deviceFlags());
      report.nvmlMissing = r.output.trim();
      // Exits by itself (no signal: 128+N), naming the library it could not load.
      expect(r.code, r.output).toBeLessThan(128);
      expect(r.output).toMatch(/configured with nvml functionality, but that lib wasn't found on the system/);
      expect(r.output).toMatch(/libnvidia-ml\.so\.1: cannot open shared object file/);
      expect(gresLines(r.output).filter((line) => line.includes("File=/dev/nvidia")), r.output).toEqual([]);
    }, 5 * MINUTE);

    it("AutoDetect=nvml with the STAND-IN NVML: the real gpu/nvml reports both GPUs with their type, device file and cores", async () => {
      const r = await probe(probeConfScript("nvml"), [...deviceFlags(), "-v", `${nvml}:${libDir}/libnvidia-ml.so.1:ro`]);
      report.nvml = r.output.trim();
      expect(r.code, r.output).toBe(0);
      expectBothGpus(r.output);
      expect(r.output).toMatch(/gpu\/nvml: _get_system_gpu_list_nvml: 2 GPU system device\(s\) detected/);
      expect(r.output).not.toMatch(/error:/);
    }, 5 * MINUTE);

    it(
      "a node with Gres=gpu:h100:2 and AutoDetect=nvml registers idle (not drained), and srun --gres=gpu:1 gets CUDA_VISIBLE_DEVICES",
      async () => {
        // The mini cluster's files (key, cgroup.conf, state), with this node's slurm.conf and gres.conf.
        const { etc, keyOnly, state } = writeClusterFiles(dir, DEFAULT_PORTS, 0);
        writeFileSync(join(etc, "slurm.conf"), slurmConf(DEFAULT_PORTS, undefined, { cpus: 2, accounting: false, gres: NODE_GRES }));
        writeFileSync(join(etc, "gres.conf"), gresConf("nvml"));
        await withDiagnosis(
          () => logsOfAll(Object.values(names).filter((n) => n !== names.probe)),
          async () => {
            // Both through their images' own entrypoints, as root (docker run); slurmd configless gets gres.conf from slurmctld.
            await startDaemon({ name: names.ctld, image: s.ref("slurmctld"), mounts: [`${etc}:/etc/slurm:ro`, `${state}:/var/spool/slurmctld`] });
            await startDaemon({
              name: names.slurmd,
              image: s.ref("slurmd"),
              devices,
              mounts: [`${keyOnly}:/etc/slurm:ro`, `${nvml}:${libDir}/libnvidia-ml.so.1:ro`],
              env: { SLURMD_OPTIONS: `-N ${NODE_NAME} --conf-server 127.0.0.1:${DEFAULT_PORTS.slurmctld}`, SSHD_OPTIONS: `-p ${DEFAULT_PORTS.slurmdSsh}` },
            });
            report.node = await waitFor(
              "the GPU node to register idle",
              async () => {
                await requireRunning([names.ctld, names.slurmd]);
                const r = await exec(names.ctld, ["sinfo", "--noheader", "-N", "-o", "%N %T %G"], 30_000);
                return r.code === 0 && r.stdout.includes(`${NODE_NAME} idle`) ? r.stdout.trim() : undefined;
              },
              { timeoutMs: 3 * MINUTE },
            );
            expect(report.node).toContain("gpu:");
            const node = await exec(names.ctld, ["scontrol", "show", "node", NODE_NAME], 30_000);
            expect(node.stdout).toMatch(/State=IDLE\b/);
            expect(node.stdout).not.toMatch(/DRAIN/);
            expect(node.stdout).toContain(`Gres=${NODE_GRES}`);
            const one = await exec(names.ctld, ["srun", "-N1", "-t", "1", "--immediate=60", "--gres=gpu:1", "printenv", "CUDA_VISIBLE_DEVICES"], 2 * MINUTE);
            expect(one.code, `${one.stdout}${one.stderr}`).toBe(0);
            expect(one.stdout.trim()).toMatch(/^[01]$/);
            const two = await exec(names.ctld, ["srun", "-N1", "-t", "1", "--immediate=60", "--gres=gpu:2", "printenv", "CUDA_VISIBLE_DEVICES"], 2 * MINUTE);
            expect(two.code, `${two.stdout}${two.stderr}`).toBe(0);
            expect(two.stdout.trim()).toBe("0,1");
            report.srun = `gpu:1 -> ${one.stdout.trim()}; gpu:2 -> ${two.stdout.trim()}`;
          },
        );
      },
      10 * MINUTE,
    );

    it(
      "operator-shaped: gres.conf AutoDetect=nvml as a site's config file, a GPU NodeSet's pod (Gres= in --conf) registers idle and runs srun --gres=gpu:1",
      async () => {
        // Only this check's two pods run: the controller as the operator starts it
        // (401, read-only projected /etc/slurm, empty /run), and one worker pod.
        await removeContainers([names.ctld, names.slurmd]);
        const ports: OperatorPorts = { ...DEFAULT_PORTS, slurmrestd: 16820 };
        const f = await writeOperatorFiles(dir, ports, 0, s.version());
        try {
          // What a site adds: GresTypes in the controller's extraConfMap, gres.conf in configFiles
          // (projected like the operator's own files: 0610 -> 0650 root:401).
          // No accounting pod in this check: slurmctld would wait for slurmdbd's cluster id.
          const conf = join(f.controllerEtc, "slurm.conf");
          const rendered = readFileSync(conf, "utf8")
            .split("\n")
            .filter((line) => !/^AccountingStorage(Host|Port)=/.test(line))
            .map((line) => (line.startsWith("AccountingStorageType=") ? "AccountingStorageType=accounting_storage/none" : line))
            .join("\n");
          const withGres = `${rendered}GresTypes=gpu\n`;
          for (const [file, content] of [["slurm.conf", withGres], ["gres.conf", gresConf("nvml")]] as const) writeOwned(join(f.controllerEtc, file), content, 0o650, 0, SLURM_UID);
          // The daemons log to files in their log emptyDirs (no logfile sidecars here).
          const logFiles = () =>
            [join(f.empty.ctldLog, "slurmctld.log"), join(f.empty.workerLog, "slurmd.log")]
              .map((path) => `--- ${path}\n${existsSync(path) ? readFileSync(path, "utf8").split("\n").slice(-60).join("\n") : "(none)"}`)
              .join("\n");
          await withDiagnosis(
            async () => `${await logsOfAll([names.opCtld, names.opSlurmd])}\n${logFiles()}`,
            async () => {
              await startPodContainer(controllerContainer(names.opCtld, s.ref("slurmctld"), OP.controllerPod, f.controllerEtc, controllerDirs(f)));
              await startPodContainer({
                name: names.opSlurmd,
                image: s.ref("slurmd"),
                hostname: GPU_POD,
                capAdd: ["NET_ADMIN", "SYS_ADMIN", "SYS_NICE"],
                securityOpt: ["seccomp=unconfined", "apparmor=unconfined"],
                env: { POD_CPUS: "2", POD_MEMORY: "1024", SSHD_OPTIONS: `-p ${ports.slurmdSsh}` },
                mounts: [`${f.workerEtc}:/etc/slurm:ro`, `${f.empty.workerLog}:/var/log/slurm`, `${nvml}:${libDir}/libnvidia-ml.so.1:ro`],
                args: ["-Z", "--conf-server", `${OP.controllerService}:${ports.slurmctld}`, "--conf", `'Features=${OP.nodeset} Gres=${NODE_GRES}'`],
                devices,
              });
              report.operator = await waitFor(
                "the GPU NodeSet's pod to register idle",
                async () => {
                  await requireRunning([names.opCtld, names.opSlurmd]);
                  const r = await exec(names.opCtld, ["sinfo", "--noheader", "-N", "-o", "%N %T %G"], 30_000);
                  return r.code === 0 && r.stdout.includes(`${GPU_POD} idle`) ? r.stdout.trim() : undefined;
                },
                { timeoutMs: 3 * MINUTE },
              );
              expect(report.operator).toContain(`${GPU_POD} idle gpu:h100:2`);
              const one = await exec(names.opCtld, ["srun", "-N1", "-t", "1", "--immediate=60", "--gres=gpu:1", "printenv", "CUDA_VISIBLE_DEVICES"], 2 * MINUTE);
              expect(one.code, `${one.stdout}${one.stderr}`).toBe(0);
              expect(one.stdout.trim()).toMatch(/^[01]$/);
              report.passed = report.srun !== "";
            },
          );
        } finally {
          await removeContainers([names.opCtld, names.opSlurmd]);
          removeOperatorFiles(f);
        }
      },
      10 * MINUTE,
    );
  });
}
