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

function pyxisFiles(version: string): Record<string, { content: string; mode?: number }> {
  const changelogDate = new Date(EPOCH * 1000).toUTCString().replace("GMT", "+0000");
  return {
    "README.STAND-IN": {
      content: `STAND-IN for the NVIDIA pyxis ${version} source tarball, made by the
slinky-containers test harness because this machine cannot reach GitHub.
A minimal real SPANK plugin with pyxis's build interface:
  make / make install (prefix, libdir, datarootdir, DESTDIR) / make orig / make deb
It registers --container-image and logs that it was loaded; it runs no containers.
`,
    },
    "spank_pyxis.c": {
      content: `/* STAND-IN for the pyxis SPANK plugin: registers --container-image and
 * logs where it is loaded. Runs no containers. */
#include <stddef.h>
#include <slurm/spank.h>

SPANK_PLUGIN(pyxis, 1)

static const char *image;

static int set_image(int val, const char *optarg, int remote)
{
	(void)val;
	(void)remote;
	image = optarg;
	return ESPANK_SUCCESS;
}

static struct spank_option options[] = {
	{ "container-image", "[USER@][REGISTRY#]IMAGE[:TAG]|PATH",
	  "[pyxis STAND-IN] the image to run the job in (accepted, not used)",
	  1, 0, set_image },
	SPANK_OPTIONS_TABLE_END
};

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	for (int i = 0; options[i].name != NULL; i++)
		if (spank_option_register(sp, &options[i]) != ESPANK_SUCCESS)
			return ESPANK_ERROR;
	return ESPANK_SUCCESS;
}

int slurm_spank_init_post_opt(spank_t sp, int ac, char **av)
{
	(void)ac;
	(void)av;
	if (spank_remote(sp))
		slurm_info("pyxis STAND-IN %s loaded (image: %s)", PYXIS_VERSION,
			   image ? image : "none");
	return ESPANK_SUCCESS;
}
`,
    },
    Makefile: {
      content: `# STAND-IN pyxis build: the same targets and variables as pyxis's Makefile.
prefix      ?= /usr/local
libdir      ?= $(prefix)/lib
datarootdir ?= $(prefix)/share
datadir     ?= $(datarootdir)

PYXIS_VER ?= ${version}

PLUGIN     := spank_pyxis.so
CONF       := pyxis.conf
PLUGIN_DIR := $(abspath $(DESTDIR)/$(libdir)/slurm)
CONF_DIR   := $(abspath $(DESTDIR)/$(datadir)/pyxis)

CPPFLAGS += -D_GNU_SOURCE -DPYXIS_VERSION=\\"$(PYXIS_VER)\\"
CFLAGS   += -std=gnu11 -O2 -Wall -fPIC

.PHONY: all install clean orig deb

all: $(PLUGIN)

$(PLUGIN): spank_pyxis.c
\t$(CC) $(CPPFLAGS) $(CFLAGS) -shared $(LDFLAGS) -o $@ $<

install: all
\tinstall -d -m 755 $(PLUGIN_DIR) $(CONF_DIR)
\tinstall -m 644 $(PLUGIN) $(PLUGIN_DIR)
\tprintf 'required %s/slurm/%s\\n' '$(libdir)' '$(PLUGIN)' > $(CONF_DIR)/$(CONF)
\tchmod 644 $(CONF_DIR)/$(CONF)

clean:
\trm -f $(PLUGIN) *.o

orig: clean
\ttar -caf ../nvslurm-plugin-pyxis_$(PYXIS_VER).orig.tar.xz --owner=root --group=root --exclude=.git .

deb: clean
\tdebuild -us -uc -G -i -tc
`,
    },
    "debian/changelog": {
      content: `nvslurm-plugin-pyxis (${version}-1) UNRELEASED; urgency=medium

  * STAND-IN release ${version} for the slinky-containers test harness.

 -- ${MAINTAINER}  ${changelogDate}
`,
    },
    "debian/compat": { content: "10\n" },
    "debian/control": {
      content: `Source: nvslurm-plugin-pyxis
Section: admin
Priority: optional
Maintainer: ${MAINTAINER}
Standards-Version: 4.1.4
Build-Depends: debhelper (>= 10), slurm-smd-dev | libslurm-dev

Package: nvslurm-plugin-pyxis
Architecture: any
Depends: \${shlibs:Depends}, \${misc:Depends}, enroot (>= 3.1.0) | enroot-hardened (>= 3.1.0)
Description: STAND-IN Slurm SPANK plugin for containerized tasks (pyxis)
 STAND-IN made by the slinky-containers test harness; not NVIDIA's pyxis.
`,
    },
    "debian/rules": {
      content: `#!/usr/bin/make -f
export DEB_BUILD_MAINT_OPTIONS = hardening=+all

%:
\tdh $@

override_dh_auto_install:
\tdh_auto_install -- prefix= libdir=/usr/lib/$(DEB_HOST_MULTIARCH) datarootdir=/usr/share
`,
      mode: 0o755,
    },
    "debian/source/format": { content: "3.0 (quilt)\n" },
    "debian/copyright": { content: "STAND-IN test fixture made by slinky-containers; no third-party code.\n" },
  };
}

