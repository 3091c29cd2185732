/**
 * The SBOM (src/supply-chain/sbom.ts) and the materials it lists (src/supply-chain/materials.ts).
 *
 * Fixtures: test/fixtures/dpkg-query.real.*.txt are REAL output of DPKG_QUERY,
 * captured with `docker run --entrypoint dpkg-query` from the image harness's
 * built debian13 images (slurmctld, slurmd-pyxis: Slurm 24.11.5 stand-in, the
 * pyxis/enroot/NVIDIA stand-ins) and from the debootstrapped linux/arm64 trixie
 * base under emulation. test/images/sbom.test.ts runs DPKG_QUERY live in every
 * harness image. test/fixtures/spdx-schema-2.3.json is the SPDX project's own
 * JSON schema for SPDX 2.3 (spdx/spdx-spec, schemas/spdx-schema.json on its
 * support/2.3 branch), run with ajv as an independent check.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { dag } from "@dagger.io/dagger";
import { Ajv } from "ajv";
import { PackageURL } from "packageurl-js";
import { describe, expect, it } from "vitest";
import { imageSpec } from "../../src/core/catalog.js";
import { loadManifest } from "../../src/core/manifest.js";
import { imageMaterials, moduleVersion } from "../../src/supply-chain/materials.js";
import { resolve } from "../../src/build/plan.js";
import { queryOf } from "../support/dagger.js";
import { DPKG_FIELDS, DPKG_QUERY, DpkgQueryError, type Package, parseDpkgQuery } from "../../src/supply-chain/dpkg.js";
import { dpkgQueryContainer } from "../../src/supply-chain/dpkg.engine.js";
import { debPurl, distroOf } from "../../src/supply-chain/purl.js";
import { SbomError, SpdxDocumentSchema, spdxDocument } from "../../src/supply-chain/sbom.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");
const PYXIS_REAL = fixture("dpkg-query.real.slurmd-pyxis.24.11-debian13.amd64.txt");
const SLURMCTLD_REAL = fixture("dpkg-query.real.slurmctld.24.11-debian13.amd64.txt");
const ARM64_REAL = fixture("dpkg-query.real.base-debian-trixie.arm64.txt");
const spdxSchema = JSON.parse(fixture("spdx-schema-2.3.json")) as object;
const validateSpdx = new Ajv({ strict: false, allErrors: true }).compile(spdxSchema);

const manifest = loadManifest();
const DIGEST = `sha256:${"ab".repeat(32)}`;
const CREATED = "2026-11-29T18:00:00Z";
/** The debian13 base's digest as the build cache would resolve it (the manifest pins none). */
const BASE_DIGEST = `sha256:${"cd".repeat(32)}`;

/** The lines of a dpkg-query output as fields, the plain way: an independent reading of the fixture. */
const rows = (text: string) => text.trimEnd().split("\n").map((line) => line.split("\t"));

function sbomFor(image: string, packages: Package[], options: { flavor?: string; platform?: "linux/amd64" | "linux/arm64"; digest?: string } = {}) {
  const flavor = options.flavor ?? "ubuntu24.04";
  const platform = options.platform ?? "linux/amd64";
  const resolved = resolve(manifest, { flavor, image, platforms: platform });
  return spdxDocument({
    image,
    version: resolved.slurm.version,
    flavor,
    platform,
    digest: options.digest ?? DIGEST,
    repository: "registry.example.com/hpc/slinky",
    packages,
    inputs: imageMaterials(manifest, resolved, imageSpec(image), platform, resolved.flavor.baseDigest ? {} : { baseDigest: BASE_DIGEST }),
    created: CREATED,
  });
}

