/**
 * Smoke checks of a built image: one POSIX sh script per image, run as root
 * inside the image with its entrypoint overridden (`--entrypoint sh -c` or
 * Dagger's withExec(["sh", "-c", ...])). The Dagger `test` function and the
 * local image harness run this same script.
 *
 * The script prints one line per failed check ("FAIL <check>: <detail>"), a
 * summary line, and exits non-zero if any check failed.
 */
import { IMAGE_NAMES, type ImageName } from "../core/catalog.js";
import { GPU_PLUGIN_LIBRARY, type GpuPluginsByArch, NODE_PROVIDED } from "../core/gpu.js";
import type { GpuPluginName } from "../core/manifest.js";

interface ImageFacts {
  /** Daemons whose `-V` must print exactly `slurm <version>`. */
  readonly daemons: readonly string[];
  /** Slurm packages that must be installed at the Slurm version. */
  readonly packages: readonly string[];
  /** Files that must exist and be executable: the entrypoint and what it runs. */
  readonly entrypoint: readonly string[];
  /** Runs supervisord with fakesystemd (else tini). */
  readonly supervised: boolean;
  readonly ssh: boolean;
  readonly kubectl: boolean;
  readonly pyxis: boolean;
  readonly nssSlurm: boolean;
  /** Runs slurmd, which loads the gpu/* plugin gres.conf's AutoDetect names. */
  readonly gpu: boolean;
}

const SUPERVISED_ENTRY = [
  "/usr/local/bin/entrypoint.sh",
  "/usr/local/lib/slinky/daemon-exec.sh",
  "/usr/local/lib/slinky/fakesystemd.sh",
];
const PYXIS_ENTRY = ["/usr/local/bin/pyxis-entrypoint.sh", ...SUPERVISED_ENTRY];

/** A daemon run in the foreground under tini, with nothing else in its image. */
const underTini = (daemon: string): ImageFacts => ({
  daemons: [daemon],
  packages: ["slurm-smd", `slurm-smd-${daemon}`],
  entrypoint: ["/usr/bin/tini"],
  supervised: false,
  ssh: false,
  kubectl: false,
  pyxis: false,
  nssSlurm: false,
  gpu: false,
});

const slurmd: ImageFacts = {
  daemons: ["slurmd"],
  packages: [
    "slurm-smd",
    "slurm-smd-client",
    "slurm-smd-dev",
    "slurm-smd-libnss-slurm",
    "slurm-smd-libpam-slurm-adopt",
    "slurm-smd-libpmi2-0",
    "slurm-smd-slurmd",
  ],
  entrypoint: SUPERVISED_ENTRY,
  supervised: true,
  ssh: true,
  kubectl: false,
  pyxis: false,
  nssSlurm: true,
  gpu: true,
};

const sackd: ImageFacts = {
  // sackd has no -V option, and client commands read the configuration before
  // -V (configless: DNS SRV lookup): the packages' versions are checked instead.
  daemons: [],
  packages: ["slurm-smd", "slurm-smd-client", "slurm-smd-sackd"],
  entrypoint: SUPERVISED_ENTRY,
  supervised: true,
  ssh: false,
  kubectl: true,
  pyxis: false,
  nssSlurm: false,
  gpu: false,
};

const login: ImageFacts = { ...sackd, ssh: true };

const FACTS: Record<ImageName, ImageFacts> = {
  slurmctld: {
    daemons: ["slurmctld"],
    packages: ["slurm-smd", "slurm-smd-client", "slurm-smd-dev", "slurm-smd-slurmctld"],
    entrypoint: SUPERVISED_ENTRY,
    supervised: true,
    ssh: false,
    kubectl: false,
    pyxis: false,
    nssSlurm: false,
    gpu: false,
  },
  slurmd,
  slurmdbd: underTini("slurmdbd"),
  slurmrestd: underTini("slurmrestd"),
  sackd,
  login,
  "slurmd-pyxis": { ...slurmd, entrypoint: PYXIS_ENTRY, pyxis: true },
  "login-pyxis": { ...login, entrypoint: PYXIS_ENTRY, pyxis: true },
};

interface Check {
  readonly name: string;
  /** sh fragment; calls `fail "<detail>"` for each problem it finds. */
  readonly sh: string;
}

/** Single-quotes a string for sh. */
const q = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

/**
 * gpu/<name>.so is in the image and the library slurmd dlopens before loading
 * it resolves through the linker cache; NVML's must not be in the image (the
 * node's driver provides it, and a baked copy would not match that driver).
 */
