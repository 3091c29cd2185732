/**
 * The SBOM and provenance of the real images: the 8 debian13 targets built by
 * BuildKit as test/images/images.test.ts builds them (same plan, same stand-ins;
 * with a warm engine every step is a cache hit), then, per image, DPKG_QUERY run
 * inside it, the SPDX document made from that output, and what a security
 * reviewer checks, each against an independent source:
 *   - every package dpkg has installed, by /var/lib/dpkg/status read directly
 *     (name, architecture, version, source and source version) and by `dpkg -l`;
 *   - the Slurm packages at the version and architecture of the .deb files the
 *     package set built (`dpkg-deb --field` on them);
 *   - every input's sha256 is the sha256 of the very file the build fetched;
 *   - purls read back by packageurl-js; the SPDX project's 2.3 JSON schema; the
 *     same image gives the same bytes.
 * Prints each image's SBOM and provenance sizes and package counts, and writes
 * them to out/sbom-report.json.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv } from "ajv";
import { PackageURL } from "packageurl-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IMAGES, type ImageSpec } from "../../src/core/catalog.js";
import { imageMaterials, moduleVersion } from "../../src/supply-chain/materials.js";
import { slsaProvenance } from "../../src/supply-chain/provenance.js";
import { DPKG_QUERY, parseDpkgQuery } from "../../src/supply-chain/dpkg.js";
import { SpdxDocumentSchema, spdxDocument } from "../../src/supply-chain/sbom.js";
import {
  BASE_IMAGE,
  dockerOk,
  type Engine,
  ensureBase,
  FILES_PORT,
  type FileServer,
  INPUTS_DIR,
  REPO,
  run,
  SLURM_SOURCE,
  serveFiles,
  sha256File,
  slurmSource,
  startEngine,
  stopEngine,
} from "./harness.js";
import { type BuildPlan, buildImage, buildPackagesAndOs, buildPlan, provenance } from "./runner.js";
import { standInSources } from "./serve-standins.js";

const OUT = join(REPO, "out");
const LOGS = join(OUT, "sbom-logs");
const MINUTE = 60_000;
const PLATFORM = "linux/amd64";
const spdxSchema = JSON.parse(readFileSync(join(REPO, "test", "fixtures", "spdx-schema-2.3.json"), "utf8")) as object;
const validateSpdx = new Ajv({ strict: false, allErrors: true }).compile(spdxSchema);

let engine: Engine | undefined;
let server: FileServer | undefined;
let plan: BuildPlan;
let baseId = "";
/** URL served -> sha256 of the file on disk behind it. */
const servedSha256 = new Map<string, string>();
const sizes: { image: string; packages: number; slurmPackages: number; inputs: number; sbomBytes: number; provenanceBytes: number }[] = [];

beforeAll(async () => {
  mkdirSync(LOGS, { recursive: true });
  engine = await startEngine();
  baseId = await ensureBase(BASE_IMAGE);
  const slurmPath = await slurmSource();
  const served = await standInSources(join(INPUTS_DIR, "standins"));
  const files = { [SLURM_SOURCE.file]: slurmPath, ...served.files };
  server = await serveFiles(files, FILES_PORT);
  for (const [name, path] of Object.entries(files)) servedSha256.set(server.url(name), await sha256File(path));
  plan = buildPlan(
    {
      base: { name: BASE_IMAGE, id: baseId },
      slurm: { version: SLURM_SOURCE.version, url: server.url(SLURM_SOURCE.file), sha256: SLURM_SOURCE.sha256 },
      standIns: served.override(server),
    },
    await provenance(),
  );
  await buildPackagesAndOs(plan, LOGS, 40 * MINUTE);
  for (const image of IMAGES) await buildImage(plan, image, join(LOGS, `${image.name}.log`), 30 * MINUTE);
}, 45 * MINUTE);

afterAll(async () => {
  await server?.close();
  if (engine) await stopEngine(engine);
  if (sizes.length === 0) return;
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "sbom-report.json"), `${JSON.stringify({ flavor: "debian13", slurmVersion: SLURM_SOURCE.version, platform: PLATFORM, images: sizes }, null, 2)}\n`);
  const header = ["image", "packages", "slurm-smd", "inputs", "SBOM bytes", "provenance bytes"];
  const rows = sizes.map((s) => [s.image, s.packages, s.slurmPackages, s.inputs, s.sbomBytes, s.provenanceBytes].map(String));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("  ");
  console.log([`SBOM and provenance, debian13 ${PLATFORM}, Slurm ${SLURM_SOURCE.version}`, line(header), ...rows.map(line)].join("\n"));
}, 5 * MINUTE);

