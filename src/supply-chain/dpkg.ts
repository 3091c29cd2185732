/**
 * What dpkg says is installed in an image: DPKG_QUERY (run inside the image,
 * as root, by dpkg.engine.ts), and its output parsed into packages, checked
 * field by field and sorted. Pure: data in, data out.
 */

/** The fields DPKG_QUERY prints, tab-separated, one package a line. */
export const DPKG_FIELDS = [
  "db:Status-Abbrev",
  "Package",
  "Version",
  "Architecture",
  "source:Package",
  "source:Version",
  "Maintainer",
] as const;

/**
 * The argv, run as root inside an image, that lists every package dpkg's
 * database knows: status (`ii `), name, version, architecture, source
 * package and source version (dpkg fills both in from the package when the
 * source has the same name or version), maintainer. dpkg-query itself
 * expands `\t` and `\n`; no shell is needed. The maintainer is last, so a
 * tab inside it cannot shift the other fields.
 */
export const DPKG_QUERY: string[] = ["dpkg-query", "--show", `--showformat=${DPKG_FIELDS.map((f) => `\${${f}}`).join("\\t")}\\n`];

/** One Debian package as dpkg reports it. */
export interface Package {
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
  /** The source package it was built from (the package's own name when they match). */
  readonly sourceName: string;
  readonly sourceVersion: string;
  /** `Name <email>`, or null when dpkg has none. */
  readonly maintainer: string | null;
  /** dpkg's two-letter status: desired action and current state, e.g. `ii`. */
  readonly status: string;
}

/** Debian policy: lowercase letters, digits, + - ., at least two characters, starting with a letter or digit. */
export const NAME_RE = /^[a-z0-9][a-z0-9+.-]+$/;
/** [epoch:]upstream[-revision], from Debian policy's characters. */
export const VERSION_RE = /^(?:[0-9]+:)?[A-Za-z0-9][A-Za-z0-9.+~:-]*$/;
export const ARCH_RE = /^[a-z0-9][a-z0-9-]*$/;
/** Desired (unknown install hold remove purge), current (not-installed config-files half-installed unpacked half-configured triggers-awaited triggers-pending installed), error flag. */
const STATUS_RE = /^[uihrp][ncHUFWti][ R]$/;

/** Current states in which a package's files are on disk: every state but not-installed and config-files. */
export const STATES_ON_DISK = "HUFWti";

export const STATE_NAMES: Record<string, string> = {
  n: "not-installed",
  c: "config-files",
  H: "half-installed",
  U: "unpacked",
  F: "half-configured",
  W: "triggers-awaited",
  t: "triggers-pending",
  i: "installed",
};

export class DpkgQueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DpkgQueryError";
  }
}

/**
 * Parses DPKG_QUERY's output strictly: a line that is not seven
 * tab-separated fields of the right shapes is an error naming its number,
 * the field and the line. Returns the packages whose files are on disk
 * (every state but not-installed and config-files), sorted by name and
 * architecture; a package listed twice is an error, and so is no package.
 */
export function parseDpkgQuery(stdout: string): Package[] {
  const lines = stdout.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const seen = new Set<string>();
  const packages: Package[] = [];
  lines.forEach((line, index) => {
    const bad = (why: string) => new DpkgQueryError(`dpkg-query output line ${index + 1} is malformed: ${why}: ${showLine(line)}`);
    const fields = line.split("\t");
    if (fields.length < DPKG_FIELDS.length) throw bad(`${fields.length} tab-separated fields, expected ${DPKG_FIELDS.length} (${DPKG_FIELDS.join(", ")})`);
    const [status = "", name = "", version = "", architecture = "", sourceName = "", sourceVersion = ""] = fields;
    const rawMaintainer = fields.slice(DPKG_FIELDS.length - 1).join("\t");
    if (!STATUS_RE.test(status)) throw bad(`status ${JSON.stringify(status)} is not dpkg's three-letter abbreviation (e.g. "ii ")`);
    if (!NAME_RE.test(name)) throw bad(`package name ${JSON.stringify(name)} is not a Debian package name`);
    if (!VERSION_RE.test(version)) throw bad(`version ${JSON.stringify(version)} is not a Debian version`);
    if (!ARCH_RE.test(architecture)) throw bad(`architecture ${JSON.stringify(architecture)} is not a Debian architecture`);
    if (!NAME_RE.test(sourceName)) throw bad(`source package ${JSON.stringify(sourceName)} is not a Debian package name`);
    if (!VERSION_RE.test(sourceVersion)) throw bad(`source version ${JSON.stringify(sourceVersion)} is not a Debian version`);
    if (/[\x00-\x08\x0a-\x1f\x7f-\x9f]/.test(rawMaintainer)) throw bad("the maintainer holds a control character");
    const maintainer = rawMaintainer.trim();
    const key = `${name}:${architecture}`;
    if (seen.has(key)) throw bad(`package ${key} is listed twice`);
    seen.add(key);
    if (!STATES_ON_DISK.includes(status[1] ?? "")) return;
    packages.push({ name, version, architecture, sourceName, sourceVersion, maintainer: maintainer || null, status: status.slice(0, 2) });
  });
  if (packages.length === 0) throw new DpkgQueryError("dpkg-query listed no installed package: is this a Debian-family image, and was DPKG_QUERY run in it?");
  return packages.sort(byNameArch);
}

/** A line as an error shows it: quoted, cut at 200 characters (dpkg's output holds no credential, and e-mail addresses must stay readable). */
function showLine(line: string): string {
  const chars = [...line];
  return chars.length > 200 ? `${JSON.stringify(chars.slice(0, 200).join(""))}… (${chars.length} characters, shortened)` : JSON.stringify(line);
}

export const byNameArch = (a: Package, b: Package) => compare(a.name, b.name) || compare(a.architecture, b.architecture);
export const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
