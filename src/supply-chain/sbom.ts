/**
 * The SBOM of one image: an SPDX 2.3 JSON document listing every Debian
 * package installed in the image (as dpkg-query reports it, run inside the
 * image: dpkg.ts, dpkg.engine.ts) and the pinned inputs the image holds (the
 * Slurm and pyxis sources, enroot, kubectl, the base image) with their URL,
 * version, sha256 and package URL (purl.ts).
 *
 * Pure functions, data in, data out, sorted, so the same image and inputs
 * give the same document byte for byte.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { redactCredentials, shown } from "../core/errors.js";
import { checkField, REFERENCE_RE, noTrailingSlash } from "../core/inputs.js";
import { loadManifest } from "../core/manifest.js";
import { archOf, PLATFORM_NAMES, type PlatformName } from "../core/platform.js";
import { ARCH_RE, byNameArch, compare, NAME_RE, type Package, STATE_NAMES, VERSION_RE } from "./dpkg.js";
import { type Material, MODULE_NAME, moduleVersion } from "./materials.js";
import { debPurl, type Distro, distroOf, ociPurl, purl } from "./purl.js";

const SHA256_HEX = /^[0-9a-f]{64}$/;
/** SPDX's date format: YYYY-MM-DDThh:mm:ssZ. */
const SPDX_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;
const SPDX_ID = /^SPDXRef-[A-Za-z0-9.-]+$/;
const NOASSERTION = "NOASSERTION";
const PURL_RE = /^pkg:[a-z][a-z0-9.+-]*\/[^\s?#@]+(?:@[^\s?#@]+)?(?:\?[a-z][a-z0-9._-]*=[^\s&#]+(?:&[a-z][a-z0-9._-]*=[^\s&#]+)*)?$/;

const ChecksumSchema = z.strictObject({ algorithm: z.literal("SHA256"), checksumValue: z.string().regex(SHA256_HEX) });
const ExternalRefSchema = z.strictObject({
  referenceCategory: z.literal("PACKAGE-MANAGER"),
  referenceType: z.literal("purl"),
  referenceLocator: z.string().regex(PURL_RE, "must be a package URL"),
});
const Agent = z.union([z.literal(NOASSERTION), z.string().regex(/^(Person|Organization): \S.*$/)]);

export const SpdxPackageSchema = z.strictObject({
  SPDXID: z.string().regex(SPDX_ID),
  name: z.string().min(1),
  versionInfo: z.string().min(1),
  supplier: Agent,
  downloadLocation: z.union([z.literal(NOASSERTION), z.url({ protocol: /^https?$/ })]),
  packageFileName: z.string().min(1).optional(),
  filesAnalyzed: z.literal(false),
  checksums: z.array(ChecksumSchema).min(1).optional(),
  licenseConcluded: z.literal(NOASSERTION),
  licenseDeclared: z.literal(NOASSERTION),
  copyrightText: z.literal(NOASSERTION),
  sourceInfo: z.string().optional(),
  primaryPackagePurpose: z.enum(["CONTAINER", "SOURCE", "INSTALL", "APPLICATION"]).optional(),
  externalRefs: z.array(ExternalRefSchema).min(1).optional(),
  comment: z.string().optional(),
});
export type SpdxPackage = z.infer<typeof SpdxPackageSchema>;

export const SpdxRelationshipSchema = z.strictObject({
  spdxElementId: z.string().regex(SPDX_ID),
  relationshipType: z.enum(["DESCRIBES", "CONTAINS", "GENERATED_FROM", "DESCENDANT_OF"]),
  relatedSpdxElement: z.string().regex(SPDX_ID),
});
export type SpdxRelationship = z.infer<typeof SpdxRelationshipSchema>;

/** What spdxDocument emits: SPDX 2.3 JSON, with the rules of the spec the JSON schema leaves out. */
export const SpdxDocumentSchema = z
  .strictObject({
    spdxVersion: z.literal("SPDX-2.3"),
    dataLicense: z.literal("CC0-1.0"),
    SPDXID: z.literal("SPDXRef-DOCUMENT"),
    name: z.string().min(1),
    documentNamespace: z.url({ protocol: /^https?$/ }).refine((value) => !value.includes("#"), "must not hold '#'"),
    creationInfo: z.strictObject({
      creators: z.array(z.string().regex(/^(Tool|Organization|Person): \S.*$/)).min(1),
      created: z.string().regex(SPDX_DATE, "must be YYYY-MM-DDThh:mm:ssZ"),
    }),
    packages: z.array(SpdxPackageSchema).min(1),
    relationships: z.array(SpdxRelationshipSchema).min(1),
  })
  .superRefine((doc, ctx) => {
    const ids = new Set<string>(["SPDXRef-DOCUMENT"]);
    doc.packages.forEach((pkg, i) => {
      if (ids.has(pkg.SPDXID)) ctx.addIssue({ code: "custom", path: ["packages", i, "SPDXID"], message: `${pkg.SPDXID} is used twice` });
      ids.add(pkg.SPDXID);
    });
    doc.relationships.forEach((rel, i) => {
      for (const key of ["spdxElementId", "relatedSpdxElement"] as const) {
        if (!ids.has(rel[key])) ctx.addIssue({ code: "custom", path: ["relationships", i, key], message: `${rel[key]} is no element of the document` });
      }
    });
    if (!doc.relationships.some((rel) => rel.spdxElementId === "SPDXRef-DOCUMENT" && rel.relationshipType === "DESCRIBES")) {
      ctx.addIssue({ code: "custom", path: ["relationships"], message: "the document DESCRIBES nothing" });
    }
  });
export type SpdxDocument = z.infer<typeof SpdxDocumentSchema>;

const MaterialSchema = z.strictObject({
  name: z.string().min(1),
  version: z.string().min(1),
  uri: z.string().min(1),
  sha256: z.string().regex(SHA256_HEX).nullable(),
  fingerprint: z.string().optional(),
  kind: z.enum(["download", "apt-repository", "image"]),
  inImage: z.boolean(),
});

const PackageSchema = z.strictObject({
  name: z.string().regex(NAME_RE),
  version: z.string().regex(VERSION_RE),
  architecture: z.string().regex(ARCH_RE),
  sourceName: z.string().regex(NAME_RE),
  sourceVersion: z.string().regex(VERSION_RE),
  maintainer: z.string().nullable(),
  status: z.string().regex(/^[uihrp][HUFWti]$/),
});

export const SpdxArgsSchema = z.strictObject({
  /** The image's name (slurmd). */
  image: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  /** The Slurm version the image holds (its org.opencontainers.image.version label), e.g. 25.11.8. */
  version: z.string().regex(/^[0-9][0-9A-Za-z.+~-]*$/),
  flavor: z.string().regex(/^[a-z0-9][a-z0-9.]*$/),
  platform: z.enum(PLATFORM_NAMES),
  /** The image's manifest digest, when known (the document is attached to it). */
  digest: z.string().regex(/^sha256:[0-9a-f]{64}$/).optional(),
  /** The registry path the images go under (the run's --registry, without the image name), for the image's purl. */
  repository: z.string().optional(),
  packages: z.array(PackageSchema).min(1),
  /** The image's materials (materials.imageMaterials): those with inImage are listed. */
  inputs: z.array(MaterialSchema),
  /** When the document was made, RFC 3339 (written as UTC, seconds). */
  created: z.string().refine((value) => checkField("commitTimestamp", value) === null, "must be an RFC 3339 time, e.g. 2026-11-28T00:00:00Z"),
  /** The distribution of the packages; default from the flavor's name. */
  distro: z.strictObject({ id: z.enum(["debian", "ubuntu"]), versionId: z.string().regex(/^[0-9]+(?:\.[0-9]+)?$/) }).optional(),
  /** Version of this module for the creator line; default package.json's. */
  toolVersion: z.string().min(1).optional(),
  /** The project's source URL, base of the document namespace; default manifest.json's project.source. */
  source: z.url({ protocol: /^https?$/ }).optional(),
  /** Who supplies the image (its supplier, `Organization: <vendor>`); default manifest.json's project.vendor. */
  vendor: z.string().regex(/^[^\s()<>][^()<>\n]*$/).optional(),
});
export type SpdxArgs = z.input<typeof SpdxArgsSchema>;

export class SbomError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SbomError";
  }
}