async function makePyxis(dir: string, version: string): Promise<string> {
  const work = await mkdtemp(join(tmpdir(), "standin-pyxis-"));
  try {
    const top = `pyxis-${version}`;
    for (const [name, file] of Object.entries(pyxisFiles(version))) {
      await put(join(work, top, name), file.content, file.mode ?? 0o644);
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

async function makeEnroot(dir: string, version: string): Promise<{ enroot: string; caps: string }> {
  const work = await mkdtemp(join(tmpdir(), "standin-enroot-"));
  try {
    const main = join(work, "enroot");
    await put(
      join(main, "DEBIAN/control"),
      control({
        Package: "enroot",
        Version: `${version}-1`,
        Architecture: "amd64",
        Maintainer: MAINTAINER,
        Depends: "bash",
        Section: "utils",
        Priority: "optional",
        Description: "STAND-IN for NVIDIA enroot (test fixture)\n STAND-IN made by the slinky-containers test harness; it runs no containers.",
      }),
    );
    await put(
      join(main, "usr/bin/enroot"),
      `#!/bin/sh
# STAND-IN for NVIDIA enroot ${version}: answers "enroot version" only.
case "\${1:-}" in
version) echo "${version}" ;;
*)
	echo "enroot STAND-IN ${version}: only 'enroot version' is implemented" >&2
	exit 1
	;;
esac
`,
      0o755,
    );
    await put(join(main, "etc/enroot/enroot.conf"), "# STAND-IN enroot configuration\n");
    await put(join(main, "etc/enroot/hooks.d/.keep"), "");
    await put(
      join(main, "usr/share/enroot/hooks.d/50-slurm-pmi.sh"),
      "#!/bin/sh\n# STAND-IN extra enroot hook (does nothing)\nexit 0\n",
      0o755,
    );
    await put(join(main, "usr/share/enroot/bash_completion"), "# STAND-IN bash completion for enroot\ncomplete -W 'version' enroot\n");
    const caps = join(work, "caps");
    await put(
      join(caps, "DEBIAN/control"),
      control({
        Package: "enroot+caps",
        Version: `${version}-1`,
        Architecture: "amd64",
        Maintainer: MAINTAINER,
        Depends: `enroot (= ${version}-1), libcap2-bin`,
        Section: "utils",
        Priority: "optional",
        Description: "STAND-IN for NVIDIA enroot+caps (test fixture)\n STAND-IN made by the slinky-containers test harness.",
      }),
    );
    await put(join(caps, "usr/share/doc/enroot+caps/README.STAND-IN"), "STAND-IN for enroot+caps; grants no capabilities.\n");
    const enrootDeb = join(dir, `enroot_${version}-1_amd64.STAND-IN.deb`);
    const capsDeb = join(dir, `enroot+caps_${version}-1_amd64.STAND-IN.deb`);
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
  await put(
    out,
    `#!/bin/sh
# STAND-IN for kubectl v${version}: answers "kubectl version --client" only.
if [ "\${1:-}" = version ]; then
	echo "Client Version: v${version}"
	echo "Kustomize Version: STAND-IN"
	exit 0
fi
echo "kubectl STAND-IN v${version}: only 'kubectl version --client' is implemented" >&2
exit 1
`,
    0o755,
  );
  await utimes(out, EPOCH, EPOCH);
  return out;
}

// ---------------------------------------------------------------- NVIDIA toolkit repository

async function makeNvidiaRepo(
  dir: string,
  version: string,
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
          "usr/bin/nvidia-ctk": `#!/bin/sh\n# STAND-IN for nvidia-ctk\necho "NVIDIA Container Toolkit CLI version ${upstream} (STAND-IN)"\n`,
        },
      },
      {
        name: "nvidia-container-toolkit",
        fields: { Depends: `nvidia-container-toolkit-base (= ${version})` },
        files: {
          "usr/bin/nvidia-container-runtime-hook": `#!/bin/sh\n# STAND-IN for nvidia-container-runtime-hook\necho "NVIDIA Container Runtime Hook version ${upstream} (STAND-IN)"\n`,
        },
      },
    ];
    for (const deb of debs) {
      const stage = join(work, deb.name);
      const fields = {
        Package: deb.name,
        Version: version,
        Architecture: "amd64",
        Maintainer: MAINTAINER,
        ...deb.fields,
        Section: "utils",
        Priority: "optional",
        Description: `STAND-IN for ${deb.name} (test fixture)\n STAND-IN made by the slinky-containers test harness.`,
      };
      await put(join(stage, "DEBIAN/control"), control(fields));
      for (const [path, content] of Object.entries(deb.files)) await put(join(stage, path), content, 0o755);
      const file = `${deb.name}_${version}_amd64.deb`;
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
        Architectures: "amd64",
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

async function reuse(dir: string, options: StandInOptions): Promise<StandIns | null> {
  const state = join(dir, STATE);
  if (!(await exists(state))) return null;
  try {
    const saved = JSON.parse(await readFile(state, "utf8")) as StandIns;
    if (JSON.stringify(saved.options) !== JSON.stringify(options) || saved.dir !== dir) return null;
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
  const reused = await reuse(dir, options);
  if (reused) return reused;
  await mkdir(dir, { recursive: true });
  const pyxis = await makePyxis(dir, options.pyxisVersion);
  const enroot = await makeEnroot(dir, options.enrootVersion);
  const kubectl = await makeKubectl(dir, options.kubectlVersion);
  const nvidia = await makeNvidiaRepo(dir, options.nvidiaToolkitVersion);
  const standIns: StandIns = {
    dir,
    options: { ...options },
    pyxis: await describe(dir, pyxis, options.pyxisVersion, "STAND-IN pyxis source tarball (tiny SPANK plugin, pyxis build interface)"),
    enroot: await describe(dir, enroot.enroot, options.enrootVersion, "STAND-IN enroot .deb"),
    enrootCaps: await describe(dir, enroot.caps, options.enrootVersion, "STAND-IN enroot+caps .deb"),
    kubectl: await describe(dir, kubectl, options.kubectlVersion, "STAND-IN kubectl (answers `kubectl version --client`)"),
    nvidiaKey: {
      ...(await describe(dir, nvidia.key, "stand-in", "STAND-IN signing key of the stand-in NVIDIA toolkit repository")),
      fingerprint: nvidia.fingerprint,
    },
    nvidiaRepo: {
      dir: relative(dir, nvidia.repo),
      path: nvidia.repo,
      version: options.nvidiaToolkitVersion,
      description: "STAND-IN flat apt repository with nvidia-container-toolkit(-base)",
    },
  };
  await writeFile(join(dir, STATE), `${JSON.stringify(standIns, null, 2)}\n`);
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
  return {
    inputs: {
      pyxis: download(standIns.pyxis),
      enroot: download(standIns.enroot),
      enrootCaps: download(standIns.enrootCaps),
      kubectl: download(standIns.kubectl),
      nvidiaKey: { ...download(standIns.nvidiaKey), fingerprint: standIns.nvidiaKey.fingerprint },
    },
    nvidiaToolkit: {
      version: standIns.nvidiaRepo.version,
      repository: url(standIns.nvidiaRepo.dir),
    },
  };
}
