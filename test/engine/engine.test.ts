/**
 * The module's functions through a real Dagger engine (test/engine/engine.sh),
 * in client mode: the TypeScript SDK connects to the engine through the Dagger
 * CLI, and the test calls SlinkyContainers as `dagger call` would, with the
 * repository's dockerfiles/ and a site manifest given as the engine's Directory
 * and File. The inputs are the image harness's: the debootstrapped debian13
 * base (pushed to a registry of the test that docker.io's mirror points at) and
 * the STAND-INs of test/images/standins.ts with the Slurm 24.11.5 source, served
 * on this machine's end of the engine's veth pair. Nothing reaches Docker Hub.
 *
 * Where the engine cannot be built here (build-dagger.sh records the Go module
 * proxy's refusal), every test is skipped under a name that says why.
 */
import { readFileSync, readdirSync, statSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connection, dag } from "@dagger.io/dagger";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGES } from "../../src/core/catalog.js";
import { SlinkyContainers } from "../../src/index.js";
import { loadManifest } from "../../src/core/manifest.js";
import { imageLabels, resolve } from "../../src/build/plan.js";
import { REPO, run, SLURM_SOURCE } from "../images/harness.js";
import type { Report } from "../../src/release/report.js";
import { TLS_DIR } from "./global-setup.js";
import { clientEnv, DAGGER_DIR, daggerVersion, engineUnavailable, startDaggerEngine, stopDaggerEngine } from "./dagger.js";
import { BASE_REF, engineOptions, type Fixture, FLAVOR, LINE, MINUTE, seconds, setUp, tagsOf, USER } from "./fixture.js";

const unavailable = engineUnavailable();
const OUT = join(REPO, "out");

const report = {
  dagger: "",
  engineStartSeconds: 0,
  base: { ref: BASE_REF, digest: "" },
  planSeconds: 0,
  buildAllSeconds: 0,
  buildAll: "",
  buildSlurmd: { seconds: 0, exportBytes: 0, labels: {} as Record<string, string> },
  testSeconds: 0,
  test: "",
  ci: { seconds: 0, summary: "", pushed: 0, cacheWritten: 0, signing: "" },
  ciFreshEngine: { engineStartSeconds: 0, seconds: 0, summary: "", packageSetReused: false, imagesReused: 0 },
};

const COMMIT = "9f1c2b3a4d5e6f708192a3b4c5d6e7f8091a2b3c";
const COMMIT_2 = "5e6f708192a3b4c5d6e7f8091a2b3c9f1c2b3a4d";

let fixture: Fixture;

/** One SDK session against the engine, as one `dagger call` is. */
function call<T>(body: (module: SlinkyContainers) => Promise<T>): Promise<T> {
  let result: T;
  return connection(async () => {
    const module = new SlinkyContainers(dag.host().directory(join(REPO, "dockerfiles")), dag.host().file(fixture.siteManifest));
    result = await body(module);
  }).then(() => result);
}

