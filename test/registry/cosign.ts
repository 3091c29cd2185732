/**
 * Real cosign on the host (Debian trixie's package, installed by
 * test/setup.sh) as the tests' CosignRunner: the same argv the engine's
 * cosign container runs, with the secrets placed the same way (the private
 * key and OIDC token as files, COSIGN_PASSWORD in the environment, the
 * registry credentials in a docker config.json under DOCKER_CONFIG).
 * Everything cosign prints is kept, so the tests can scan it for secrets.
 */
import { execFile, execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { CosignPaths, CosignRunner, CosignStep } from "../../src/supply-chain/signing.js";

export const COSIGN_BIN = "/usr/bin/cosign";

/** `cosign version`'s GitVersion line (Debian's build prints "devel"), or null when cosign is absent. */
export function cosignVersion(): string | null {
  try {
    return execFileSync(COSIGN_BIN, ["version"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch {
    return null;
  }
}

export interface HostCosign {
  dir: string;
  paths: CosignPaths;
  /** Every line cosign wrote (stdout and stderr), every step. */
  output: string[];
  /** The argv of every call. */
  calls: CosignStep[];
  run: CosignRunner;
  /** A key pair made with `cosign generate-key-pair` under `password`. */
  generateKeyPair(password: string): void;
  setToken(token: string): void;
  /** Extra environment (e.g. SIGSTORE_* for a stand-in Fulcio). */
  env: Record<string, string>;
  remove(): void;
}

/** A cosign workspace: private files 0600 in a 0700 temp dir. */
export function hostCosign(registry: { host: string; username: string; password: string } | null, keyPassword?: string): HostCosign {
  const dir = mkdtempSync(join(tmpdir(), "slinky-cosign-"));
  chmodSync(dir, 0o700);
  const paths: CosignPaths = {
    key: join(dir, "cosign.key"),
    publicKey: join(dir, "cosign.pub"),
    token: join(dir, "oidc-token"),
    predicates: join(dir, "predicates"),
  };
  mkdirSync(paths.predicates);
  const dockerDir = join(dir, "docker");
  mkdirSync(dockerDir);
  if (registry) {
    const auth = Buffer.from(`${registry.username}:${registry.password}`).toString("base64");
    writeFileSync(join(dockerDir, "config.json"), JSON.stringify({ auths: { [registry.host]: { auth } } }), { mode: 0o600 });
  }
  const home = join(dir, "home");
  mkdirSync(home);
  const output: string[] = [];
  const calls: CosignStep[] = [];
  const baseEnv = (): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: home,
    DOCKER_CONFIG: dockerDir,
    ...(keyPassword !== undefined ? { COSIGN_PASSWORD: keyPassword } : {}),
    ...self.env,
  });
  const self: HostCosign = {
    dir,
    paths,
    output,
    calls,
    env: {},
    run: (step) => {
      calls.push(step);
      for (const [path, content] of Object.entries(step.files)) {
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, content);
      }
      return new Promise((resolve, reject) => {
        execFile(COSIGN_BIN, step.argv, { env: baseEnv(), timeout: 120_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
          output.push(...`${stdout}\n${stderr}`.split("\n").filter(Boolean));
          if (error) reject(new Error(`cosign ${step.argv[0]} failed: ${stderr.trim().split("\n").slice(-3).join(" | ")}`));
          else resolve(stdout);
        });
      });
    },
    generateKeyPair(password) {
      const out = execFileSync(COSIGN_BIN, ["generate-key-pair"], { cwd: dir, env: { ...baseEnv(), COSIGN_PASSWORD: password }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      output.push(...out.split("\n").filter(Boolean));
      chmodSync(paths.key, 0o600);
    },
    setToken(token) {
      writeFileSync(paths.token, token, { mode: 0o600 });
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return self;
}