/** What each pinned input is called in the SBOM and what it is. */
const INPUT_INFO: Record<string, { name: string; purpose: SpdxPackage["primaryPackagePurpose"] }> = {
  baseImage: { name: "base image", purpose: "CONTAINER" },
  slurm: { name: "slurm", purpose: "SOURCE" },
  pyxis: { name: "pyxis", purpose: "SOURCE" },
  enroot: { name: "enroot", purpose: "INSTALL" },
  enrootCaps: { name: "enroot+caps", purpose: "INSTALL" },
  kubectl: { name: "kubectl", purpose: "APPLICATION" },
};

/** Which installed Debian packages are built from (or are) which input: Slurm's packaging is source slurm-smd, pyxis's nvslurm-plugin-pyxis. */
const GENERATED_FROM: Record<string, (pkg: Package) => boolean> = {
  slurm: (pkg) => pkg.sourceName === "slurm-smd",
  pyxis: (pkg) => pkg.sourceName === "nvslurm-plugin-pyxis",
  enroot: (pkg) => pkg.name === "enroot",
  enrootCaps: (pkg) => pkg.name === "enroot+caps",
};

/** An SPDXID part from a Debian name: '+' (never in SPDXIDs, never uppercase in Debian names) becomes "PLUS". */
const idPart = (value: string) => value.replace(/\+/g, "PLUS").replace(/[^A-Za-z0-9.-]/g, "-");

