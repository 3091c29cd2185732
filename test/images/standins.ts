/**
 * STAND-IN inputs for the image harness: minimal but real replacements for
 * the downloads this machine cannot reach (GitHub, dl.k8s.io, NVIDIA's apt
 * repository). The recipe builds them through the very stages and checks it
 * uses for the real inputs:
 *
 * - pyxis source tarball (top dir pyxis-<ver>/): a tiny real SPANK plugin in C
 *   with pyxis's build interface (Makefile `all install orig deb`, debian/
 *   packaging producing nvslurm-plugin-pyxis, `make install` writing
 *   pyxis.conf), built in the image against slurm-smd-dev;
 * - enroot and enroot+caps .debs (dpkg-deb), with a real `enroot` script
 *   that answers `enroot version`, an extra hook and bash completion;
 * - kubectl: a tiny executable answering `kubectl version --client`;
 * - the NVIDIA container toolkit repository: a flat apt repository holding
 *   nvidia-container-toolkit and nvidia-container-toolkit-base at the pinned
 *   version, its Release signed by an OpenPGP key generated here; the key's
 *   armored export is the NVIDIA_KEY input.
 *
 * The sources live in test/images/standins/ (see its README.md).
 * Everything is labelled STAND-IN. The outputs are deterministic (fixed
 * timestamps and owners) and are reused from `dir` when already made with the
 * same versions, so a second harness run passes the same sha256s and the
 * engine's cache stays warm. Host tools: tar, gzip, dpkg-deb, gpg, gpgconf.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Fixed timestamp for everything packed (2025-01-01T00:00:00Z). */
const EPOCH = 1735689600;

export interface StandInOptions {
  /** e.g. "0.24.0" (PYXIS_VERSION) */
  readonly pyxisVersion: string;
  /** e.g. "4.1.2" (ENROOT_VERSION) */
  readonly enrootVersion: string;
  /** e.g. "1.35.0" (KUBECTL_VERSION) */
  readonly kubectlVersion: string;
  /** apt version, e.g. "1.18.0-1" (NVIDIA_TOOLKIT_VERSION) */
  readonly nvidiaToolkitVersion: string;
  /** The .debs' architecture; amd64 when absent (and then left out, so amd64 stand-ins made before are reused). */
  readonly arch?: "arm64";
}

export interface StandInFile {
  /** Path relative to the stand-ins directory: serve the directory and append this. */
  readonly file: string;
  /** Absolute path. */
  readonly path: string;
  readonly sha256: string;
  readonly version: string;
  readonly description: string;
}

export interface StandIns {
  readonly dir: string;
  readonly options: StandInOptions;
  readonly pyxis: StandInFile;
  readonly enroot: StandInFile;
  readonly enrootCaps: StandInFile;
  readonly kubectl: StandInFile;
  /** The armored public key that signs the repository (NVIDIA_KEY_URL / _SHA256). */
  readonly nvidiaKey: StandInFile & { readonly fingerprint: string };
  /** The flat apt repository: NVIDIA_REPO_URL is the served URL of `dir`. */
  readonly nvidiaRepo: { readonly dir: string; readonly path: string; readonly version: string; readonly description: string };
}

const STATE = "standins.json";

const sha256Of = async (path: string): Promise<string> =>
  createHash("sha256").update(await readFile(path)).digest("hex");

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes a file (parents made), sets its mode and the fixed mtime. */
async function put(path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
  await chmod(path, mode);
}

/** Fixed mtimes on a whole tree, so tar and dpkg-deb produce the same bytes each time. */
async function touchTree(root: string): Promise<void> {
  const { stdout } = await run("find", [root, "-print0"]);
  for (const path of stdout.split("\0").filter(Boolean)) await utimes(path, EPOCH, EPOCH);
}

/** dpkg-deb --build of a staged tree with a DEBIAN/control; deterministic. */
async function buildDeb(stage: string, out: string): Promise<void> {
  await touchTree(stage);
  await mkdir(dirname(out), { recursive: true });
  await run("dpkg-deb", ["--root-owner-group", "-Zgzip", "--build", stage, out], {
    env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH) },
  });
}

function control(fields: Record<string, string>): string {
  return `${Object.entries(fields)
    .map(([key, value]) => `${key}: ${value}`)
    .join("\n")}\n`;
}

const MAINTAINER = "slinky-containers STAND-IN <standin@slinky-containers.invalid>";

// ---------------------------------------------------------------- pyxis