function gpuCheck(plugins: GpuPluginsByArch): Check {
  const arms = Object.entries(plugins)
    .map(([arch, names]) => `  ${arch}) expected=${q((names ?? []).join(" "))} ;;`)
    .join("\n");
  const libraries = (Object.keys(GPU_PLUGIN_LIBRARY) as GpuPluginName[])
    .map((name) => `  ${name}) lib=${q(GPU_PLUGIN_LIBRARY[name])} node=${NODE_PROVIDED.has(name) ? "yes" : "no"} ;;`)
    .join("\n");
  return {
    name: "gpu-plugins",
    sh: `case "$(dpkg --print-architecture)" in
${arms}
  *) expected= ;;
esac
for plugin in $expected; do
  case "$plugin" in
${libraries}
  *) fail "unknown GPU plugin $plugin"; continue ;;
  esac
  ls /usr/lib/*/slurm/gpu_$plugin.so >/dev/null 2>&1 || fail "the gpu/$plugin plugin is missing"
  if [ "$node" = yes ]; then
    if ldconfig -p | grep -q "[[:space:]]$lib "; then fail "$lib is in the image: the node's driver must provide it"; fi
  else
    ldconfig -p | grep -q "[[:space:]]$lib " || fail "$lib is not in the linker cache: slurmd cannot load gpu/$plugin"
  fi
done`,
  };
}