/** `Name <email>` -> `Person: Name (email)`, SPDX's agent syntax. */
function supplierOf(maintainer: string | null): string {
  if (!maintainer) return NOASSERTION;
  const m = /^(.*?)\s*<([^<>]*)>\s*$/.exec(maintainer);
  const text = m ? `${m[1] || m[2]} (${m[2]})` : maintainer;
  return `Person: ${text.replace(/\s+/g, " ").trim()}`;
}

/** An RFC 3339 time as SPDX writes it: UTC, whole seconds. */
export function spdxDate(value: string): string {
  return new Date(value).toISOString().replace(/\.\d{3}Z$/, "Z");
}

let pinnedProject: { source: string; vendor: string } | undefined;
const project = () => (pinnedProject ??= loadManifest().project);

/**
 * The SPDX 2.3 document of one image: the image (DESCRIBED by the document),
 * every installed Debian package and every pinned input it holds (CONTAINED
 * by the image), the Debian packages built from an input GENERATED_FROM it,
 * the image a DESCENDANT_OF its base. Packages and relationships are sorted;
 * the namespace is the project's source URL, the image, and a hash of every
 * argument, so one input gives one document and two inputs two namespaces.
 */
export function spdxDocument(input: SpdxArgs): SpdxDocument {
  const parsed = SpdxArgsSchema.safeParse(input);
  if (!parsed.success) {
    throw new SbomError(`invalid SBOM input:\n${parsed.error.issues.map((issue) => `  ${issue.path.join(".") || "(root)"}: ${issue.message}`).join("\n")}`);
  }
  const args = parsed.data;
  if (args.repository !== undefined) {
    const error = checkField("registry", args.repository);
    if (error) throw new SbomError(`invalid SBOM input: repository: ${error.message}`);
  }
  for (const material of args.inputs) {
    if (redactCredentials(material.uri) !== material.uri || material.uri.includes("@") && material.kind !== "image") {
      throw new SbomError(`invalid SBOM input: input ${material.name}'s URL holds credentials or an '@': ${shown(material.uri)}`);
    }
  }
  const distro = args.distro ?? distroOf(args.flavor);
  const created = spdxDate(args.created);
  const arch = archOf(args.platform);
  const source = noTrailingSlash(args.source ?? project().source);
  const vendor = args.vendor ?? project().vendor;
  // The namespace hashes every argument in a canonical order: the same input in another order is the same document.
  const canonical = {
    ...args,
    packages: [...args.packages].sort(byNameArch),
    inputs: [...args.inputs].sort((a, b) => compare(a.name, b.name)),
    source,
    vendor,
    distro,
    created,
    toolVersion: args.toolVersion ?? moduleVersion(),
  };
  const hash = createHash("sha256").update(JSON.stringify(canonical)).digest("hex");
  const imageId = `SPDXRef-image-${idPart(args.image)}`;

  const imagePackage: SpdxPackage = {
    SPDXID: imageId,
    name: args.image,
    versionInfo: args.version,
    supplier: `Organization: ${vendor}`,
    downloadLocation: NOASSERTION,
    filesAnalyzed: false,
    ...(args.digest ? { checksums: [{ algorithm: "SHA256" as const, checksumValue: args.digest.slice("sha256:".length) }] } : {}),
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    primaryPackagePurpose: "CONTAINER",
    ...(args.digest && args.repository
      ? { externalRefs: [{ referenceCategory: "PACKAGE-MANAGER" as const, referenceType: "purl" as const, referenceLocator: ociPurl(`${args.repository}/${args.image}`, args.digest, { arch }) }] }
      : {}),
    comment: `${MODULE_NAME} image ${args.image}, Slurm ${args.version}, flavor ${args.flavor}, platform ${args.platform}`,
  };

  const inputPackages: SpdxPackage[] = [];
  const inputIds = new Map<string, string>();
  for (const material of args.inputs.filter((m) => m.inImage)) {
    const id = `SPDXRef-input-${idPart(material.name)}`;
    if (inputIds.has(material.name)) throw new SbomError(`invalid SBOM input: input ${material.name} is listed twice`);
    inputIds.set(material.name, id);
    const info = INPUT_INFO[material.name] ?? { name: material.name, purpose: undefined };
    const image = material.kind === "image";
    if (!image && material.sha256 === null) {
      throw new SbomError(`input ${material.name} (${shown(material.uri)}) has no sha256: an image built from an unchecked download gets no SBOM`);
    }
    const fileName = image ? undefined : decodeURIComponent(new URL(material.uri).pathname.split("/").pop() ?? "") || undefined;
    inputPackages.push({
      SPDXID: id,
      name: image ? (REFERENCE_RE.exec(material.uri)?.[1] ?? material.uri) : info.name,
      versionInfo: material.version,
      supplier: NOASSERTION,
      downloadLocation: image ? NOASSERTION : material.uri,
      ...(fileName ? { packageFileName: fileName } : {}),
      filesAnalyzed: false,
      ...(material.sha256 ? { checksums: [{ algorithm: "SHA256" as const, checksumValue: material.sha256 }] } : {}),
      licenseConcluded: NOASSERTION,
      licenseDeclared: NOASSERTION,
      copyrightText: NOASSERTION,
      ...(info.purpose ? { primaryPackagePurpose: info.purpose } : {}),
      externalRefs: [
        {
          referenceCategory: "PACKAGE-MANAGER",
          referenceType: "purl",
          referenceLocator: image
            ? ociPurl(material.uri, material.sha256 ? `sha256:${material.sha256}` : null)
            : purl("generic", null, info.name, material.version, {
                download_url: material.uri,
                checksum: material.sha256 ? `sha256:${material.sha256}` : undefined,
              }),
        },
      ],
      comment: image
        ? `base image ${material.uri}${material.sha256 ? ` at digest sha256:${material.sha256}` : " (no digest pinned)"}`
        : `pinned input "${material.name}" of manifest.json${material.name === "slurm" ? " (compiled into the slurm-smd packages)" : ""}`,
    });
  }

  const debIds = new Map<Package, string>();
  const debPackages: SpdxPackage[] = args.packages.map((pkg) => {
    const id = `SPDXRef-deb-${idPart(pkg.name)}-${idPart(pkg.architecture)}`;
    debIds.set(pkg, id);
    return {
      SPDXID: id,
      name: pkg.name,
      versionInfo: pkg.version,
      supplier: supplierOf(pkg.maintainer),
      downloadLocation: NOASSERTION,
      filesAnalyzed: false,
      licenseConcluded: NOASSERTION,
      licenseDeclared: NOASSERTION,
      copyrightText: NOASSERTION,
      sourceInfo: `built from Debian source package ${pkg.sourceName} ${pkg.sourceVersion}`,
      externalRefs: [{ referenceCategory: "PACKAGE-MANAGER", referenceType: "purl", referenceLocator: debPurl(pkg, distro) }],
      ...(pkg.status[1] === "i" ? {} : { comment: `dpkg status ${pkg.status}: ${STATE_NAMES[pkg.status[1] ?? ""]}` }),
    };
  });
  const debSeen = new Set<string>();
  for (const id of debIds.values()) {
    if (debSeen.has(id)) throw new SbomError(`invalid SBOM input: package ${id} is listed twice`);
    debSeen.add(id);
  }

  const relationships: SpdxRelationship[] = [
    { spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: imageId },
    ...[...inputPackages, ...debPackages].map((pkg) => ({ spdxElementId: imageId, relationshipType: "CONTAINS" as const, relatedSpdxElement: pkg.SPDXID })),
  ];
  const baseId = inputIds.get("baseImage");
  if (baseId) relationships.push({ spdxElementId: imageId, relationshipType: "DESCENDANT_OF", relatedSpdxElement: baseId });
  for (const [name, matches] of Object.entries(GENERATED_FROM)) {
    const inputId = inputIds.get(name);
    if (!inputId) continue;
    for (const pkg of args.packages.filter(matches)) {
      relationships.push({ spdxElementId: debIds.get(pkg) as string, relationshipType: "GENERATED_FROM", relatedSpdxElement: inputId });
    }
  }

  const packages = [imagePackage, ...[...inputPackages, ...debPackages].sort((a, b) => compare(a.SPDXID, b.SPDXID))];
  relationships.sort(
    (a, b) =>
      Number(b.relationshipType === "DESCRIBES") - Number(a.relationshipType === "DESCRIBES") ||
      compare(a.spdxElementId, b.spdxElementId) ||
      compare(a.relationshipType, b.relationshipType) ||
      compare(a.relatedSpdxElement, b.relatedSpdxElement),
  );
  const doc: SpdxDocument = {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: `${MODULE_NAME} ${args.image} ${args.version} ${args.flavor} ${args.platform}`,
    documentNamespace: `${source}/spdx/${args.image}-${args.version}-${args.flavor}-${arch}-${hash.slice(0, 32)}`,
    creationInfo: { creators: [`Tool: ${MODULE_NAME}-${canonical.toolVersion}`], created },
    packages,
    relationships,
  };
  const checked = SpdxDocumentSchema.safeParse(doc);
  if (!checked.success) throw new SbomError(`the SBOM fails its own schema (a bug): ${checked.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  return doc;
}