/** Runs DPKG_QUERY in an image: its argv as is, the first word as the entrypoint. */
async function dpkgQueryIn(ref: string): Promise<string> {
  const [entrypoint, ...args] = DPKG_QUERY;
  return dockerOk(["run", "--rm", "--network", "none", "--user", "root", "--entrypoint", entrypoint as string, ref, ...args], { timeoutMs: 120_000 });
}

/** A file of an image, read with cat. */
const catIn = (ref: string, path: string) => dockerOk(["run", "--rm", "--network", "none", "--user", "root", "--entrypoint", "cat", ref, path], { timeoutMs: 120_000 });

interface StatusEntry {
  name: string;
  architecture: string;
  version: string;
  sourceName: string;
  sourceVersion: string;
}

/** /var/lib/dpkg/status, read the plain way: the stanzas whose Status ends in "installed" (files on disk but for config-files/not-installed). */
function installedFromStatusFile(text: string): StatusEntry[] {
  const entries: StatusEntry[] = [];
  for (const stanza of text.split(/\n\n+/)) {
    const field = (name: string) => new RegExp(`^${name}: (.*)$`, "m").exec(stanza)?.[1]?.trim();
    const status = field("Status");
    if (!status) continue;
    const state = status.split(" ")[2];
    if (state === "not-installed" || state === "config-files") continue;
    const name = field("Package") as string;
    const version = field("Version") as string;
    const source = /^(\S+)(?: \((\S+)\))?$/.exec(field("Source") ?? "");
    entries.push({
      name,
      architecture: field("Architecture") as string,
      version,
      sourceName: source?.[1] ?? name,
      sourceVersion: source?.[2] ?? version,
    });
  }
  const compare = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return entries.sort((a, b) => compare(a.name, b.name) || compare(a.architecture, b.architecture));
}