/** The fixture sources beside this module (test/images/standins/). */
const SOURCES = fileURLToPath(new URL("./standins/", import.meta.url));

/** A fixture file with @VERSION@ (and @DATE@) filled in. */
async function source(path: string, version: string): Promise<string> {
  const date = new Date(EPOCH * 1000).toUTCString().replace("GMT", "+0000");
  const text = await readFile(join(SOURCES, path), "utf8");
  return text.replaceAll("@VERSION@", version).replaceAll("@DATE@", date);
}

/** The fixture's mode bits (executables stay executable). */
async function modeOf(path: string): Promise<number> {
  return (await stat(join(SOURCES, path))).mode & 0o777;
}

async function makePyxis(dir: string, version: string): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), "standin-pyxis-"));
  try {
    const top = `pyxis-${version}`;
    const { stdout } = await run("find", [".", "-type", "f"], { cwd: join(SOURCES, "pyxis") });
    for (const name of stdout.split("\n").filter(Boolean)) {
      const path = join("pyxis", name);
      await put(join(work, top, name), await source(path, version), await modeOf(path));
    }
    await touchTree(join(work, top));
    const out = join(dir, `pyxis-${version}.STAND-IN.tar.gz`);
    const tar = `tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@${EPOCH} -C ${shq(work)} -cf - ${shq(top)} | gzip -n -9 > ${shq(out)}`;
    await run("sh", ["-c", `set -e; ${tar}`]);
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const shq = (value: string) => `'${value.replace(/'/g, "'\\''")}'`;

// ---------------------------------------------------------------- enroot

async function makeEnroot(dir: string, version: string, arch: string): Promise<{ enroot: string; caps: string }> {
  const work = await mkdtemp(join(tmpdir(), "standin-enroot-"));
  try {
    const main = join(work, "enroot");
    await put(
      join(main, "DEBIAN/control"),
      control({
        Package: "enroot",
        Version: `${version}-1`,
        Architecture: arch,
        Maintainer: MAINTAINER,
        Depends: "bash",
        Section: "utils",
        Priority: "optional",
        Description: "STAND-IN for NVIDIA enroot (test fixture)\n STAND-IN made by the slinky-containers test harness; it runs no containers.",
      }),
    );
    await put(join(main, "usr/bin/enroot"), await source("bin/enroot", version), 0o755);
    await put(join(main, "etc/enroot/enroot.conf"), "# STAND-IN enroot configuration\n");
    await put(join(main, "etc/enroot/hooks.d/.keep"), "");
    await put(join(main, "usr/share/enroot/hooks.d/50-slurm-pmi.sh"), await source("bin/50-slurm-pmi.sh", version), 0o755);
    await put(join(main, "usr/share/enroot/bash_completion"), "# STAND-IN bash completion for enroot\ncomplete -W 'version' enroot\n");
    const caps = join(work, "caps");
    await put(
      join(caps, "DEBIAN/control"),
      control({
        Package: "enroot+caps",
        Version: `${version}-1`,
        Architecture: arch,
        Maintainer: MAINTAINER,
        Depends: `enroot (= ${version}-1), libcap2-bin`,
        Section: "utils",
        Priority: "optional",
        Description: "STAND-IN for NVIDIA enroot+caps (test fixture)\n STAND-IN made by the slinky-containers test harness.",
      }),
    );
    await put(join(caps, "usr/share/doc/enroot+caps/README.STAND-IN"), "STAND-IN for enroot+caps; grants no capabilities.\n");
    const enrootDeb = join(dir, `enroot_${version}-1_${arch}.STAND-IN.deb`);
    const capsDeb = join(dir, `enroot+caps_${version}-1_${arch}.STAND-IN.deb`);
    await buildDeb(main, enrootDeb);
    await buildDeb(caps, capsDeb);
    return { enroot: enrootDeb, caps: capsDeb };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- kubectl

async function makeKubectl(dir: string, version: string): Promise<string> {
  const out = join(dir, `kubectl-${version}.STAND-IN`);
  await put(out, await source("bin/kubectl", version), 0o755);
  await utimes(out, EPOCH, EPOCH);
  return out;
}

// ---------------------------------------------------------------- NVIDIA toolkit repository

async function makeNvidiaRepo(
  dir: string,
  version: string,
  arch: string,
): Promise<{ repo: string; key: string; fingerprint: string }> {
  const repo = join(dir, "nvidia-repo.STAND-IN");
  await rm(repo, { recursive: true, force: true });
  await mkdir(repo, { recursive: true });
  const work = await mkdtemp(join(tmpdir(), "standin-nv-"));
  // A short home: gpg-agent's socket path must stay under ~100 characters.
  const home = await mkdtemp(join(tmpdir(), "sig-"));
  const upstream = version.replace(/-[^-]*$/, "");
  try {
    const packages: string[] = [];
    const debs: Array<{ name: string; fields: Record<string, string>; files: Record<string, string> }> = [
      {
        name: "nvidia-container-toolkit-base",
        fields: { Depends: "bash" },
        files: {
          "usr/bin/nvidia-ctk": await source("bin/nvidia-ctk", upstream),
        },
      },
      {
        name: "nvidia-container-toolkit",
        fields: { Depends: `nvidia-container-toolkit-base (= ${version})` },
        files: {
          "usr/bin/nvidia-container-runtime-hook": await source("bin/nvidia-container-runtime-hook", upstream),
        },
      },
    ];
    for (const deb of debs) {
      const stage = join(work, deb.name);
      const fields = {
        Package: deb.name,
        Version: version,
        Architecture: arch,
        Maintainer: MAINTAINER,
        ...deb.fields,
        Section: "utils",
        Priority: "optional",
        Description: `STAND-IN for ${deb.name} (test fixture)\n STAND-IN made by the slinky-containers test harness.`,
      };
      await put(join(stage, "DEBIAN/control"), control(fields));
      for (const [path, content] of Object.entries(deb.files)) await put(join(stage, path), content, 0o755);
      const file = `${deb.name}_${version}_${arch}.deb`;
      await buildDeb(stage, join(repo, file));
      const bytes = await readFile(join(repo, file));
      packages.push(
        control({
          ...fields,
          Filename: `./${file}`,
          Size: String(bytes.length),
          SHA256: createHash("sha256").update(bytes).digest("hex"),
        }),
      );
    }
    const packagesText = packages.join("\n");
    await put(join(repo, "Packages"), packagesText);
    const release =
      control({
        Origin: "slinky-containers STAND-IN",
        Label: "STAND-IN nvidia-container-toolkit",
        Date: new Date(EPOCH * 1000).toUTCString(),
        Architectures: arch,
        Description: "STAND-IN flat repository for the NVIDIA container toolkit (test fixture)",
      }) + `SHA256:\n ${createHash("sha256").update(packagesText).digest("hex")} ${Buffer.byteLength(packagesText)} Packages\n`;
    await put(join(repo, "Release"), release);

    const gpg = (args: string[]) => run("gpg", ["--batch", "--homedir", home, "--no-tty", ...args]);
    try {
      await gpg([
        "--passphrase",
        "",
        "--pinentry-mode",
        "loopback",
        "--quick-gen-key",
        "slinky-containers STAND-IN NVIDIA repository key <standin@slinky-containers.invalid>",
        "ed25519",
        "sign",
        "never",
      ]);
      const { stdout } = await gpg(["--with-colons", "--list-keys"]);
      const fingerprint = stdout
        .split("\n")
        .find((line) => line.startsWith("fpr:"))
        ?.split(":")[9];
      if (!fingerprint) throw new Error("stand-in key: no fingerprint from gpg");
      const key = join(dir, "nvidia-gpgkey.STAND-IN.asc");
      await gpg(["--yes", "--armor", "--output", key, "--export", fingerprint]);
      await gpg(["--yes", "--local-user", fingerprint, "--clearsign", "--output", join(repo, "InRelease"), join(repo, "Release")]);
      await gpg(["--yes", "--local-user", fingerprint, "--armor", "--detach-sign", "--output", join(repo, "Release.gpg"), join(repo, "Release")]);
      return { repo, key, fingerprint };
    } finally {
      await run("gpgconf", ["--homedir", home, "--kill", "all"]).catch(() => undefined);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- entry point

async function describe(dir: string, path: string, version: string, description: string): Promise<StandInFile> {
  return { file: relative(dir, path), path, sha256: await sha256Of(path), version, description };
}

/** A digest of the fixture sources: changed sources mean new stand-ins. */
async function sourcesDigest(): Promise<string> {
  const { stdout } = await run("find", [".", "-type", "f"], { cwd: SOURCES });
  const hash = createHash("sha256");
  for (const name of stdout.split("\n").filter(Boolean).sort()) {
    hash.update(`${name}\0${await modeOf(name)}\0`).update(await readFile(join(SOURCES, name)));
  }
  return hash.digest("hex");
}

async function reuse(dir: string, options: StandInOptions, digest: string): Promise<StandIns | null> {
  const state = join(dir, STATE);
  if (!(await exists(state))) return null;
  try {
    const saved = JSON.parse(await readFile(state, "utf8")) as StandIns & { sources?: string };
    if (JSON.stringify(saved.options) !== JSON.stringify(options) || saved.dir !== dir || saved.sources !== digest) return null;
    for (const item of [saved.pyxis, saved.enroot, saved.enrootCaps, saved.kubectl, saved.nvidiaKey]) {
      if (!(await exists(item.path)) || (await sha256Of(item.path)) !== item.sha256) return null;
    }
    for (const name of ["InRelease", "Release", "Release.gpg", "Packages"]) {
      if (!(await exists(join(saved.nvidiaRepo.path, name)))) return null;
    }
    return saved;
  } catch {
    return null;
  }
}

/**
 * Makes (or reuses, when `dir` already holds them for the same options) every
 * stand-in under `dir` and returns their paths, sha256s and versions.
 */
export async function makeStandIns(dir: string, options: StandInOptions): Promise<StandIns> {
  const digest = await sourcesDigest();
  const reused = await reuse(dir, options, digest);
  if (reused) return reused;
  await mkdir(dir, { recursive: true });
  const pyxis = await makePyxis(dir, options.pyxisVersion);
  const arch = options.arch ?? "amd64";
  const enroot = await makeEnroot(dir, options.enrootVersion, arch);
  const kubectl = await makeKubectl(dir, options.kubectlVersion);
  const nvidia = await makeNvidiaRepo(dir, options.nvidiaToolkitVersion, arch);
  const standIns: StandIns = {
    dir,
    options: { ...options },
    pyxis: await describe(dir, pyxis, options.pyxisVersion, "STAND-IN pyxis source tarball (tiny SPANK plugin, pyxis build interface)"),
    enroot: await describe(dir, enroot.enroot, options.enrootVersion, `STAND-IN enroot .deb (${arch})`),
    enrootCaps: await describe(dir, enroot.caps, options.enrootVersion, `STAND-IN enroot+caps .deb (${arch})`),
    kubectl: await describe(dir, kubectl, options.kubectlVersion, "STAND-IN kubectl (answers `kubectl version --client`)"),
    nvidiaKey: {
      ...(await describe(dir, nvidia.key, "stand-in", "STAND-IN signing key of the stand-in NVIDIA toolkit repository")),
      fingerprint: nvidia.fingerprint,
    },
    nvidiaRepo: {
      dir: relative(dir, nvidia.repo),
      path: nvidia.repo,
      version: options.nvidiaToolkitVersion,
      description: `STAND-IN flat apt repository with nvidia-container-toolkit(-base) (${arch})`,
    },
  };
  await writeFile(join(dir, STATE), `${JSON.stringify({ ...standIns, sources: digest }, null, 2)}\n`);
  return standIns;
}

/**
 * The manifest override (manifest.json's shape) that points the recipe at
 * served stand-ins. `url(file)` turns a path relative to `dir` into its URL.
 */
export function standInOverride(standIns: StandIns, url: (file: string) => string) {
  const download = (item: StandInFile) => ({
    version: item.version,
    url: url(item.file),
    sha256: item.sha256,
    checksumSource: item.description,
  });
  // arm64 stand-ins are linux/arm64's pins (arch.arm64), as a site manifest pins NVIDIA's arm64 .debs;
  // the plain fields point at them too: a manifest of them builds linux/arm64 only.
  const perArch = <T extends object>(value: T, pin: object) => (standIns.options.arch ? { ...value, arch: { [standIns.options.arch]: pin } } : value);
  const pinned = (item: StandInFile) => {
    const { version: _version, ...pin } = download(item);
    return perArch(download(item), pin);
  };
  return {
    inputs: {
      pyxis: download(standIns.pyxis),
      enroot: pinned(standIns.enroot),
      enrootCaps: pinned(standIns.enrootCaps),
      kubectl: pinned(standIns.kubectl),
      nvidiaKey: { ...download(standIns.nvidiaKey), fingerprint: standIns.nvidiaKey.fingerprint },
    },
    nvidiaToolkit: perArch(
      { version: standIns.nvidiaRepo.version, repository: url(standIns.nvidiaRepo.dir) },
      { repository: url(standIns.nvidiaRepo.dir) },
    ),
  };
}
