/**
 * Package URLs (purl, https://github.com/package-url/purl-spec) as the SBOM
 * names its packages: Debian packages (pkg:deb) and OCI images (pkg:oci).
 */
import { shown } from "../core/errors.js";
import { REFERENCE_RE } from "../core/inputs.js";
import { compare, type Package } from "./dpkg.js";

/** The distribution a purl names: pkg:deb/<id>/...?distro=<id>-<versionId>. */
export interface Distro {
  readonly id: "debian" | "ubuntu";
  readonly versionId: string;
}

/** The distribution of a flavor by its name: ubuntu24.04 -> ubuntu 24.04, debian13 -> debian 13. */
export function distroOf(flavor: string): Distro {
  const m = /^(debian|ubuntu)([0-9]+(?:\.[0-9]+)?)$/.exec(flavor);
  if (!m) throw new Error(`flavor ${shown(flavor)} does not name a Debian or Ubuntu release (debian<N> or ubuntu<YY.MM>): pass the distro explicitly`);
  return { id: m[1] as Distro["id"], versionId: m[2] as string };
}

/** purl's percent-encoding: everything but A-Z a-z 0-9 . - _ ~ is encoded, except ':' (which purl never encodes). */
export function purlEncode(value: string): string {
  return encodeURIComponent(value)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%3A/g, ":");
}

/** A purl from its parts; qualifiers with a value are sorted by key, as the canonical form requires. */
export function purl(type: string, namespace: string | null, name: string, version: string | null, qualifiers: Record<string, string | undefined> = {}): string {
  const ns = namespace ? `${namespace.split("/").map(purlEncode).join("/")}/` : "";
  const at = version ? `@${purlEncode(version)}` : "";
  const q = Object.entries(qualifiers)
    .filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1] !== "")
    .sort(([a], [b]) => compare(a, b))
    .map(([key, value]) => `${key}=${purlEncode(value)}`)
    .join("&");
  return `pkg:${type}/${ns}${purlEncode(name)}${at}${q ? `?${q}` : ""}`;
}

/**
 * A Debian package's purl: pkg:deb/debian/bash@5.2.37-2%2Bb10?arch=amd64&distro=debian-13&upstream=bash%405.2.37-2.
 * `upstream` names the source package (with its version when that differs) when it differs from the package.
 */
export function debPurl(pkg: Package, distro: Distro): string {
  const upstream =
    pkg.sourceName === pkg.name && pkg.sourceVersion === pkg.version
      ? undefined
      : pkg.sourceVersion === pkg.version
        ? pkg.sourceName
        : `${pkg.sourceName}@${pkg.sourceVersion}`;
  return purl("deb", distro.id, pkg.name, pkg.version, { arch: pkg.architecture, distro: `${distro.id}-${distro.versionId}`, upstream });
}

/** An OCI image's purl: pkg:oci/ubuntu@sha256%3A...?repository_url=docker.io/library/ubuntu&tag=24.04. */
export function ociPurl(reference: string, digest: string | null, qualifiers: Record<string, string | undefined> = {}): string {
  const m = REFERENCE_RE.exec(reference);
  if (!m || !m[1]) throw new Error(`not an image reference: ${shown(reference)}`);
  const repository = m[1];
  const name = repository.slice(repository.lastIndexOf("/") + 1);
  return purl("oci", null, name, digest ?? m[3] ?? null, { ...qualifiers, repository_url: repository, tag: m[2] });
}