describe("DPKG_QUERY", () => {
  it("is one dpkg-query argv (no shell) printing status, name, version, architecture, source name, source version, maintainer", () => {
    expect(DPKG_QUERY.slice(0, 2)).toEqual(["dpkg-query", "--show"]);
    expect(DPKG_QUERY[2]).toBe(
      "--showformat=${db:Status-Abbrev}\\t${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}\\t${Maintainer}\\n",
    );
    expect(DPKG_FIELDS).toHaveLength(7);
  });

  it("runs in the built container as root, after everything the container already is (the Dagger query)", () => {
    const query = queryOf(dpkgQueryContainer(dag.container().from("registry.example.com/slinky/slurmd:x").withUser("slurm")));
    expect(query.map((step) => step.operation)).toEqual(["container", "from", "withUser", "withUser", "withExec"]);
    expect(query.at(-2)?.args).toEqual({ name: "root" });
    expect(query.at(-1)?.args).toMatchObject({ args: DPKG_QUERY });
  });
});

describe("parseDpkgQuery on real output", () => {
  it("reads every installed package of the real slurmd-pyxis image, as dpkg printed it", () => {
    const packages = parseDpkgQuery(PYXIS_REAL);
    const installed = rows(PYXIS_REAL).filter((f) => f[0] === "ii ");
    expect(installed).toHaveLength(277);
    expect(packages).toHaveLength(installed.length);
    const byKey = new Map(packages.map((p) => [`${p.name}:${p.architecture}`, p]));
    for (const [, name, version, arch, srcName, srcVersion, maintainer] of installed) {
      expect(byKey.get(`${name}:${arch}`)).toEqual({
        name,
        version,
        architecture: arch,
        sourceName: srcName,
        sourceVersion: srcVersion,
        maintainer,
        status: "ii",
      });
    }
  });

  it("keeps the source package and its version where they differ (binNMU, epoch, renamed source)", () => {
    const packages = parseDpkgQuery(PYXIS_REAL);
    const find = (name: string) => packages.find((p) => p.name === name);
    expect(find("bash")).toMatchObject({ version: "5.2.37-2+b10", sourceName: "bash", sourceVersion: "5.2.37-2" });
    expect(find("bsdutils")).toMatchObject({ version: "1:2.41.5-0+deb13u1", sourceName: "util-linux", sourceVersion: "2.41.5-0+deb13u1" });
    expect(find("slurm-smd-slurmd")).toMatchObject({ version: "24.11.5-1", architecture: "amd64", sourceName: "slurm-smd" });
    expect(find("enroot+caps")).toMatchObject({ version: "4.2.1-1" });
  });

  it("sorts by name and architecture whatever dpkg's order", () => {
    const shuffled = PYXIS_REAL.trimEnd().split("\n").reverse().join("\n");
    const packages = parseDpkgQuery(shuffled);
    expect(packages).toEqual(parseDpkgQuery(PYXIS_REAL));
    const keys = packages.map((p) => `${p.name}\u0000${p.architecture}`);
    expect(keys).toEqual([...keys].sort());
  });

  it("reads the real arm64 base (arm64 and all packages)", () => {
    const packages = parseDpkgQuery(ARM64_REAL);
    expect(packages).toHaveLength(78);
    expect(new Set(packages.map((p) => p.architecture))).toEqual(new Set(["arm64", "all"]));
  });
});