function checksOf(image: ImageName, version: string, gpuPlugins: GpuPluginsByArch): Check[] {
  const facts = FACTS[image];
  const checks: Check[] = [];
  for (const command of facts.daemons) {
    // slurmdbd reads slurmdbd.conf (beside SLURM_CONF) before its options:
    // give it a minimal one of its own.
    const run =
      command === "slurmdbd"
        ? `conf=$(mktemp -d) && printf 'DbdHost=localhost\\nStorageType=accounting_storage/mysql\\nSlurmUser=root\\n' >"$conf/slurmdbd.conf" && chmod 600 "$conf/slurmdbd.conf"
if out=$(SLURM_CONF="$conf/slurm.conf" slurmdbd -V 2>&1); then`
        : `if out=$(${command} -V 2>&1); then`;
    checks.push({
      name: `version:${command}`,
      sh: `${run}
  [ "$out" = ${q(`slurm ${version}`)} ] || fail "${command} -V printed '$out', expected 'slurm ${version}'"
else
  fail "${command} -V exited $?: $out"
fi`,
    });
  }
  checks.push({
    name: "packages",
    sh: `for pkg in ${facts.packages.join(" ")}; do
  v=$(dpkg-query -W -f='\${Status} \${Version}' "$pkg" 2>/dev/null) || { fail "package $pkg is not installed"; continue; }
  case "$v" in "install ok installed "*) ;; *) fail "package $pkg is not fully installed: $v"; continue ;; esac
  v=\${v##* }; v=\${v#*:}; v=\${v%-*}
  [ "$v" = ${q(version)} ] || fail "package $pkg has version $v, expected ${version}"
done`,
  });
  checks.push({
    name: "slurm-user",
    sh: `pw=$(getent passwd slurm) || fail "no user slurm"
[ "$(printf '%s' "$pw" | cut -d: -f3)" = 401 ] || fail "user slurm uid is not 401: $pw"
[ "$(printf '%s' "$pw" | cut -d: -f4)" = 401 ] || fail "user slurm gid is not 401: $pw"
case "$(printf '%s' "$pw" | cut -d: -f7)" in */nologin) ;; *) fail "user slurm shell is not nologin: $pw" ;; esac
gr=$(getent group slurm) || fail "no group slurm"
[ "$(printf '%s' "$gr" | cut -d: -f3)" = 401 ] || fail "group slurm gid is not 401: $gr"`,
  });
  checks.push({
    name: "no-ubuntu-user",
    sh: `if getent passwd ubuntu >/dev/null; then fail "user ubuntu exists"; fi`,
  });
  checks.push({
    name: "entrypoint",
    sh: `for f in ${facts.entrypoint.join(" ")}; do
  [ -f "$f" ] && [ -x "$f" ] || fail "$f is missing or not executable"
done`,
  });
  checks.push({
    name: "shared-libraries",
    sh: `pkgs=$(dpkg-query -W -f='\${Package}\\n' | grep -E '^(slurm-smd|nvslurm-plugin-pyxis)')
n=0
for f in $(dpkg -L $pkgs | sort -u); do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \\n')" = 7f454c46 ] || continue
  n=$((n + 1))
  missing=$(ldd "$f" 2>&1 | grep 'not found' | tr -s ' \\t\\n' ' ')
  [ -z "$missing" ] || fail "$f: $missing"
done
[ "$n" -gt 0 ] || fail "no ELF files found in the Slurm packages"`,
  });
  checks.push({
    // The image is the platform it says (linux/arm64 under emulation runs as aarch64),
    // and every Slurm and pyxis binary and plugin is built for it, not for the build machine.
    name: "architecture",
    sh: `arch=$(dpkg --print-architecture)
case "$arch" in
  amd64) machine=x86_64 elf=3e00 ;;
  arm64) machine=aarch64 elf=b700 ;;
  *) machine=unknown elf=unknown; fail "unknown dpkg architecture $arch" ;;
esac
[ "$(uname -m)" = "$machine" ] || fail "uname -m is $(uname -m), the image's packages are $arch ($machine)"
pkgs=$(dpkg-query -W -f='\${Package}\\n' | grep -E '^(slurm-smd|nvslurm-plugin-pyxis)')
n=0
for f in $(dpkg -L $pkgs | sort -u); do
  [ -f "$f" ] && [ ! -L "$f" ] || continue
  [ "$(head -c 4 "$f" | od -An -tx1 | tr -d ' \\n')" = 7f454c46 ] || continue
  n=$((n + 1))
  e=$(od -An -tx1 -j18 -N2 "$f" | tr -d ' \\n')
  [ "$e" = "$elf" ] || fail "$f is not a $machine ELF (e_machine bytes $e)"
done
[ "$n" -gt 0 ] || fail "no ELF files found in the Slurm packages"`,
  });
  checks.push({
    name: "no-baked-keys",
    sh: `for f in /etc/ssh/ssh_host_*key* /etc/munge/munge.key /etc/slurm/slurm.key /etc/slurm/jwt_hs256.key; do
  [ ! -e "$f" ] || fail "$f is baked into the image"
done`,
  });
  checks.push({
    name: "no-build-tools",
    sh: `for t in gcc cc make debuild dpkg-buildpackage mk-build-deps; do
  if command -v "$t" >/dev/null 2>&1; then fail "build tool $t is installed"; fi
done
if dpkg-query -W -f='\${Status}' slurm-smd-build-deps 2>/dev/null | grep -q installed; then fail "slurm-smd-build-deps is installed"; fi`,
  });
  checks.push({
    name: "no-deb-files",
    sh: `found=$(find / -xdev \\( -name '*.deb' -o -name '*.ddeb' \\) -type f 2>/dev/null | head -n 5 | tr '\\n' ' ')
[ -z "$found" ] || fail "package files left in the image: $found"`,
  });
  if (facts.supervised) {
    checks.push({
      name: "supervisord",
      sh: `command -v supervisord >/dev/null || fail "supervisord is missing"
command -v pidproxy >/dev/null || fail "pidproxy is missing"
command -v socat >/dev/null || fail "socat is missing"
grep -Eq '^nodaemon[[:space:]]*=[[:space:]]*true' /etc/supervisor/supervisord.conf || fail "supervisord.conf lacks nodaemon=true"
grep -q '^\\[program:fakesystemd\\]' /etc/supervisor/conf.d/*.conf || fail "no fakesystemd program"`,
    });
  }
  if (facts.supervised) {
    // slurmctld and slurmd load every MPI plugin at start, srun (sackd, login)
    // the one asked for: mpi/pmix dlopens libpmix.so.2 by name.
    checks.push({
      name: "mpi-pmix",
      sh: `ls /usr/lib/*/slurm/mpi_pmix.so >/dev/null 2>&1 || fail "the mpi/pmix plugin is missing"
ldconfig -p | grep -q 'libpmix\\.so\\.2 ' || fail "libpmix.so.2 is not in the linker cache: mpi/pmix would log 'can not load PMIx library'"`,
    });
  }
  if (facts.ssh) {
    checks.push({
      name: "sshd",
      sh: `[ -x /usr/sbin/sshd ] || fail "sshd is missing"
command -v ssh-keygen >/dev/null || fail "ssh-keygen is missing"
command -v sssd >/dev/null || fail "sssd is missing"
grep -q '^@include[[:space:]]*common-account' /etc/pam.d/sshd || fail "/etc/pam.d/sshd has no common-account include for pam_slurm_adopt"`,
    });
  }
  if (facts.nssSlurm) {
    checks.push({
      name: "nsswitch-slurm-first",
      sh: `for db in passwd group; do
  grep -Eq "^$db:[[:space:]]+slurm([[:space:]]|$)" /etc/nsswitch.conf || fail "nsswitch.conf: $db does not start with slurm"
done
[ -d /var/spool/slurmd ] || fail "/var/spool/slurmd is missing"`,
    });
  }
  if (facts.gpu) checks.push(gpuCheck(gpuPlugins));
  if (facts.kubectl) {
    checks.push({
      name: "kubectl",
      sh: `out=$(kubectl version --client 2>&1) || fail "kubectl version --client exited $?: $out"
case "$out" in *"Client Version:"*) ;; *) fail "kubectl version --client printed: $out" ;; esac`,
    });
  }
  if (facts.pyxis) {
    checks.push({
      name: "pyxis-plugstack",
      sh: `link=/etc/slurm/plugstack.conf.d/pyxis.conf
[ -L "$link" ] || fail "$link is not a symlink"
[ -r "$link" ] || fail "$link does not resolve to a readable file"
so=$(sed -n 's/^[[:space:]]*required[[:space:]]\\{1,\\}\\([^[:space:]]*spank_pyxis\\.so\\).*/\\1/p' "$link" 2>/dev/null | head -n 1)
[ -n "$so" ] || fail "$link names no spank_pyxis.so"
[ -z "$so" ] || [ -f "$so" ] || fail "$so (from $link) is missing"`,
    });
    checks.push({
      name: "enroot",
      sh: `out=$(enroot version 2>&1) || fail "enroot version exited $?: $out"
for d in /usr/share/enroot/enroot-data /run/enroot; do
  [ -d "$d" ] || fail "$d is missing"
  [ "$(stat -c %a "$d" 2>/dev/null)" = 1777 ] || fail "$d mode is $(stat -c %a "$d" 2>/dev/null), expected 1777"
done
conf=/etc/enroot/enroot.conf.d/50-slinky-paths.conf
grep -Eq '^ENROOT_DATA_PATH[[:space:]]+/usr/share/enroot/enroot-data/' "$conf" 2>/dev/null || fail "$conf does not set ENROOT_DATA_PATH"
for pkg in enroot enroot+caps nvidia-container-toolkit nvidia-container-toolkit-base; do
  dpkg-query -W -f='\${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || fail "package $pkg is not installed"
done
if grep -rqs nvidia /etc/apt/sources.list /etc/apt/sources.list.d; then fail "an apt source for the NVIDIA repository was left in the image"; fi`,
    });
  }
  return checks;
}