describe.skipIf(unavailable !== undefined)(
  `through a real Dagger engine${unavailable ? ` (not run here: ${unavailable.split("\n").join("; ")})` : ""}`,
  () => {
    beforeAll(async () => {
      Object.assign(process.env, clientEnv());
      report.dagger = await daggerVersion();
      fixture = await setUp();
      report.engineStartSeconds = fixture.engineStartSeconds;
      report.base.digest = fixture.baseDigest;
    }, 30 * MINUTE);

    afterAll(async () => {
      mkdirSync(OUT, { recursive: true });
      writeFileSync(join(OUT, "engine-report.json"), `${JSON.stringify(report, null, 2)}\n`);
      console.log(`[engine] ${JSON.stringify(report)}`);
      await fixture?.stop();
    }, 5 * MINUTE);

    it("plan: the engine reads the site manifest File and returns the run's JSON", async () => {
      const sha = "0123456789abcdef0123456789abcdef01234567";
      const [text, took] = await seconds(() => call((m) => m.plan(LINE, FLAVOR, "all", "feature/x", sha, "registry.example.com/g/p")));
      report.planSeconds = took;
      const document = JSON.parse(text) as { slurm: { version: string }; flavor: { baseImage: string }; images: { name: string; references: string[] }[] };
      // The site manifest's line and base pin, read by the engine from the File.
      expect(document.slurm.version).toBe(SLURM_SOURCE.version);
      expect(document.flavor.baseImage).toBe(`${BASE_REF}@${report.base.digest}`);
      expect(document.images.map((i) => i.name).sort()).toEqual(IMAGES.map((i) => i.name).sort());
      expect(document.images.find((i) => i.name === "slurmd")?.references).toEqual([
        `registry.example.com/g/p/slurmd:${LINE}-${FLAVOR}-feature-x-01234567`,
        `registry.example.com/g/p/slurmd:${LINE}-${FLAVOR}-feature-x-latest`,
      ]);
    });

    it(
      "build-all: the 8 images, built concurrently by the engine from one package set",
      async () => {
        const [text, took] = await seconds(() => call((m) => m.buildAll("all", LINE, FLAVOR)));
        report.buildAllSeconds = took;
        report.buildAll = text;
        const lines = text.split("\n");
        expect(lines[0]).toMatch(/^build cache: not used/);
        for (const image of IMAGES) expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${image.name}: built in [0-9.]+s$`)));
      },
      60 * MINUTE,
    );

    it(
      "build --image slurmd: a Container with the recipe's entrypoint, user, ports and labels, exported as a tarball",
      async () => {
        const manifest = loadManifest(JSON.parse(readFileSync(fixture.siteManifest, "utf8")));
        const resolved = resolve(manifest, { slurmVersion: LINE, flavor: FLAVOR, group: "all" });
        const slurmd = IMAGES.find((i) => i.name === "slurmd")!;
        const tarball = join(fixture.work, "slurmd.tar");
        const [got, took] = await seconds(() =>
          call(async (m) => {
            const c = await m.build("slurmd", LINE, FLAVOR);
            await c.export(tarball);
            const labels = Object.fromEntries(await Promise.all((await c.labels()).map(async (l) => [await l.name(), await l.value()] as const)));
            return {
              entrypoint: await c.entrypoint(),
              user: await c.user(),
              ports: await Promise.all((await c.exposedPorts()).map(async (p) => `${await p.port()}/${(await p.protocol()).toLowerCase()}`)),
              version: (await c.withExec(["slurmd", "-V"]).stdout()).trim(),
              labels,
            };
          }),
        );
        report.buildSlurmd = { seconds: took, exportBytes: statSync(tarball).size, labels: got.labels };
        expect(got.entrypoint).toEqual(["/usr/local/bin/entrypoint.sh"]);
        expect(got.user).toBe("");
        expect(got.ports.sort()).toEqual(["22/tcp", "6818/tcp"]);
        expect(got.version).toBe(`slurm ${SLURM_SOURCE.version}`);
        // The labels the docker harness sets from the same plan (its revision and created aside).
        const expected = imageLabels(manifest, resolved, slurmd, {});
        for (const [key, value] of Object.entries(expected)) expect(got.labels[key], key).toBe(value);
        expect(report.buildSlurmd.exportBytes).toBeGreaterThan(50_000_000);
      },
      30 * MINUTE,
    );

    it(
      "test: every image's smoke checks run by the engine",
      async () => {
        const [text, took] = await seconds(() => call((m) => m.test("all", LINE, FLAVOR)));
        report.testSeconds = took;
        report.test = text;
        for (const image of IMAGES) expect(text.split("\n")).toContainEqual(expect.stringMatching(new RegExp(`^${image.name}: smoke checks passed in`)));
      },
      30 * MINUTE,
    );

    /** ci as the GitLab job calls it (ci/dagger-ci.sh), its report directory exported and read. */
    async function ci(commit: string): Promise<Report> {
      const out = join(fixture.work, `ci-${commit.slice(0, 8)}`);
      await call(async (m) => {
        const key = dag.setSecret("cosign-key", readFileSync(join(fixture.work, "cosign.key"), "utf8"));
        const password = dag.setSecret("cosign-password", fixture.keyCanary);
        const dir = await m.ci(
          "main", commit, "main", "push", `${fixture.target}/slinky`, USER, dag.setSecret("registry-password", fixture.canary), LINE, FLAVOR, "all",
          "2026-12-01T12:00:00Z", "on", undefined, 7, undefined, "key", key, password,
        );
        await dir.export(out);
      });
      expect(readdirSync(out).sort()).toEqual(["cosign.pub", "report.json", "report.md", "status"]);
      const text = readFileSync(join(out, "report.json"), "utf8") + readFileSync(join(out, "report.md"), "utf8");
      for (const canary of [fixture.canary, fixture.keyCanary]) expect(text).not.toContain(canary);
      expect(readFileSync(join(out, "cosign.pub"), "utf8")).toBe(readFileSync(join(fixture.work, "cosign.pub"), "utf8"));
      return JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
    }

    it(
      "ci on the default branch: build, smoke checks, push, build cache written, signed and verified with real cosign, production tags moved; no password in any output",
      async () => {
        const [result, took] = await seconds(() => ci(COMMIT));
        report.ci = {
          seconds: took,
          summary: result.summary,
          pushed: result.images.filter((i) => i.pushed).length,
          cacheWritten: (result.cache?.images ?? []).filter((i) => i.written).length + (result.cache?.packages?.written ? 1 : 0),
          signing: "",
        };
        expect(result.ok, JSON.stringify(result.errors)).toBe(true);
        expect(result.images.map((i) => i.image).sort()).toEqual(IMAGES.map((i) => i.name).sort());
        for (const image of result.images) {
          expect(image.pushed && image.promoted, image.image).toBe(true);
          expect(await tagsOf(fixture, image.image)).toEqual(
            expect.arrayContaining([`${LINE}-${FLAVOR}-main-${COMMIT.slice(0, 8)}`, `${LINE}-${FLAVOR}-main-latest`, `${LINE}-${FLAVOR}-latest`]),
          );
        }
        expect(result.cache?.used).toBe(true);
        expect(result.cache?.packages?.written).toBeTruthy();
        expect(result.cache?.images.every((i) => i.written)).toBe(true);
        // Signed, attested and verified in the engine with real cosign before promotion.
        expect(result.signing?.ok, JSON.stringify(result.signing)).toBe(true);
        expect(result.signing?.images.map((i) => i.image).sort()).toEqual(IMAGES.map((i) => i.name).sort());
        report.ci.signing = result.signing!.images.map((i) => `${i.image} ${i.ms} ms sig ${i.signatureBytes} B att ${i.attestationBytes} B`).join("; ");
        // And outside it: this machine's cosign verifies the production tag's signature with the public key.
        const slurmd = result.images.find((i) => i.image === "slurmd")!;
        const verify = await run(
          "cosign",
          ["verify", "--key", join(fixture.work, "cosign.pub"), "--insecure-ignore-tlog=true", "--registry-username", USER, "--registry-password", fixture.canary, `${fixture.target}/slinky/slurmd@${slurmd.digest}`],
          { timeoutMs: 2 * MINUTE, env: { ...process.env, SSL_CERT_FILE: join(TLS_DIR, "ca.pem") } },
        );
        expect(verify.code, verify.stderr).toBe(0);
        const log = readFileSync(join(DAGGER_DIR, "engine.log"), "utf8");
        for (const canary of [fixture.canary, fixture.keyCanary]) expect(log).not.toContain(canary);
      },
      60 * MINUTE,
    );

    it(
      "the same ci on an EMPTY engine state (a GitLab job's fresh dind engine) with the registry kept: package set and images reused, nothing compiled",
      async () => {
        await stopDaggerEngine();
        [, report.ciFreshEngine.engineStartSeconds] = await seconds(() => startDaggerEngine({ ...engineOptions, fresh: true }));
        const [result, took] = await seconds(() => ci(COMMIT_2));
        report.ciFreshEngine = {
          ...report.ciFreshEngine,
          seconds: took,
          summary: result.summary,
          packageSetReused: result.cache?.packages?.hit ?? false,
          imagesReused: (result.cache?.images ?? []).filter((i) => i.reused).length,
        };
        expect(result.ok, JSON.stringify(result.errors)).toBe(true);
        expect(result.cache?.packages?.hit).toBe(true);
        expect(report.ciFreshEngine.imagesReused).toBe(IMAGES.length);
        for (const image of result.images) {
          expect(await tagsOf(fixture, image.image)).toContain(`${LINE}-${FLAVOR}-main-${COMMIT_2.slice(0, 8)}`);
        }
        // Nothing compiled: the engine's log names every container it starts (the smoke checks' and
        // cosign's here), and none ran the package set's compile script.
        const engineLog = readFileSync(join(DAGGER_DIR, "engine.log"), "utf8");
        expect(engineLog).toMatch(/starting container/);
        expect(engineLog).not.toMatch(/build-slurm\.sh/);
      },
      60 * MINUTE,
    );
  },
);