describe("parseDpkgQuery is strict", () => {
  const good = "ii \tbash\t5.2.37-2+b10\tamd64\tbash\t5.2.37-2\tMatthias Klose <doko@debian.org>";
  it.each([
    ["ii \tbash\t5.2.37-2\tamd64\tbash\t5.2.37-2", "line 2 is malformed: 6 tab-separated fields, expected 7"],
    ["ii\tbash\t5.2\tamd64\tbash\t5.2\tX", 'line 2 is malformed: status "ii" is not'],
    ["ii \tBash\t5.2\tamd64\tbash\t5.2\tX", 'package name "Bash" is not a Debian package name'],
    ["ii \tzsh\t\tamd64\tzsh\t5.9\tX", 'version "" is not a Debian version'],
    ["ii \tzsh\t5.9\tAMD64\tzsh\t5.9\tX", 'architecture "AMD64"'],
    ["ii \tzsh\t5.9\tamd64\t\t5.9\tX", 'source package "" is not'],
    ["ii \tzsh\t5.9\tamd64\tzsh\t5 9\tX", 'source version "5 9"'],
    [good, "package bash:amd64 is listed twice"],
    [`${good.replace("bash", "zsh")}\r`, "the maintainer holds a control character"],
    ["dpkg-query: error: unknown field", "1 tab-separated fields"],
  ])("refuses %j, naming the line", (line, message) => {
    expect(() => parseDpkgQuery(`${good}\n${line}\n`)).toThrow(DpkgQueryError);
    expect(() => parseDpkgQuery(`${good}\n${line}\n`)).toThrow(message);
  });

  it("shows the bad line in the error", () => {
    expect(() => parseDpkgQuery(`${good}\nii \tBAD\n`)).toThrow(/line 2 .*"ii \\tBAD"/);
  });

  it("refuses output with no installed package", () => {
    expect(() => parseDpkgQuery("")).toThrow("dpkg-query listed no installed package");
    expect(() => parseDpkgQuery("rc \told\t1.0\tamd64\told\t1.0\tX\n")).toThrow("no installed package");
  });

  it("keeps packages whose files are on disk, drops config-files and not-installed ones", () => {
    const out = [
      good,
      "rc \tgone\t1.0\tamd64\tgone\t1.0\tX",
      "un \tnever\t1.0\tamd64\tnever\t1.0\t",
      "iU \thalf\t1.0\tamd64\thalf\t1.0\t",
      "hi \theld\t1.0\tall\theld\t1.0\tY <y@example.org>",
    ].join("\n");
    const packages = parseDpkgQuery(out);
    expect(packages.map((p) => `${p.name} ${p.status}`)).toEqual(["bash ii", "half iU", "held hi"]);
    expect(packages.find((p) => p.name === "half")?.maintainer).toBeNull();
  });

  it("keeps a tab inside the maintainer (the last field) as part of it", () => {
    expect(parseDpkgQuery("ii \tzsh\t5.9\tamd64\tzsh\t5.9\tA\tB <b@example.org>\n")[0]?.maintainer).toBe("A\tB <b@example.org>");
  });
});

describe("purls", () => {
  const packages = parseDpkgQuery(PYXIS_REAL);
  const debian = distroOf("debian13");

  it("names the flavor's distribution", () => {
    expect(distroOf("ubuntu24.04")).toEqual({ id: "ubuntu", versionId: "24.04" });
    expect(distroOf("debian13")).toEqual({ id: "debian", versionId: "13" });
    expect(() => distroOf("rocky9")).toThrow('flavor "rocky9" does not name a Debian or Ubuntu release');
  });

  it("encodes + and @, keeps the epoch's colon, and says the source package when it differs", () => {
    const find = (name: string) => packages.find((p) => p.name === name) as Package;
    expect(debPurl(find("bash"), debian)).toBe("pkg:deb/debian/bash@5.2.37-2%2Bb10?arch=amd64&distro=debian-13&upstream=bash%405.2.37-2");
    expect(debPurl(find("bsdutils"), debian)).toBe(
      "pkg:deb/debian/bsdutils@1:2.41.5-0%2Bdeb13u1?arch=amd64&distro=debian-13&upstream=util-linux%402.41.5-0%2Bdeb13u1",
    );
    expect(debPurl(find("adduser"), debian)).toBe("pkg:deb/debian/adduser@3.152?arch=all&distro=debian-13");
    expect(debPurl(find("slurm-smd-client"), debian)).toBe("pkg:deb/debian/slurm-smd-client@24.11.5-1?arch=amd64&distro=debian-13&upstream=slurm-smd");
  });

  it("every package's purl parses (packageurl-js) back to its name, version, architecture and source", () => {
    for (const pkg of packages) {
      const parsed = PackageURL.fromString(debPurl(pkg, debian));
      expect([parsed.type, parsed.namespace, parsed.name, parsed.version]).toEqual(["deb", "debian", pkg.name, pkg.version]);
      expect(parsed.qualifiers?.arch).toBe(pkg.architecture);
      expect(parsed.qualifiers?.distro).toBe("debian-13");
      const upstream = parsed.qualifiers?.upstream;
      if (pkg.sourceName === pkg.name && pkg.sourceVersion === pkg.version) expect(upstream).toBeUndefined();
      else expect(upstream).toBe(pkg.sourceVersion === pkg.version ? pkg.sourceName : `${pkg.sourceName}@${pkg.sourceVersion}`);
    }
  });
});