function requireImage(image: string): ImageName {
  if (!(IMAGE_NAMES as readonly string[]).includes(image)) {
    throw new Error(`unknown image "${image}"; expected one of: ${IMAGE_NAMES.join(", ")}`);
  }
  return image as ImageName;
}

/** The names of the checks the script runs for an image. */
export function smokeChecks(image: string, slurmVersion = "0.0.0"): string[] {
  return checksOf(requireImage(image), slurmVersion, {}).map((check) => check.name);
}

/** The smoke-check script (POSIX sh) for an image built at a Slurm patch release with a flavor's GPU plugins. */
export function smokeScript(image: string, slurmVersion: string, gpuPlugins: GpuPluginsByArch): string {
  const name = requireImage(image);
  if (!/^\d+\.\d+\.\d+$/.test(slurmVersion)) {
    throw new Error(`Slurm version must be a patch release like 25.11.2, got "${slurmVersion}"`);
  }
  const checks = checksOf(name, slurmVersion, gpuPlugins);
  const body = checks
    .map(
      (check) => `# --- ${check.name}
current=${q(check.name)}
total=$((total + 1))
before=$failures
${check.sh}
[ "$failures" -eq "$before" ] || failed=$((failed + 1))`,
    )
    .join("\n");
  return `#!/bin/sh
# Smoke checks of the ${name} image (Slurm ${slurmVersion}); generated by src/build/smoke.ts.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
failures=0
failed=0
total=0
current=
fail() {
  failures=$((failures + 1))
  echo "FAIL $current: $*"
}
${body}
if [ "$failed" -gt 0 ]; then
  echo "smoke ${name}: $failed of $total checks failed"
  exit 1
fi
echo "smoke ${name}: all $total checks passed"
`;
}