describe.sequential("SBOM and provenance of the debian13 images", () => {
  it.each(IMAGES.map((image) => [image.name, image] as const))(
    "%s: the SBOM lists what dpkg installed, the Slurm packages as built, the inputs by the sha256 of the files fetched",
    async (_name, image: ImageSpec) => {
      const ref = plan.ref(image);
      const stdout = await dpkgQueryIn(ref);
      const packages = parseDpkgQuery(stdout);

      // Every package dpkg has installed, by its status file and by dpkg -l.
      const status = installedFromStatusFile(await catIn(ref, "/var/lib/dpkg/status"));
      expect(packages.map(({ name, architecture, version, sourceName, sourceVersion }) => ({ name, architecture, version, sourceName, sourceVersion }))).toEqual(status);
      const dpkgL = (await dockerOk(["run", "--rm", "--network", "none", "--entrypoint", "dpkg", ref, "-l"], { timeoutMs: 120_000 }))
        .split("\n")
        .filter((l) => /^ii /.test(l));
      expect(packages.filter((p) => p.status === "ii")).toHaveLength(dpkgL.length);

      // The Slurm packages are the .debs the package set built: same version, same architecture.
      const arch = (await dockerOk(["image", "inspect", "--format", "{{.Architecture}}", ref])).trim();
      const debs = join(plan.context, "packages", "slurm");
      const built = new Map<string, { version: string; architecture: string }>();
      for (const file of readdirSync(debs).filter((f) => f.endsWith(".deb"))) {
        const fields = await run("dpkg-deb", ["--field", join(debs, file), "Package", "Version", "Architecture"], { timeoutMs: 30_000 });
        const f = Object.fromEntries(fields.stdout.trim().split("\n").map((l) => l.split(": ", 2) as [string, string]));
        built.set(f.Package as string, { version: f.Version as string, architecture: f.Architecture as string });
      }
      const slurm = packages.filter((p) => p.name.startsWith("slurm-smd"));
      expect(slurm.map((p) => p.name)).toContain("slurm-smd");
      for (const pkg of slurm) {
        expect(built.get(pkg.name), pkg.name).toEqual({ version: pkg.version, architecture: pkg.architecture });
        expect(pkg.version.startsWith(`${SLURM_SOURCE.version}-`)).toBe(true);
        expect(pkg.architecture).toBe(arch);
      }

      // The document.
      const materials = imageMaterials(plan.manifest, plan.resolved, image, PLATFORM, { baseDigest: baseId });
      const make = (out: string) =>
        spdxDocument({ image: image.name, version: plan.resolved.slurm.version, flavor: plan.resolved.flavorName, platform: PLATFORM, packages: parseDpkgQuery(out), inputs: materials, created: "2026-11-29T00:00:00Z" });
      const doc = make(stdout);
      expect(validateSpdx(doc), JSON.stringify(validateSpdx.errors?.slice(0, 5))).toBe(true);
      expect(SpdxDocumentSchema.safeParse(doc).success).toBe(true);
      expect(doc.creationInfo.creators).toEqual([`Tool: slinky-containers-${moduleVersion()}`]);
      const debPackages = doc.packages.filter((p) => p.SPDXID.startsWith("SPDXRef-deb-"));
      expect(debPackages).toHaveLength(status.length);
      for (const entry of status) {
        const match = debPackages.filter((p) => {
          const purl = PackageURL.fromString(p.externalRefs?.[0]?.referenceLocator as string);
          return purl.name === entry.name && purl.qualifiers?.arch === entry.architecture;
        });
        expect(match, `${entry.name}:${entry.architecture}`).toHaveLength(1);
        const purl = PackageURL.fromString(match[0]?.externalRefs?.[0]?.referenceLocator as string);
        expect([purl.type, purl.namespace, purl.version, purl.qualifiers?.distro]).toEqual(["deb", "debian", entry.version, "debian-13"]);
        expect(match[0]?.versionInfo).toBe(entry.version);
      }

      // Every input the image holds, with the sha256 of the file the build was served.
      const inputs = doc.packages.filter((p) => p.SPDXID.startsWith("SPDXRef-input-"));
      const expected = ["baseImage", "slurm", ...image.inputs.filter((n) => n !== "nvidiaKey")].sort();
      expect(inputs.map((p) => p.SPDXID.slice("SPDXRef-input-".length)).sort()).toEqual(expected);
      for (const input of inputs.filter((p) => p.SPDXID !== "SPDXRef-input-baseImage")) {
        expect(servedSha256.get(input.downloadLocation), input.name).toBeDefined();
        expect(input.checksums).toEqual([{ algorithm: "SHA256", checksumValue: servedSha256.get(input.downloadLocation) }]);
      }
      expect(inputs.find((p) => p.SPDXID === "SPDXRef-input-baseImage")?.checksums).toEqual([{ algorithm: "SHA256", checksumValue: baseId.slice("sha256:".length) }]);

      // The same image gives the same bytes.
      expect(JSON.stringify(make(await dpkgQueryIn(ref)))).toBe(JSON.stringify(doc));

      // The provenance of the same build: each dependency's sha256 is the served file's.
      const predicate = slsaProvenance({
        image: image.name,
        digest: (await dockerOk(["image", "inspect", "--format", "{{.Id}}", ref])).trim(),
        platform: PLATFORM,
        version: SLURM_SOURCE.line,
        flavor: plan.resolved.flavorName,
        group: "all",
        builder: { id: "https://slinky-containers.invalid/image-harness", version: moduleVersion() },
        invocation: {},
        materials: imageMaterials(plan.manifest, plan.resolved, image, PLATFORM, { baseDigest: baseId }),
        startedOn: "2026-11-29T00:00:00Z",
        finishedOn: "2026-11-29T00:10:00Z",
      });
      for (const dep of predicate.buildDefinition.resolvedDependencies.filter((d) => d.uri?.startsWith("http") && d.digest)) {
        expect(dep.digest, dep.name).toEqual({ sha256: servedSha256.get(dep.uri as string) });
      }

      sizes.push({
        image: image.name,
        packages: debPackages.length,
        slurmPackages: slurm.length,
        inputs: inputs.length,
        sbomBytes: Buffer.byteLength(JSON.stringify(doc)),
        provenanceBytes: Buffer.byteLength(JSON.stringify(predicate)),
      });
    },
    10 * MINUTE,
  );
});