describe("imageMaterials", () => {
  const materialsOf = (image: string, platform: "linux/amd64" | "linux/arm64" = "linux/amd64", flavor = "ubuntu24.04") =>
    imageMaterials(manifest, resolve(manifest, { flavor, image, platforms: platform }), imageSpec(image), platform);

  it("lists what each image holds, with the manifest's pins", () => {
    const held = (image: string) => materialsOf(image).filter((m) => m.inImage).map((m) => m.name);
    expect(held("slurmctld")).toEqual(["baseImage", "slurm"]);
    expect(held("sackd")).toEqual(["baseImage", "kubectl", "slurm"]);
    expect(held("slurmd-pyxis")).toEqual(["baseImage", "enroot", "enrootCaps", "pyxis", "slurm"]);
    expect(held("login-pyxis")).toEqual(["baseImage", "enroot", "enrootCaps", "kubectl", "pyxis", "slurm"]);
  });

  it("lists every download the build fetches, the NVIDIA key and repository too (not held)", () => {
    const all = materialsOf("slurmd-pyxis");
    expect(all.map((m) => m.name)).toEqual(["baseImage", "enroot", "enrootCaps", "nvidiaKey", "nvidiaToolkit", "pyxis", "slurm"]);
    expect(all.find((m) => m.name === "nvidiaKey")).toMatchObject({ inImage: false, sha256: null, fingerprint: manifest.inputs.nvidiaKey.fingerprint });
    expect(all.find((m) => m.name === "nvidiaToolkit")).toMatchObject({ inImage: false, uri: manifest.nvidiaToolkit.repository, kind: "apt-repository" });
    expect(all.find((m) => m.name === "slurm")).toMatchObject({ uri: manifest.slurm["25.11"]?.url, sha256: manifest.slurm["25.11"]?.sha256, version: "25.11.8" });
    expect(all.find((m) => m.name === "baseImage")).toMatchObject({ uri: "docker.io/library/ubuntu:24.04", version: "24.04", sha256: manifest.flavors["ubuntu24.04"]?.baseDigest?.slice(7) });
  });

  it("takes each platform's own file (arch.arm64 entries)", () => {
    const kubectl = materialsOf("sackd", "linux/arm64").find((m) => m.name === "kubectl");
    expect(kubectl).toMatchObject({ uri: manifest.inputs.kubectl.arch?.arm64?.url, sha256: manifest.inputs.kubectl.arch?.arm64?.sha256 });
    expect(kubectl?.sha256).not.toBe(manifest.inputs.kubectl.sha256);
  });

  it("takes the base digest resolved at run time when the manifest pins none, and refuses one that contradicts the pin", () => {
    const resolved = resolve(manifest, { flavor: "debian13", image: "slurmd" });
    expect(imageMaterials(manifest, resolved, imageSpec("slurmd")).find((m) => m.name === "baseImage")?.sha256).toBeNull();
    expect(imageMaterials(manifest, resolved, imageSpec("slurmd"), "linux/amd64", { baseDigest: DIGEST }).find((m) => m.name === "baseImage")?.sha256).toBe("ab".repeat(32));
    const ubuntu = resolve(manifest, { image: "slurmd" });
    expect(() => imageMaterials(manifest, ubuntu, imageSpec("slurmd"), "linux/amd64", { baseDigest: DIGEST })).toThrow("differs from the manifest's pin");
  });
});

describe("spdxDocument", () => {
  const packages = parseDpkgQuery(PYXIS_REAL);
  const doc = sbomFor("slurmd-pyxis", packages);

  it("is SPDX 2.3 by the SPDX project's own JSON schema, and by ours", () => {
    expect(validateSpdx(doc), JSON.stringify(validateSpdx.errors)).toBe(true);
    expect(SpdxDocumentSchema.safeParse(doc).success).toBe(true);
    expect(doc).toMatchObject({ spdxVersion: "SPDX-2.3", dataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT" });
    expect(doc.creationInfo).toEqual({ creators: [`Tool: slinky-containers-${moduleVersion()}`], created: CREATED });
  });

  it("lists every installed package once, with its version, architecture and source, contained in the image", () => {
    const debs = doc.packages.filter((p) => p.SPDXID.startsWith("SPDXRef-deb-"));
    expect(debs).toHaveLength(rows(PYXIS_REAL).filter((f) => f[0] === "ii ").length);
    const image = doc.packages[0];
    expect(image).toMatchObject({ name: "slurmd-pyxis", versionInfo: "25.11.8", supplier: `Organization: ${manifest.project.vendor}`, primaryPackagePurpose: "CONTAINER", checksums: [{ algorithm: "SHA256", checksumValue: DIGEST.slice(7) }] });
    expect(image?.externalRefs?.[0]?.referenceLocator).toBe(`pkg:oci/slurmd-pyxis@sha256:${"ab".repeat(32)}?arch=amd64&repository_url=registry.example.com%2Fhpc%2Fslinky%2Fslurmd-pyxis`);
    const contained = new Set(doc.relationships.filter((r) => r.spdxElementId === image?.SPDXID && r.relationshipType === "CONTAINS").map((r) => r.relatedSpdxElement));
    for (const pkg of packages) {
      const entry = debs.find((d) => d.name === pkg.name && d.externalRefs?.[0]?.referenceLocator.includes(`arch=${pkg.architecture}`));
      expect(entry, pkg.name).toBeDefined();
      expect(entry?.versionInfo).toBe(pkg.version);
      expect(entry?.sourceInfo).toBe(`built from Debian source package ${pkg.sourceName} ${pkg.sourceVersion}`);
      expect(contained.has(entry?.SPDXID as string)).toBe(true);
      const purl = PackageURL.fromString(entry?.externalRefs?.[0]?.referenceLocator as string);
      expect([purl.namespace, purl.name, purl.version, purl.qualifiers?.arch, purl.qualifiers?.distro]).toEqual(["ubuntu", pkg.name, pkg.version, pkg.architecture, "ubuntu-24.04"]);
    }
    expect(doc.relationships.filter((r) => r.relationshipType === "DESCRIBES")).toEqual([
      { spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: image?.SPDXID },
    ]);
  });

  it("lists the pinned inputs the image holds with URL, version and the manifest's sha256", () => {
    const inputs = doc.packages.filter((p) => p.SPDXID.startsWith("SPDXRef-input-"));
    expect(inputs.map((p) => p.name)).toEqual(["base image", "enroot", "enroot+caps", "pyxis", "slurm"].map((n) => (n === "base image" ? "docker.io/library/ubuntu" : n)));
    const pins: Record<string, { url: string; sha256: string | null; version: string }> = {
      slurm: manifest.slurm["25.11"] as { url: string; sha256: string; version: string },
      pyxis: manifest.inputs.pyxis,
      enroot: manifest.inputs.enroot,
      "enroot+caps": manifest.inputs.enrootCaps,
    };
    for (const [name, pin] of Object.entries(pins)) {
      const entry = inputs.find((p) => p.name === name);
      expect(entry, name).toMatchObject({ downloadLocation: pin.url, versionInfo: pin.version, checksums: [{ algorithm: "SHA256", checksumValue: pin.sha256 }] });
      const purl = PackageURL.fromString(entry?.externalRefs?.[0]?.referenceLocator as string);
      expect([purl.type, purl.qualifiers?.download_url, purl.qualifiers?.checksum]).toEqual(["generic", pin.url, `sha256:${pin.sha256}`]);
    }
    const base = inputs.find((p) => p.SPDXID === "SPDXRef-input-baseImage");
    expect(base).toMatchObject({ versionInfo: "24.04", downloadLocation: "NOASSERTION", checksums: [{ algorithm: "SHA256", checksumValue: manifest.flavors["ubuntu24.04"]?.baseDigest?.slice(7) }] });
    expect(inputs.some((p) => p.name === "kubectl")).toBe(false);
  });

  it("links the Slurm, pyxis and enroot packages to the inputs they come from, and the image to its base", () => {
    const from = (input: string) =>
      doc.relationships
        .filter((r) => r.relationshipType === "GENERATED_FROM" && r.relatedSpdxElement === `SPDXRef-input-${input}`)
        .map((r) => doc.packages.find((p) => p.SPDXID === r.spdxElementId)?.name);
    expect(from("slurm")).toEqual(packages.filter((p) => p.name.startsWith("slurm-smd")).map((p) => p.name));
    expect(from("slurm")).toHaveLength(7);
    expect(from("pyxis")).toEqual(["nvslurm-plugin-pyxis"]);
    expect(from("enroot")).toEqual(["enroot"]);
    expect(from("enrootCaps")).toEqual(["enroot+caps"]);
    expect(doc.relationships).toContainEqual({ spdxElementId: "SPDXRef-image-slurmd-pyxis", relationshipType: "DESCENDANT_OF", relatedSpdxElement: "SPDXRef-input-baseImage" });
  });

  it("is deterministic: the same input gives the same bytes, whatever the order of packages and inputs", () => {
    const again = sbomFor("slurmd-pyxis", parseDpkgQuery(PYXIS_REAL));
    expect(JSON.stringify(again)).toBe(JSON.stringify(doc));
    const resolved = resolve(manifest, { image: "slurmd-pyxis" });
    const reversed = spdxDocument({
      image: "slurmd-pyxis",
      version: resolved.slurm.version,
      flavor: "ubuntu24.04",
      platform: "linux/amd64",
      digest: DIGEST,
      repository: "registry.example.com/hpc/slinky",
      packages: [...packages].reverse(),
      inputs: imageMaterials(manifest, resolved, imageSpec("slurmd-pyxis"), "linux/amd64").reverse(),
      created: "2026-11-29T19:00:00+01:00",
    });
    expect(JSON.stringify(reversed)).toBe(JSON.stringify(doc));
    const ids = doc.packages.slice(1).map((p) => p.SPDXID);
    expect(ids).toEqual([...ids].sort());
  });

  it("gives each document its own namespace: another digest, image or time is another namespace", () => {
    expect(doc.documentNamespace).toMatch(/^https:\/\/gitlab\.com\/crusoeenergy\/island\/external\/slinky-containers\/spdx\/slurmd-pyxis-25\.11\.8-ubuntu24\.04-amd64-[0-9a-f]{32}$/);
    const other = sbomFor("slurmd-pyxis", packages, { digest: `sha256:${"ef".repeat(32)}` });
    expect(other.documentNamespace).not.toBe(doc.documentNamespace);
    expect(sbomFor("slurmd", packages).documentNamespace).not.toBe(doc.documentNamespace);
  });

  it("uses the Debian namespace and each platform's pins for debian13 linux/arm64", () => {
    const arm = sbomFor("login", parseDpkgQuery(ARM64_REAL), { flavor: "debian13", platform: "linux/arm64" });
    expect(validateSpdx(arm)).toBe(true);
    const kubectl = arm.packages.find((p) => p.name === "kubectl");
    expect(kubectl).toMatchObject({ downloadLocation: manifest.inputs.kubectl.arch?.arm64?.url, checksums: [{ algorithm: "SHA256", checksumValue: manifest.inputs.kubectl.arch?.arm64?.sha256 }] });
    const purls = arm.packages.flatMap((p) => p.externalRefs ?? []).map((r) => r.referenceLocator).filter((l) => l.startsWith("pkg:deb/"));
    expect(purls).toHaveLength(78);
    expect(purls.every((l) => l.startsWith("pkg:deb/debian/") && l.includes("distro=debian-13"))).toBe(true);
    expect(arm.name).toBe("slinky-containers login 25.11.8 debian13 linux/arm64");
  });

  it("gives the smallest image the same treatment (real slurmctld output)", () => {
    const small = sbomFor("slurmctld", parseDpkgQuery(SLURMCTLD_REAL));
    expect(validateSpdx(small)).toBe(true);
    expect(small.packages.filter((p) => p.SPDXID.startsWith("SPDXRef-deb-"))).toHaveLength(172);
    expect(small.packages.filter((p) => p.SPDXID.startsWith("SPDXRef-input-")).map((p) => p.name)).toEqual(["docker.io/library/ubuntu", "slurm"]);
  });

  it("keeps a package installed for two architectures (multi-arch) as two packages", () => {
    const multi = parseDpkgQuery(
      [
        "ii \tlibc6\t2.41-12\tamd64\tglibc\t2.41-12\tGNU Libc Maintainers <debian-glibc@lists.debian.org>",
        "ii \tlibc6\t2.41-12\ti386\tglibc\t2.41-12\tGNU Libc Maintainers <debian-glibc@lists.debian.org>",
      ].join("\n"),
    );
    const two = sbomFor("slurmctld", multi).packages.filter((p) => p.name === "libc6");
    expect(two.map((p) => p.SPDXID)).toEqual(["SPDXRef-deb-libc6-amd64", "SPDXRef-deb-libc6-i386"]);
    expect(two.map((p) => p.externalRefs?.[0]?.referenceLocator)).toEqual([
      "pkg:deb/ubuntu/libc6@2.41-12?arch=amd64&distro=ubuntu-24.04&upstream=glibc",
      "pkg:deb/ubuntu/libc6@2.41-12?arch=i386&distro=ubuntu-24.04&upstream=glibc",
    ]);
    expect(two[0]?.supplier).toBe("Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)");
  });

  it("refuses bad input, naming the field, before making anything", () => {
    const resolved = resolve(manifest, { image: "slurmd" });
    const args = {
      image: "slurmd",
      version: "25.11.8",
      flavor: "ubuntu24.04",
      platform: "linux/amd64" as const,
      packages,
      inputs: imageMaterials(manifest, resolved, imageSpec("slurmd")),
      created: CREATED,
    };
    expect(() => spdxDocument({ ...args, created: "yesterday" })).toThrow(/created: must be an RFC 3339 time/);
    expect(() => spdxDocument({ ...args, digest: "sha256:abc" })).toThrow(/digest/);
    expect(() => spdxDocument({ ...args, platform: "linux/s390x" as "linux/amd64" })).toThrow(/platform/);
    expect(() => spdxDocument({ ...args, packages: [] })).toThrow(/packages/);
    expect(() => spdxDocument({ ...args, inputs: [...args.inputs, ...args.inputs] })).toThrow("listed twice");
    const unchecked = args.inputs.map((m) => (m.name === "slurm" ? { ...m, sha256: null } : m));
    expect(() => spdxDocument({ ...args, inputs: unchecked })).toThrow("input slurm");
    expect(() => spdxDocument({ ...args, inputs: unchecked })).toThrow(SbomError);
  });

  it("never writes a credential: a URL or repository with user:password@ is refused without echoing it", () => {
    const resolved = resolve(manifest, { image: "slurmd" });
    const inputs = imageMaterials(manifest, resolved, imageSpec("slurmd")).map((m) =>
      m.name === "slurm" ? { ...m, uri: "https://mirror:CANARY-s3cret@mirror.example/slurm.tar.bz2" } : m,
    );
    const base = { image: "slurmd", version: "25.11.8", flavor: "ubuntu24.04", platform: "linux/amd64" as const, packages, created: CREATED };
    let message = "";
    try {
      spdxDocument({ ...base, inputs });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("input slurm's URL holds credentials");
    expect(message).not.toContain("CANARY");
    expect(() => spdxDocument({ ...base, inputs: imageMaterials(manifest, resolved, imageSpec("slurmd")), repository: "user:CANARY-s3cret@registry.example.com/x" })).toThrow(/repository/);
    try {
      spdxDocument({ ...base, inputs: imageMaterials(manifest, resolved, imageSpec("slurmd")), repository: "user:CANARY-s3cret@registry.example.com/x" });
    } catch (error) {
      expect((error as Error).message).not.toContain("CANARY");
    }
  });
});
